"""The headline table that ``flcore run`` and ``flcore sweep`` print (synthetic documents, no training)."""
from pathlib import Path

from flcore import cli
from flcore.analysis import headline
from flcore.storage import store

ROOT = Path(__file__).resolve().parent.parent


def doc(h, attack="backdoor", summary=None, status="completed", **cfg):
    config = {"experiment": "t", "profile": "smoke", "dataset": "fmnist", "attack": attack, "seed": 0,
              "client_defense": "none", "eval": {"test_samples": 500}, **cfg}
    return {"hash": h, "config": config, "status": status,
            "summary": summary or {"main_acc_final": 0.78125, "backdoor_acc_avg": 0.12349, "backdoor_acc_final": None}}


def test_table_labels_what_varies_and_rounds_to_one_decimal_percent():
    docs = [doc("a" * 16, client_defense="none"),
            doc("b" * 16, client_defense="leadfl", leadfl={"alpha": 0.4}, eval={"test_samples": 500}),
            doc("c" * 16, client_defense="leadfl", leadfl={"alpha": 0.4}, seed=1)]
    assert headline.varying_keys(docs) == ["seed", "client_defense"]  # leadfl.alpha has one value
    lines = headline.table(docs).splitlines()
    assert lines[0].split("  ")[0].strip() == "run" and "main acc final %" in lines[0]
    assert lines[1].startswith("seed=0 client_defense=none ") and lines[3].startswith("seed=1 client_defense=leadfl")
    assert lines[1].split()[-4:] == ["completed", "78.1", "12.3", "—"]
    assert "test error" not in lines[0]


def test_poisonedfl_runs_show_the_test_error():
    docs = [doc("a" * 16, attack="none", aggregator="fedavg", summary={"main_acc_final": 0.75}),
            doc("b" * 16, attack="poisonedfl", aggregator="prodigy", status="diverged",
                summary={"main_acc_final": 0.157, "backdoor_acc_avg": None})]
    lines = headline.table(docs).splitlines()
    assert "backdoor" not in lines[0] and lines[0].endswith("test error final %")
    assert lines[1].split()[-3:] == ["completed", "75.0", "25.0"]
    assert lines[2].split()[-3:] == ["diverged", "15.7", "84.3"]


def test_a_single_run_is_labelled_by_its_hash():
    assert headline.table([doc("d" * 16)]).splitlines()[1].startswith("d" * 16 + "  completed")


def test_cli_run_prints_the_table_then_the_path(monkeypatch, capsys):
    from flcore.storage import runs

    monkeypatch.setattr(runs, "run", lambda cfg, **kw: (Path("stored.json"), doc("e" * 16)))
    assert cli.main(["run", str(ROOT / "params" / "smoke.yaml"), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "stored.json" and out[-2].split()[-4:] == ["completed", "78.1", "12.3", "—"]


def test_cli_sweep_prints_the_table_or_the_paths(monkeypatch, capsys, tmp_path):
    from flcore.experiments import sweep

    docs = {tmp_path / "a.json": doc("a" * 16, seed=0), tmp_path / "b.json": doc("b" * 16, seed=1)}
    paths = list(docs)
    monkeypatch.setattr(sweep, "sweep", lambda *a, **kw: paths)
    monkeypatch.setattr(store, "read", lambda p: docs[p])
    assert cli.main(["sweep", "params/selection.smoke.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[1].startswith("seed=0 ") and out[2].startswith("seed=1 ")
    assert cli.main(["sweep", "params/selection.smoke.yaml", "--paths"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(p) for p in paths]
