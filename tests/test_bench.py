"""Structure of the benchmark record (flcore.experiments.bench) on a tiny round.

The performance figures themselves come from running ``python -m flcore bench``;
this only checks that every figure is there, finite and consistent.
"""
from __future__ import annotations

import json
import math

import pytest

from flcore.sim.data import load_dataset
from flcore.core.errors import DataError


@pytest.fixture(scope="module")
def record() -> dict:
    try:
        load_dataset("fmnist")
    except DataError as e:
        pytest.skip(str(e))
    from flcore.experiments.bench import bench

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
    # float32: the loop's channels-last kernels and the batched rows' grouped NCHW convolutions
    # round differently, and a round of training amplifies it (tests/test_rows.py checks semantics)
    assert r["batched_vs_loop_max_abs_diff"] < 5e-3


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
    from flcore.experiments.bench import categorise

    assert categorise("aten::convolution_backward") == "conv backward"
    assert categorise("aten::mkldnn_convolution") == "conv forward"
    assert categorise("aten::native_batch_norm_backward") == "batch norm"
    assert categorise("aten::max_pool2d_with_indices") == "max pool"
    assert categorise("aten::threshold_backward") == "relu"
    assert categorise("aten::addmm") == "linear"
    assert categorise("aten::copy_") == "copies and fills"
    assert categorise("aten::add_") == "element-wise and other"


def test_aggregator_bench_record_is_complete_and_choices_agree():
    from flcore.experiments.bench import AGGREGATOR_OPTIONS, bench_aggregators

    r = bench_aggregators(n=36, d=300, repeats=1)
    json.dumps(r)
    assert set(r["ms_per_call"]) == set(AGGREGATOR_OPTIONS)
    assert all(math.isfinite(v) and v >= 0 for v in r["ms_per_call"].values())
    assert set(r["direct_vs_gram"]) == {"multikrum", "prodigy"}
    assert r["rounding"]["multikrum_same_clients"] and r["rounding"]["prodigy_same_zeroed"]
    assert r["rounding"]["multikrum_aggregate_max_abs"] == 0.0
    assert r["rounding"]["prodigy_weights_max_abs"] < 1e-6
    assert r["threads"] == 1


def test_poisonedfl_bench_uses_the_official_configuration_and_extrapolates():
    try:
        load_dataset("fmnist")
    except DataError as e:
        pytest.skip(str(e))
    from flcore.experiments.bench import bench_poisonedfl, official_poisonedfl_config

    cfg = official_poisonedfl_config()
    assert (cfg.clients, cfg.clients_per_round, cfg.rounds, cfg.eval.every, cfg.eval.test_samples) == \
        (1200, 30, 6000, 50, 10000)
    assert cfg.options("poisonedfl").fake_clients == 240 and cfg.options("prodigy").f == 6
    assert (cfg.local_epochs, cfg.batch_size, cfg.lr, cfg.split.bias) == (1, 32, 0.01, 0.5)
    # a reduced population, so that the test is quick; the structure is the same
    r = bench_poisonedfl(rounds=3, overrides={"clients": 120, "poisonedfl.fake_clients": 24,
                                              "eval.test_samples": 200})
    json.dumps(r)
    assert r["measured_rounds"] == 3 and r["config"]["fakes_per_round"] == [6]
    assert r["evaluations"] == 121  # rounds 0, 50, ..., 5950 and the last
    expect = r["setup_s"] + 6000 * r["round_s"] + 121 * r["eval_s"]
    assert r["extrapolated_run_s"] == pytest.approx(expect, rel=1e-3, abs=0.2)
    assert 0 < r["aggregation_share"] < 1
    assert (r["device"], r["executor"]) == ("cpu", "loop")
    # the FLOP floor: 30 clients of 500 samples (60,000 images over 120 clients) a round
    assert r["train_samples_per_round"] == 15000
    # the network's forward multiply-adds per image, by hand: conv 3x3 1->30 on 26x26, conv 3x3
    # 30->50 on 11x11, 1250->100, 100->10; a training sample costs ~3 forwards
    macs = 26 * 26 * 30 * 9 + 11 * 11 * 50 * 30 * 9 + 1250 * 100 + 100 * 10
    assert 2.5 * 2 * macs < r["train_flops_per_sample"] < 3.5 * 2 * macs
    assert r["flop_floor_round_s"] == pytest.approx(
        r["train_flops_per_sample"] * 15000 / (r["attainable_gflops_fp32"] * 1e9), rel=2e-2)
    assert r["flop_efficiency"] == pytest.approx(r["flop_floor_round_s"] / r["round_s"], rel=2e-2)
    assert r["flop_floor_run_s"] == pytest.approx(6000 * r["flop_floor_round_s"], rel=1e-2)


def test_poisonedfl_bench_trains_the_round_as_ragged_rows_when_batched(monkeypatch):
    """The GPU form of the bench (batched rows), run on the CPU: the genuine clients of a round
    (different sample counts of the non-IID split) train in groups by number of batches, not
    one by one."""
    try:
        load_dataset("fmnist")
    except DataError as e:
        pytest.skip(str(e))
    from flcore.sim import engine
    from flcore.experiments.bench import bench_poisonedfl

    sizes = []
    real = engine.Rows.train

    def counting(self):
        sizes.append((self.C, self.ragged))
        return real(self)

    monkeypatch.setattr(engine.Rows, "train", counting)
    r = bench_poisonedfl(rounds=2, overrides={"clients": 120, "poisonedfl.fake_clients": 24,
                                              "eval.test_samples": 200}, executor="batched")
    assert r["executor"] == "batched" and r["measured_rounds"] == 2
    assert sum(c for c, _ in sizes) == 2 * 30  # every genuine client of both rounds, once
    # 120 clients hold ~500 samples each (~16 batches of 32): a few groups per round, not 30
    assert len(sizes) < 30 and max(c for c, _ in sizes) >= 5 and any(ragged for _, ragged in sizes)


def test_layout_bench_times_both_layouts_of_the_engine():
    from flcore.experiments.bench import bench_layout

    rec = bench_layout(repeats=1)
    assert set(rec["ms"]) == {"nchw", "channels_last"}
    for layout in rec["ms"].values():
        assert set(layout) == {"benign_epoch", "malicious_epoch", "eval_2000"} and all(v > 0 for v in layout.values())
    for k, r in rec["ratio"].items():  # the medians' ratio (the ms are rounded to 0.1)
        assert r == pytest.approx(rec["ms"]["channels_last"][k] / rec["ms"]["nchw"][k], rel=0.01)
    json.dumps(rec)


def test_pack_bench_trains_every_run_s_rows_and_agrees_with_the_loop():
    from flcore.experiments.bench import bench_pack

    try:
        r = bench_pack(runs=5, device="cpu", size="tiny")
    except DataError as e:
        pytest.skip(str(e))
    assert r["runs"] == 5 and r["rows"] == 50
    # four benign groups (one per client defense) and one malicious group shared by all runs
    assert r["groups"] == 5 and r["client_defenses"] == ["flwbc", "ldp", "leadfl", "none"]
    assert r["train_s"]["loop_measured_runs"] == 4
    assert r["speedup_pack_vs_loop"] == pytest.approx(r["train_s"]["loop"] / r["train_s"]["pack"], rel=0.01)
    assert r["pack_vs_loop_max_abs_diff"] < 5e-3  # float32 rounding of grouped vs single convolutions
