"""flcore.analysis.export and ``flcore export``: stored runs as a tidy per-round table and a per-run
summary, on synthetic stored-run documents written to a temporary store (no training)."""
import importlib.util
import math

import pandas as pd
import pytest

from flcore import cli
from flcore.analysis import export
from flcore.storage import store
from flcore.analysis.rounds import rounds_frame


def doc(h="a" * 16, experiment="t", seed=0, client="leadfl", alpha=0.2, status="completed", rounds=None):
    rounds = rounds if rounds is not None else [
        {"round": 0, "selected": [1, 2, 3], "malicious": [1], "main_acc": None, "backdoor_acc": None,
         "fake_clients": 0, "lr": 0.01, "wall_s": 1.5, "agg_weights": [0.5, 0.5, 0.0]},
        {"round": 1, "selected": [4, 5, 6], "malicious": [], "main_acc": 0.75, "backdoor_acc": 0.25,
         "backdoor_nontarget_acc": 0.2, "fake_clients": 0, "lr": 0.0099, "wall_s": 1.25,
         "update_norm": 3.0, "attack": {"kind": "x"}}]
    config = {"experiment": experiment, "profile": "smoke", "seed": seed, "aggregator": "multikrum",
              "client_defense": client, "leadfl": {"alpha": alpha, "variant": "code"}, "lr": 0.01,
              "eval": {"test_samples": 500, "bn": "train"}}
    return {"hash": h, "config": config, "rounds": rounds, "status": status,
            "summary": {"main_acc_final": 0.75, "backdoor_acc_avg": 0.25, "status": status, "hessian": {"n": 3}},
            "provenance": {"device": "cpu", "torch": "2.x", "threads": 1, "wall_s": 2.75, "data_label": "Fashion-MNIST",
                           "data_files": {"a": "b"}}}


# --------------------------------------------------------------------------- pure functions


def test_flatten_config_dotted_names_without_identity_keys():
    flat = export.flatten_config({"experiment": "t", "seed": 3, "aggregator": "fedavg",
                                  "leadfl": {"alpha": 0.2}, "eval": {"test_samples": 500}})
    assert flat == {"config.aggregator": "fedavg", "config.leadfl.alpha": 0.2, "config.eval.test_samples": 500}


def test_flatten_config_nested_seed_is_kept_and_lists_become_text():
    flat = export.flatten_config({"paper": {"seed": 1, "rounds": [1, 2]}}, prefix="")
    assert flat == {"paper.seed": 1, "paper.rounds": "[1, 2]"}


def test_round_record_counts_clients_and_keeps_scalar_metrics():
    rec = export.round_record(doc()["rounds"][1])
    assert rec["round"] == 1 and rec["main_acc"] == 0.75 and rec["backdoor_nontarget_acc"] == 0.2
    assert rec["n_selected"] == 3 and rec["n_malicious"] == 0 and rec["update_norm"] == 3.0
    assert "attack" not in rec and "agg_weights" not in rec and "selected" not in rec


def test_round_record_not_evaluated_is_nan():
    rec = export.round_record(doc()["rounds"][0])
    assert math.isnan(rec["main_acc"]) and math.isnan(rec["backdoor_acc"]) and math.isnan(rec["backdoor_nontarget_acc"])
    assert rec["n_malicious"] == 1


def test_run_rows_one_row_per_round_with_identity_and_config():
    rows = export.run_rows(doc(seed=2))
    assert [r["round"] for r in rows] == [0, 1]
    for r in rows:
        assert (r["hash"], r["experiment"], r["seed"], r["status"]) == ("a" * 16, "t", 2, "completed")
        assert r["config.leadfl.alpha"] == 0.2 and r["config.lr"] == 0.01
    assert rows[1]["lr"] == 0.0099  # the round's learning rate, apart from the configured one


def test_summary_row_numbers_and_provenance():
    row = export.summary_row(doc(status="diverged"))
    assert row["status"] == "diverged" and row["main_acc_final"] == 0.75
    assert "hessian" not in row and not any(k.startswith("hessian") for k in row)
    assert row["provenance.device"] == "cpu" and row["provenance.wall_s"] == 2.75
    assert "provenance.data_files" not in row


