"""Structure of the benchmark record (flcore.bench) on a tiny round.

The performance figures themselves come from running ``python -m flcore bench``;
this only checks that every figure is there, finite and consistent.
"""
from __future__ import annotations

import json
import math

import pytest

from flcore.data import load_dataset
from flcore.errors import DataError


@pytest.fixture(scope="module")
def record() -> dict:
    try:
        load_dataset("fmnist")
    except DataError as e:
        pytest.skip(str(e))
    from flcore.bench import bench

    return bench(device="cpu", size="tiny")


def test_record_is_json_and_complete(record):
    json.dumps(record)
    for key in ("speedup_vs_naive", "speedup_batched_vs_naive", "flop_efficiency", "eval_share", "round_s",
                "ms_per_step", "threads", "device", "torch", "config", "attainable_gflops_fp32", "cpu_time"):
        assert key in record, key
    assert set(record["round_s"]) == {"ours", "batched", "naive"}
    assert {"benign", "leadfl", "malicious"} <= set(record["ms_per_step"])
    assert record["device"] == "cpu" and record["threads"] == 1


def test_figures_are_consistent(record):
    r = record
    for v in (r["speedup_vs_naive"], r["speedup_batched_vs_naive"], r["flop_efficiency"], r["eval_share"]):
        assert math.isfinite(v) and v > 0
    assert r["speedup_vs_naive"] == pytest.approx(r["round_s"]["naive"] / r["round_s"]["ours"], rel=0.01)
    assert 0 < r["flop_efficiency"] < 1 and 0 < r["eval_share"] < 1
    ours = r["phases_s"]["ours"]
    assert sum(ours.values()) == pytest.approx(r["round_s"]["ours"], abs=0.01)
    # the round of the paper schedule: 5 benign (LeadFL) and 5 malicious clients
    assert r["config"]["selected"] == [12, 61, 18, 22, 39, 55, 46, 76, 44, 87]
    assert r["config"]["malicious"] == [55, 46, 76, 44, 87]
    f = r["flops"]
    assert f["round"] == pytest.approx(f["train"] + f["eval"])
    # 10 clients x 32 samples, malicious ones twice; eval: 500 images, clean and triggered
    assert f["train"] == pytest.approx(f["per_sample_train_fwd_bwd"] * 32 * 15)
    assert f["eval"] == pytest.approx(f["per_sample_eval_fwd"] * 1000)
    assert r["batched_vs_loop_max_abs_diff"] < 1e-4


def test_time_breakdown_shares(record):
    """Every profiled part has category shares in [0, 1] that add up to about 1, and the
    convolutions show up in the training parts."""
    parts = record["time_breakdown"]
    assert set(parts) == {"leadfl_client", "malicious_client", "eval_batch"}
    for name, part in parts.items():
        shares = part["shares"]
        assert part["wall_s"] > 0
        assert all(0 <= v <= 1 for v in shares.values()), shares
        assert sum(shares.values()) == pytest.approx(1.0, abs=0.15), (name, shares)
    for name in ("leadfl_client", "malicious_client"):
        assert parts[name]["shares"]["conv backward"] > 0


def test_categorise_operators():
    from flcore.bench import categorise

    assert categorise("aten::convolution_backward") == "conv backward"
    assert categorise("aten::mkldnn_convolution") == "conv forward"
    assert categorise("aten::native_batch_norm_backward") == "batch norm"
    assert categorise("aten::max_pool2d_with_indices") == "max pool"
    assert categorise("aten::threshold_backward") == "relu"
    assert categorise("aten::addmm") == "linear"
    assert categorise("aten::copy_") == "copies and fills"
    assert categorise("aten::add_") == "element-wise and other"