def test_tables_shapes_and_column_order():
    rounds, runs = export.tables([doc(), doc(h="b" * 16, seed=1, client="none", alpha=0.0)])
    assert len(rounds) == 4 and len(runs) == 2
    assert list(rounds.columns[:4]) == list(export.IDENTITY)
    cfg_cols = [c for c in rounds.columns if c.startswith("config.")]
    assert cfg_cols == sorted(cfg_cols)
    assert rounds.columns.get_loc("round") == 4 + len(cfg_cols)
    assert rounds.groupby("hash").size().to_dict() == {"a" * 16: 2, "b" * 16: 2}
    assert list(runs["config.client_defense"]) == ["leadfl", "none"]


def test_rounds_frame_uses_the_export_records_in_percent():
    d = doc()
    f = rounds_frame([d], keys=["client_defense"])
    rec = export.round_record(d["rounds"][1])
    assert f["main_acc"][1] == 100 * rec["main_acc"] and f["n_selected"][1] == rec["n_selected"]
    assert math.isnan(f["backdoor_acc"][0]) and list(f["client_defense"]) == ["leadfl", "leadfl"]


# --------------------------------------------------------------------------- the command


@pytest.fixture
def tmp_store(tmp_path, monkeypatch):
    """Three runs of two experiments as the store's runs (the store's own files and checks are
    tested in test_core/test_reliability)."""
    docs = [doc(experiment="alpha"), doc(h="b" * 16, experiment="alpha", seed=1), doc(h="c" * 16, experiment="sel")]

    def iter_runs(experiment=None):
        for d in docs:
            if experiment is None or d["config"]["experiment"] == experiment:
                yield tmp_path / d["config"]["experiment"] / f"{d['hash']}.json", d

    monkeypatch.setattr(store, "iter_runs", iter_runs)
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path / "results"))
    return tmp_path


def test_export_csv_loads_in_pandas(tmp_store, capsys):
    out = tmp_store / "out"
    assert cli.main(["export", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "rounds.csv"), str(out / "runs.csv")]
    rounds, runs = pd.read_csv(out / "rounds.csv"), pd.read_csv(out / "runs.csv")
    assert len(runs) == 3 and len(rounds) == 6
    assert not rounds.duplicated(["experiment", "hash", "round"]).any()
    assert set(rounds["experiment"]) == {"alpha", "sel"}


def test_export_one_experiment(tmp_store):
    out = tmp_store / "out"
    assert cli.main(["export", "--experiment", "alpha", "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "runs.csv")["hash"]) == {"a" * 16, "b" * 16}


def test_export_unknown_experiment_names_the_stored_ones(tmp_store, capsys):
    assert cli.main(["export", "--experiment", "nope", "--out", str(tmp_store / "out")]) == 2
    err = capsys.readouterr().err
    assert "no stored runs of experiment 'nope'" in err and "alpha, sel" in err
    assert not (tmp_store / "out").exists()


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None or importlib.util.find_spec("fastparquet") is not None,
                    reason="a parquet engine is installed")
def test_export_parquet_without_pyarrow_is_a_clear_error(tmp_store, capsys):
    assert cli.main(["export", "--format", "parquet", "--out", str(tmp_store / "out")]) == 2
    err = capsys.readouterr().err
    assert "pyarrow" in err and "--format csv" in err


def test_export_out_is_a_file(tmp_store, capsys):
    (tmp_store / "file").write_text("x")
    assert cli.main(["export", "--out", str(tmp_store / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


# --------------------------------------------------------------------------- run --threads


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_run_threads_must_be_a_positive_integer(value, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parser().parse_args(["run", "params/smoke.yaml", "--threads", value])
    assert e.value.code == 2
    assert "--threads" in capsys.readouterr().err


def test_run_threads_parsed():
    assert cli.parser().parse_args(["run", "params/smoke.yaml", "--threads", "3"]).threads == 3
    assert cli.parser().parse_args(["run", "params/smoke.yaml"]).threads is None


def test_run_threads_sets_torch_threads_for_the_run(monkeypatch, capsys):
    from pathlib import Path

    import torch

    from flcore.storage import runs

    seen = {}

    def fake_run(cfg, **kwargs):
        seen["threads"] = torch.get_num_threads()
        return Path("stored.json"), {"summary": {"status": "completed"}}

    monkeypatch.setattr(runs, "run", fake_run)
    smoke = Path(__file__).resolve().parent.parent / "params" / "smoke.yaml"
    before = torch.get_num_threads()
    try:
        assert cli.main(["run", str(smoke), "--threads", "1", "--quiet"]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == {"threads": 1}
    assert capsys.readouterr().out.splitlines()[-1] == "stored.json"
