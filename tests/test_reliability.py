"""Bad input, data faults, training faults, store integrity, verification and safe loading.

Each test asserts the exact behaviour: exit code, message content, store contents.
"""
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from flcore.core import config
from flcore.storage import store
from flcore.sim.engine import summarise
from flcore.core.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "flcore", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def tmp_store(tmp_path, monkeypatch):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


# ----------------------------------------------------------------------------- input validation (CLI: exit 2, one line)


@pytest.mark.parametrize("overrides, message", [
    (["attack=poison"], "unknown attack 'poison'; valid choices: backdoor, none, poisonedfl"),
    (["client_defense=leadfl", "leadfl.q=0"], "leadfl.q must be a positive clipping threshold"),
    (["client_defense=leadfl", "leadfl.alpha=abc"], "leadfl.alpha must be a number"),
    (["aggregator=prodigy", "prodigy.f=1"], "prodigy.f = 1 is invalid for n = 10"),
    (["aggregator=prodigy", "prodigy.f=5"], "prodigy.f = 5 is invalid for n = 10"),
    (["aggregator=krum", "krum.f=4"], "krum.f = 4 is invalid for n = 10"),
    (["aggregator=bulyan", "bulyan.f=2"], "bulyan.f = 2 is invalid for n = 10"),
    (["clients_per_round=200"], "clients_per_round (200) cannot exceed clients (100)"),
    (["malicious_clients=-1"], "malicious_clients must be >= 0"),
    (["rounds=0"], "rounds must be positive"),
    (["lr=inf"], "lr must be finite"),
    (["schedule=periodic", "periodic.malicious_per_round=11"], "periodic.malicious_per_round (11)"),
    (["attack=poisonedfl", "malicious_clients=0", "schedule=random", "poisonedfl.beta=2"],
     "poisonedfl.beta = 2.0 is invalid"),
    (["eval.every=0"], "eval.every must be positive"),
])
def test_cli_rejects_bad_values_with_exit_2(overrides, message):
    args = ["run", "params/smoke.yaml"]
    for o in overrides:
        args += ["--set", o]
    r = cli(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_missing_parameter_file_and_non_mapping_yaml(tmp_path):
    r = cli("schedule", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "not found" in r.stderr
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    r = cli("schedule", str(f))
    assert r.returncode == 2 and "top level must be a mapping" in r.stderr


def test_yaml_is_loaded_safely(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("rounds: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        config.load(f)


# ----------------------------------------------------------------------------- data faults


def _copy_fmnist(dst: Path) -> Path:
    src = Path("/usr/share/datasets/fashion-mnist")
    if not src.is_dir():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    dst.mkdir()
    for p in src.iterdir():
        shutil.copy(p, dst / p.name)
    return dst


def test_altered_dataset_file_is_named_with_the_fix(tmp_path):
    from flcore.sim.data import clear_cache, load_dataset

    root = _copy_fmnist(tmp_path / "fm")
    f = root / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(f.read_bytes()))
    data[100] = (data[100] + 1) % 10  # same size, one label changed
    f.write_bytes(gzip.compress(bytes(data)))
    clear_cache()
    with pytest.raises(DataError) as e:
        load_dataset("fmnist", root=str(root))
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "altered" in msg and "apt-get install --reinstall" in msg


def test_missing_dataset_via_cli_says_how_to_get_it(tmp_path):
    r = cli("run", "params/smoke.yaml", "--quiet", env={"FLCORE_DATA": str(tmp_path), "FLCORE_OFFLINE": "1",
                                                        "FLCORE_RESULTS": str(tmp_path / "res")})
    assert r.returncode == 2
    assert "apt-get install" in r.stderr and "dataset-fashion-mnist" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "res").exists() or not list((tmp_path / "res").rglob("*.json"))


# ----------------------------------------------------------------------------- training faults


BLOW_UP = {"dataset": "fmnist", "model.name": "mnist_poisonedfl", "clients": 100, "clients_per_round": 4,
           "malicious_clients": 0, "rounds": 4, "local_epochs": 1, "batch_size": 32, "momentum": 0.0,
           "schedule": "random", "aggregate_state": "trainable", "eval.test_samples": 200, "eval.bn": "eval",
           "attack": "poisonedfl", "poisonedfl.fake_clients": 50, "poisonedfl.c0": 1e38, "aggregator": "fedavg",
           "experiment": "blowup"}


def test_divergence_is_stored_with_its_round(tmp_store):
    """PoisonedFL with an absurd scale blows FedAvg's model up in round 2: the fakes send zeros
    until the attacker has seen one global update (after rounds 0 and 1)."""
    from flcore.storage.runs import run

    path, doc = run(config.load(None, BLOW_UP), progress=False)
    assert doc["status"] == "diverged" and doc["summary"]["status"] == "diverged"
    assert doc["summary"]["diverged_round"] == 2
    assert [r["round"] for r in doc["rounds"]] == [0, 1, 2]
    assert doc["rounds"][0]["main_acc"] is not None and doc["rounds"][-1]["main_acc"] is None
    assert store.read(path)["status"] == "diverged"


def test_non_finite_loss_makes_a_client_state_of_nan():
    import torch

    from flcore.sim.data import Dataset
    from flcore.sim.engine import ClientState, FlatModel, Trainer
    from flcore.methods.models import build_model

    x, y = torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)
    data = Dataset("fmnist", x, y, x, y, source="synthetic", label="synthetic", mean=(0.0,), std=(1.0,))
    cfg = config.load("params/smoke.yaml", ["client_defense=none", "batch_size=4"])
    flat = FlatModel(build_model("fmnist_cnn"), "cpu")
    w = flat.w.clone()
    w[0] = float("inf")
    out = Trainer(cfg, flat, data).train(w, torch.arange(8), ClientState(None, torch.Generator()), False, cfg.lr)
    assert torch.isnan(out).all()


# ----------------------------------------------------------------------------- store integrity


def _doc(tmp_store):
    from flcore.storage.runs import run

    cfg = config.load("params/smoke.yaml", ["rounds=1", "eval.test_samples=200", "client_defense=none"])
    return run(cfg, progress=False)


def test_corrupted_store_entries_are_detected(tmp_store):
    path, doc = _doc(tmp_store)
    text = path.read_text()
    # truncated
    path.write_text(text[: len(text) // 2])
    with pytest.raises(store.StoreError, match="not valid JSON"):
        store.read(path)
    # altered value, checksum left as it was
    altered = json.loads(text)
    altered["summary"]["main_acc_final"] = 0.99
    path.write_text(json.dumps(altered))
    with pytest.raises(store.StoreError, match="checksum mismatch"):
        store.read(path)
    # wrong schema
    path.write_text(json.dumps({"config": {}}))
    with pytest.raises(store.StoreError, match="missing fields"):
        store.read(path)
    with pytest.warns(UserWarning, match="will be recomputed"):
        assert store.load_valid(path) is None


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "exp" / "abc.json"
    store.write(target, {"config": {}, "rounds": [], "summary": {}, "provenance": {}})
    before = target.read_text()

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        store.write(target, {"config": {"x": 1}, "rounds": [], "summary": {}, "provenance": {}})
    assert target.read_text() == before
    assert [p.name for p in target.parent.iterdir()] == ["abc.json"]


# ----------------------------------------------------------------------------- verification


def test_verify_passes_on_a_stored_run_and_reports_a_diff(tmp_store):
    path, doc = _doc(tmp_store)
    r = cli("verify", str(path), "--rounds", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["verified"] is True
    doc = store.read(path)
    doc["rounds"][0]["main_acc"] = 0.0
    doc["summary"] = summarise(doc["rounds"], doc["status"])  # a consistent forgery: only recomputing finds it
    doc.pop("checksum")
    store.write(path, doc)
    r = cli("verify", str(path), "--rounds", "1")
    assert r.returncode == 1
    report = json.loads(r.stdout[r.stdout.index("{"):])
    assert report["verified"] is False
    assert report["diff"][0]["metric"] == "main_acc" and report["diff"][0]["stored"] == 0.0


# ----------------------------------------------------------------------------- safe loading


def test_no_unsafe_deserialisation_in_the_code():
    patterns = [r"\bpickle\b", r"yaml\.load\(", r"yaml\.unsafe_load", r"allow_pickle\s*=\s*True", r"\beval\(",
                r"\bexec\(", r"torch\.load\((?![^)]*weights_only=True)"]
    offenders = []
    for p in (ROOT / "flcore").rglob("*.py"):
        text = p.read_text()
        for pat in patterns:
            for m in re.finditer(pat, text):
                line = text[: m.start()].count("\n") + 1
                offenders.append(f"{p.name}:{line}: {pat}")
    assert offenders == []


# ============================================================================= a store that cannot be fooled
# Each test below names the case of the reliability issue it covers. None of them starts a simulation:
# stored runs are made from a fake simulation (``fake_result``), and ``no_sim`` makes any simulation fail.

import atexit  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import signal  # noqa: E402
import string  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import yaml  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from flcore import cli as cli_mod  # noqa: E402
from flcore.storage import runs# noqa: E402
from flcore.experiments import sweep as sweep_mod# noqa: E402
from flcore.experiments import verify as verify_mod# noqa: E402
from flcore.sim.engine import ENGINE_NUMERICS  # noqa: E402

SMALL = ["rounds=2", "eval.test_samples=200", "client_defense=none", "experiment=rel"]
SMALL_ARGS = [a for s in SMALL for a in ("--set", s)]
COMMITTED_CPU = ROOT / "results" / "poisonedfl_prodigy" / "931f6c567dd00a9c.json"  # 2.6 s per round


def small_cfg(*more):
    return config.load("params/smoke.yaml", SMALL + list(more))


def fake_result(cfg, device="cpu", acc=0.5, rounds=None):
    """What simulate() returns, without simulating."""
    n = cfg.rounds if rounds is None else min(rounds, cfg.rounds)
    recs = [{"round": r, "selected": [1, 2, 3], "malicious": [], "lr": cfg.lr, "fake_clients": 0,
             "main_acc": acc, "backdoor_acc": 0.1, "backdoor_nontarget_acc": 0.1, "wall_s": 0.0} for r in range(n)]
    data = types.SimpleNamespace(source="test", label="Fashion-MNIST", files={})
    return {"status": "completed", "rounds": recs, "summary": summarise(recs, "completed"), "wall_s": 0.1,
            "data": data, "device": device, "d": {"params": 1, "bn_stats": 0, "bn_counters": 0, "aggregated": 1}}


class FakeSim:
    """Stands in for flcore.sim.engine.simulate in runs and verify; records the runs it was asked for."""

    def __init__(self):
        self.calls, self.acc = [], 0.5

    def __call__(self, cfg, device=None, progress=True, rounds=None, **kw):
        self.calls.append(cfg.hash)
        return fake_result(cfg, acc=self.acc, rounds=rounds)


@pytest.fixture
def fake_sim(monkeypatch):
    sim = FakeSim()
    monkeypatch.setattr(runs, "simulate", sim)
    monkeypatch.setattr(verify_mod, "simulate", sim)
    return sim


def _never(*a, **k):
    raise AssertionError("a simulation was started")


@pytest.fixture
def no_sim(monkeypatch):
    monkeypatch.setattr(runs, "simulate", _never)
    monkeypatch.setattr(verify_mod, "simulate", _never)
    monkeypatch.setattr(sweep_mod, "_LocalBackend", _never)
    monkeypatch.setattr(sweep_mod, "_RayBackend", _never)


def stored_run(cfg, **provenance) -> Path:
    """A valid stored run of ``cfg`` (fake numbers), provenance fields overridden."""
    doc = runs.record(cfg, fake_result(cfg))
    doc["provenance"].update(provenance)
    return store.write(store.path_for(cfg), doc)


def rewrite(path, doc) -> None:
    """Store ``doc`` at ``path`` with a freshly computed checksum (a forgery the checksum cannot see)."""
    doc = dict(doc)
    doc.pop("checksum", None)
    store.write(Path(path), doc)


def inproc(*args):
    """``python -m flcore ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli_mod.main([str(a) for a in args])
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def one_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# ----------------------------------------------------------------------------- experiment names


@pytest.mark.parametrize("name", ["../escape", "/tmp/flcore-escape", "a/b", ".hidden", "..", "", "-x"])
def test_experiment_name_cannot_leave_the_store(name, tmp_store, no_sim):
    rc, _, err = inproc("run", "params/smoke.yaml", "--quiet", "--set", f"experiment={name}")
    assert rc == 2
    one_error(err)
    assert files_under(tmp_store) == [] and not Path("/tmp/flcore-escape").exists()
    with pytest.raises(ConfigError, match="experiment must name a folder"):  # a configuration built in code
        store.path_for(dataclasses.replace(small_cfg(), experiment="../escape"))


# ----------------------------------------------------------------------------- verify proves something


@pytest.mark.parametrize("rounds", ["0", "-1"])
def test_verify_refuses_zero_or_negative_rounds(rounds, tmp_store, no_sim):
    path = stored_run(small_cfg())
    rc, out, err = inproc("verify", path, "--rounds", rounds)
    assert rc == 2 and out == ""
    one_error(err, "--rounds must be a positive number")


def test_verify_refuses_a_run_without_round_records(tmp_store, no_sim):
    path = stored_run(small_cfg())
    doc = store.read(path)
    rewrite(path, {**doc, "rounds": [], "summary": summarise([], "completed")})
    rc, out, err = inproc("verify", path)
    assert rc == 2 and '"verified": true' not in out
    one_error(err, "'rounds' is empty")


def test_forged_summary_with_a_recomputed_checksum_is_detected(tmp_store, fake_sim):
    cfg = small_cfg()
    path = stored_run(cfg)
    doc = store.read(path)
    rewrite(path, {**doc, "summary": {**doc["summary"], "main_acc_final": 0.99}})
    with pytest.raises(store.StoreError, match="summary.main_acc_final is 0.99, but the round records give 0.5"):
        store.read(path)
    rc, _, err = inproc("verify", path)
    assert rc == 2
    one_error(err, "the summary does not match the rounds")
    with pytest.warns(UserWarning, match="will be recomputed"):
        _, doc = runs.run(cfg, progress=False)
    assert fake_sim.calls == [cfg.hash] and doc["summary"]["main_acc_final"] == 0.5


def test_a_run_copied_under_another_runs_name_is_not_reused(tmp_store, fake_sim):
    a, b = small_cfg("seed=0"), small_cfg("seed=1")
    path_b = store.path_for(b)
    shutil.copy(stored_run(a), path_b)
    with pytest.raises(store.StoreError, match=f"file name does not match .* {a.hash}.json"):
        store.read(path_b)
    rc, _, err = inproc("verify", path_b)
    assert rc == 2
    one_error(err, "file name does not match")
    with pytest.warns(UserWarning, match="file name does not match"):
        _, doc = runs.run(b, progress=False)
    assert fake_sim.calls == [b.hash] and doc["config"]["seed"] == 1 and doc["hash"] == b.hash


@pytest.mark.parametrize("field, value, message", [
    ("rounds", 5, "'rounds' must be a list"),
    ("provenance", [], "'provenance' must be a mapping"),
    ("summary", [], "'summary' must be a mapping"),
    ("config", "x", "'config' must be a mapping"),
    ("config", {"rounds": -1}, "stored configuration is not valid"),
    ("rounds", [{"round": 0}], "round record lacks"),
    ("status", "finished", "status 'finished'"),
])
def test_malformed_result_is_recomputed_by_run_and_rejected_by_verify(field, value, message, tmp_store, fake_sim):
    cfg = small_cfg()
    path = stored_run(cfg)
    bad = {**store.read(path), field: value}
    rewrite(path, bad)
    rc, out, err = inproc("run", "params/smoke.yaml", "--quiet", *SMALL_ARGS)
    assert rc == 0 and "Traceback" not in err and out.strip().splitlines()[-1] == str(path)
    assert f"warning: ignoring stored result: {path}: " in err and message in err
    assert fake_sim.calls == [cfg.hash] and store.read(path)[field] != value
    rewrite(path, bad)
    rc, _, err = inproc("verify", path)
    assert rc == 2
    one_error(err, message)


# ----------------------------------------------------------------------------- command-line mistakes


@pytest.mark.parametrize("args, fragments", [
    (["verify", "results"], ["results is a folder"]),
    (["verify", "results/nope.json"], ["no such stored result"]),
    (["run", "params/smoke.yaml", "--device", "foo"], ["device 'foo' is not valid", "auto, cpu, cuda"]),
    (["run", "params/smoke.yaml", "--device", "cuda"], ["this machine has no CUDA GPU", "auto, cpu"]),
    (["run", "params/smoke.yaml", "--device", "cuda:x"], ["device 'cuda:x' is not valid"]),
    (["verify", str(COMMITTED_CPU), "--device", "foo"], ["device 'foo' is not valid"]),
    (["verify", str(COMMITTED_CPU), "--device", "cuda"], ["this machine has no CUDA GPU"]),
    (["verify", str(COMMITTED_CPU), "--tolerance", "-1"], ["--tolerance must be a number >= 0"]),
    (["verify", str(COMMITTED_CPU), "--rounds", "x"], ["invalid int value"]),
    (["bench", "--device", "foo"], ["device 'foo' is not valid"]),
    (["run", "params/smoke.yaml", "--no-such-flag"], ["unrecognized arguments"]),
    (["sweep", "params/selection.smoke.yaml", "--workers", "0"], ["workers must be positive"]),
    (["sweep", "params/selection.smoke.yaml", "--case", "99"], ["no case 99", "valid case numbers: 1 to"]),
])
def test_cli_mistakes_are_one_message_and_exit_2(args, fragments, tmp_store, no_sim, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU
    rc, out, err = inproc(*args)
    assert rc == 2 and out == ""
    one_error(err, *fragments)
    assert files_under(tmp_store) == []


def test_flcore_results_set_but_empty_is_an_error(monkeypatch, no_sim):
    monkeypatch.setenv("FLCORE_RESULTS", " ")
    with pytest.raises(store.StoreError, match="FLCORE_RESULTS is set but empty"):
        store.results_dir()
    rc, _, err = inproc("run", "params/smoke.yaml", "--quiet", *SMALL_ARGS)
    assert rc == 2
    one_error(err, "FLCORE_RESULTS is set but empty")
    monkeypatch.delenv("FLCORE_RESULTS")
    assert store.results_dir() == ROOT / "results"


# ----------------------------------------------------------------------------- parameter files


@pytest.mark.parametrize("text, command, fragment", [
    ("", "run", "the parameter file is empty"),
    ("# nothing but a comment\n", "schedule", "the parameter file is empty"),
    ("experiment: mine\ncases: [{seed: 0}]\n", "sweep", "a sweep file needs a 'base'"),
    ("rounds: 2\nseed: 1\nrounds: 3\n", "run", "duplicate key 'rounds' (first set at line 1)"),
    ("eval:\n  batch: 10\n  batch: 20\n", "schedule", "duplicate key 'batch'"),
    ("base: {rounds: 2}\nbase: {rounds: 3}\n", "sweep", "duplicate key 'base'"),
])
def test_empty_or_ambiguous_parameter_files_are_errors(text, command, fragment, tmp_path, tmp_store, no_sim):
    f = tmp_path / "mine.yaml"
    f.write_text(text)
    rc, _, err = inproc(command, f)
    assert rc == 2
    one_error(err, fragment)


def test_duplicate_keys_in_an_override_value_are_an_error(no_sim):
    rc, _, err = inproc("schedule", "params/smoke.yaml", "--set", "eval={batch: 10, batch: 20}")
    assert rc == 2
    one_error(err, "malformed value")


@pytest.mark.parametrize("overrides, fragment", [
    (["aggregator=multikrum", "krum.f=99"], "krum.f = 99 is invalid for n = 10"),
    (["client_defense=none", "leadfl.alpha=-5"], "leadfl.alpha must be in [0, 10]"),
    (["schedule=random", "malicious_clients=2", "periodic.malicious_per_round=3"], "periodic.malicious_per_round (3)"),
])
def test_options_of_unused_methods_are_range_checked(overrides, fragment, no_sim):
    rc, _, err = inproc("schedule", "params/smoke.yaml", *[a for o in overrides for a in ("--set", o)])
    assert rc == 2
    one_error(err, fragment)


def test_valid_options_of_unused_methods_warn_once_and_change_nothing(no_sim):
    rc, out, err = inproc("schedule", "params/smoke.yaml", "--set", "client_defense=none", "--set", "leadfl.alpha=0.3",
                          "--set", "krum.f=1")
    assert rc == 0 and json.loads(out)
    assert err.strip().splitlines() == [
        "warning: options krum.* are ignored: the run's aggregator is 'multikrum', not 'krum'",
        "warning: options leadfl.* are ignored: the run's client_defense is 'none', not 'leadfl'"]
    with pytest.warns(UserWarning, match="leadfl"):
        with_opts = config.load("params/smoke.yaml", ["client_defense=none", "leadfl.alpha=0.3"])
    assert with_opts.hash == config.load("params/smoke.yaml", ["client_defense=none"]).hash


def test_a_sweep_checks_and_warns_about_options_no_run_uses(recwarn):
    tiny = {"rounds": 1, "clients_per_round": 4, "schedule": "random", "aggregator": "fedavg", "client_defense": "none"}
    spec = {"experiment": "tiny", "profile": "smoke", "base": {**tiny, "krum": {"f": 99}}}
    with pytest.raises(ConfigError, match="krum.f = 99 is invalid .*no run of the sweep uses 'krum'"):
        sweep_mod.expand(spec)
    # options for the runs of one case are not a mistake: the ldp case uses ldp.scale
    spec = {**spec, "base": {**tiny, "krum": {"f": 0}, "ldp": {"scale": 0.1}},
            "cases": [{}, {"client_defense": "ldp"}]}
    assert len(sweep_mod.expand(spec)) == 2 and not recwarn.list  # notebooks expand sweeps: no noise
    with pytest.warns(UserWarning) as w:
        sweep_mod.expand(spec, warn_unused=True)
    assert [str(x.message) for x in w] == ["sweep: options krum.* are ignored: no run of the sweep uses 'krum'"]


# ----------------------------------------------------------------------------- locks and temporary files


def test_concurrent_runs_of_one_configuration_compute_it_once(tmp_store, fake_sim, monkeypatch):
    cfg = small_cfg()
    first_check = threading.Event()
    real_load = store.load_valid

    def load_valid(path):
        doc = real_load(path)
        first_check.set()
        return doc

    monkeypatch.setattr(store, "load_valid", load_valid)
    other = store.RunLock(cfg)  # another process (a sweep or a second `flcore run`) computes the run
    assert other.acquire()
    out = {}
    t = threading.Thread(target=lambda: out.update(result=runs.run(cfg, progress=False)))
    t.start()
    assert first_check.wait(30)  # the run found nothing stored: it now waits for the lock
    store.write(store.path_for(cfg), runs.record(cfg, fake_result(cfg)))  # the other process stores it
    other.release(remove=True)
    t.join(30)
    assert not t.is_alive() and fake_sim.calls == []  # found it stored after taking the lock
    assert out["result"][1]["hash"] == cfg.hash
    assert not store.RunLock(cfg).path.exists()
    assert sweep_mod.RunLock is store.RunLock  # one lock for sweeps and runs


def test_stale_temporary_files_are_cleaned(tmp_store, tmp_path):
    cfg = small_cfg()
    folder = store.path_for(cfg).parent
    # a writer killed during its write (SIGKILL: no cleanup) leaves its temporary file
    code = ("import os, signal, json; from pathlib import Path; from flcore.storage import store\n"
            "json.dump = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"store.write(Path({str(folder / 'x.json')!r}), {{'config': {{}}}})\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL
    (killed,) = folder.glob(".x.*.tmp")
    dead = subprocess.Popen(["true"])
    dead.wait()
    now = time.time()
    files = {killed: (now - 120, False),  # writer gone, past the grace period: stale
             folder / f".y.{dead.pid}.abcd1234.tmp": (now - 5, True),  # too young: may be another machine's
             folder / f".y.{os.getpid()}.efgh5678.tmp": (now - 120, True),  # its writer runs: in progress
             folder / f".y.{os.getpid()}.ijkl9012.tmp": (now - 3600, False),  # an hour old: stale anyway
             folder / ".y.mnop3456.tmp": (now - 120, False)}  # an older name without a pid: stale
    for p, (mtime, _) in files.items():
        p.touch()
        os.utime(p, (mtime, mtime))
    path = stored_run(cfg)  # writing into the folder cleans it
    assert {p.name for p in files if p.exists()} == {p.name for p, (_, keep) in files.items() if keep}
    # a reader of a run cleans that run's stale temporary files
    left = folder / f".{cfg.hash}.{dead.pid}.qrst7890.tmp"
    left.touch()
    os.utime(left, (now - 120, now - 120))
    assert store.load_valid(path) is not None and not left.exists()


# ----------------------------------------------------------------------------- devices and versions


def test_verify_says_when_the_stored_device_differs(tmp_store, fake_sim, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = stored_run(small_cfg(), device="cuda:0", gpu="NVIDIA H200")
    rc, _, err = inproc("verify", path)
    assert rc == 2
    one_error(err, "stored on cuda:0 (NVIDIA H200)", "this machine has no CUDA GPU", "`--device cuda`",
              "--tolerance X")
    rc, _, err = inproc("verify", path, "--device", "cpu")
    assert rc == 2
    one_error(err, "stored on cuda:0 (NVIDIA H200); recompute there (`--device cuda`)", "--tolerance X")
    assert fake_sim.calls == []
    fake_sim.acc = 0.52  # the CPU's accuracies differ from the GPU's by 0.02
    rc, out, _ = inproc("verify", path, "--device", "cpu", "--tolerance", "0.03")
    report = json.loads(out)
    assert rc == 0 and report["verified"] is True and report["max_deviation"] == pytest.approx(0.02)
    assert report["stored_device"] == "cuda:0" and report["device"] == "cpu" and report["tolerance"] == 0.03
    rc, out, _ = inproc("verify", path, "--device", "cpu", "--tolerance", "0.01")
    report = json.loads(out)
    assert rc == 1 and report["max_deviation"] == pytest.approx(0.02)
    assert {d["metric"] for d in report["diff"]} == {"main_acc"}


def test_verify_of_a_committed_cuda_run_on_a_cpu_machine_names_the_device(no_sim, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cuda_runs = sorted(p for p in (ROOT / "results").glob("*/*.json") if '"device": "cuda' in p.read_text())
    assert cuda_runs
    rc, _, err = inproc("verify", cuda_runs[0], "--rounds", "1")
    assert rc == 2
    one_error(err, "stored on cuda", "GPU not recorded" if "gpu" not in store.read(cuda_runs[0])["provenance"]
              else "stored on cuda", "--tolerance")


def test_new_runs_record_the_engine_numerics_and_verify_reports_other_versions(tmp_store, fake_sim):
    assert isinstance(ENGINE_NUMERICS, int) and ENGINE_NUMERICS >= 1
    cfg = small_cfg()
    _, doc = runs.run(cfg, progress=False)
    assert doc["provenance"]["engine_numerics"] == ENGINE_NUMERICS
    # a run recorded without it counts as version 1; another torch version is reported
    prov = {k: v for k, v in doc["provenance"].items() if k != "engine_numerics"}
    rewrite(store.path_for(cfg), {**doc, "provenance": {**prov, "torch": "0.0.1"}})
    rc, out, _ = inproc("verify", store.path_for(cfg))
    report = json.loads(out)
    assert rc == 0 and report["environment"] == {"torch": {"stored": "0.0.1", "current": __import__("torch").__version__},
                                                 **({} if ENGINE_NUMERICS == 1 else {"engine_numerics": {
                                                     "stored": 1, "current": ENGINE_NUMERICS}})}
    rewrite(store.path_for(cfg), {**doc, "provenance": {**doc["provenance"], "engine_numerics": ENGINE_NUMERICS + 1}})
    fake_sim.acc = 0.4
    rc, out, _ = inproc("verify", store.path_for(cfg))
    report = json.loads(out)
    assert rc == 1 and report["environment"]["engine_numerics"] == {"stored": ENGINE_NUMERICS + 1,
                                                                    "current": ENGINE_NUMERICS}
    assert "exact equality is not expected" in report["note"]


def test_verify_reproduces_a_committed_cpu_run_exactly():
    """A cheap committed run (Fashion-MNIST, median, 200 rounds stored; one recomputed on its thread count).
    Stored by engine numerics 1; its first round comes out the same under version 2 (channels-last)."""
    doc = store.read(COMMITTED_CPU)
    assert doc["provenance"]["device"] == "cpu"
    ok, report = verify_mod.verify(COMMITTED_CPU, rounds=1)
    report = json.loads(report)
    assert ok and report["verified"] is True and report["rounds"] == 1 and report["max_deviation"] == 0.0
    assert {"selected", "main_acc", "lr"} <= set(report["metrics"])


# ----------------------------------------------------------------------------- Ray


class FakeRay:
    def __init__(self):
        self.initialized, self.shutdowns = False, 0

    def is_initialized(self):
        return self.initialized

    def init(self, **kw):
        self.initialized = True

    def cluster_resources(self):
        return {"CPU": 1}

    def remote(self, **kw):
        return lambda fn: fn

    def cancel(self, ref, force=False):
        pass

    def shutdown(self):
        self.initialized = False
        self.shutdowns += 1


def test_ray_executor_shuts_ray_down_on_sigterm_and_at_exit(monkeypatch):
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(atexit, "unregister", lambda fn: registered.remove(fn) if fn in registered else None)
    before = signal.getsignal(signal.SIGTERM)
    try:
        backend = sweep_mod._RayBackend(1, 1, None, None)
        assert ray.initialized and registered == [backend._at_exit]
        assert signal.getsignal(signal.SIGTERM) == backend._on_signal  # else SIGTERM would kill this test
        with pytest.raises(SystemExit) as e:
            os.kill(os.getpid(), signal.SIGTERM)  # a killed driver
            for _ in range(500):
                time.sleep(0.01)
        assert e.value.code == 128 + signal.SIGTERM
        assert ray.shutdowns == 1 and registered == [] and signal.getsignal(signal.SIGTERM) == before
        backend = sweep_mod._RayBackend(1, 1, None, None)
        registered[0]()  # the interpreter exits
        assert ray.shutdowns == 2 and signal.getsignal(signal.SIGTERM) == before
        backend.close(abort=False)  # closing twice is harmless
        assert ray.shutdowns == 2
    finally:
        signal.signal(signal.SIGTERM, before)


# ----------------------------------------------------------------------------- property: no input reaches a run

_NAMES = set(config.TOP_LEVEL) | set(config.SECTIONS) | set(config._all_method_options())
_WORD = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=10)
_BAD_SETS = st.one_of(
    st.tuples(st.sampled_from(["rounds", "clients", "clients_per_round", "local_epochs", "batch_size", "eval.every",
                               "eval.batch", "eval.test_samples", "lr_decay.every"]), st.integers(max_value=0)),
    st.tuples(st.sampled_from(["lr", "server_lr"]), st.floats(max_value=0.0, allow_nan=False)),
    st.tuples(st.just("momentum"), st.floats(min_value=1.0, allow_nan=False)),
    st.tuples(st.just("seed"), st.integers(max_value=-1) | st.integers(min_value=2**32, max_value=10**30)),
    st.tuples(st.just("malicious_clients"), st.integers(min_value=101, max_value=10**9) | st.integers(max_value=-1)),
    st.tuples(st.sampled_from(["aggregator", "attack", "client_defense", "schedule", "dataset", "profile", "eval.bn",
                               "model.name", "aggregate_state"]), _WORD.filter(lambda w: w not in _NAMES and w not in (
                                   "train", "eval", "auto", "paper", "default", "smoke", "full", "trainable",
                                   "fmnist", "cifar10", "softmax", "logits"))),
    st.tuples(_WORD.filter(lambda w: w not in _NAMES), st.integers()),
    st.tuples(st.sampled_from(["eval", "leadfl", "multikrum"]).map(lambda s: f"{s}.nope"), st.integers()),
    st.tuples(st.just("experiment"), st.text(max_size=12).filter(lambda t: not config.EXPERIMENT_NAME.fullmatch(t.strip()))),
    st.tuples(st.just("leadfl.alpha"), st.floats(min_value=10.001, allow_nan=False) | st.floats(max_value=-0.001,
                                                                                                 allow_nan=False)),
    st.tuples(st.sampled_from(["krum.f", "multikrum.f", "bulyan.f"]), st.integers(min_value=4, max_value=10**6)),
    st.tuples(st.sampled_from(["rounds", "lr", "eval.every", "seed"]),
              st.sampled_from(["abc", "[1", "{a: 1, a: 2}", "true", "[]", "{}", "nan", "inf"])),
).map(lambda kv: f"{kv[0]}={kv[1]!r}" if isinstance(kv[1], float) else f"{kv[0]}={kv[1]}")
_VALID_SETS = st.lists(st.sampled_from(["rounds=2", "seed=1", "client_defense=none", "eval.test_samples=100"]),
                       max_size=2)


def _yaml_of(item: str) -> str:
    key, value = item.split("=", 1)
    try:
        value = config._parse_scalar(value)
    except ConfigError:  # a malformed override value: a string in the file
        pass
    raw: dict = {}
    config.set_dotted(raw, key, value)
    return yaml.safe_dump(raw)


_BAD_FILES = st.one_of(
    st.sampled_from(["", "\n", "# a comment\n", "---\n", "- 1\n- 2\n", "42\n", "just text\n", "rounds: [1\n",
                     "rounds: 2\nrounds: 3\n", "eval:\n  batch: 1\n  batch: 2\n", "{a: 1, a: 1}\n",
                     "rounds: !!python/object/apply:os.system ['true']\n", "\tx: 1\n", "rounds: 2\n  seed: 1\n"]),
    st.binary(min_size=1, max_size=30).filter(lambda b: _not_utf8(b)),
    _BAD_SETS.map(_yaml_of),
)


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return True
    return False


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_malformed_inputs_exit_2_with_one_message_and_write_nothing(data, tmp_path, monkeypatch):
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per example
    results = work / "results"
    monkeypatch.setenv("FLCORE_RESULTS", str(results))
    for mod in (runs, verify_mod):  # a valid input would fail the test here instead of starting a run
        monkeypatch.setattr(mod, "simulate", _never)
    monkeypatch.setattr(sweep_mod, "_LocalBackend", _never)
    command = data.draw(st.sampled_from(["run", "schedule", "sweep"]), label="command")
    if data.draw(st.booleans(), label="malformed file"):
        content = data.draw(_BAD_FILES, label="file")
        f = work / "params.yaml"
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        sets = []  # (a valid override could repair the file's one bad key)
    else:
        f = ROOT / ("params/selection.smoke.yaml" if command == "sweep" else "params/smoke.yaml")
        sets = data.draw(_VALID_SETS, label="valid sets") + [data.draw(_BAD_SETS, label="bad set")]
    args = [command, f, *[a for s in sets for a in ("--set", s)]] + (["--dry-run"] if command == "sweep" else [])
    rc, out, err = inproc(*args)
    assert rc == 2, (args, out, err)
    one_error(err)
    assert out == "" and files_under(results) == []


def test_a_sweep_override_of_a_grid_key_is_validated_then_replaces_the_axis(no_sim, monkeypatch):
    rc, _, err = inproc("sweep", "params/selection.smoke.yaml", "--set", "client_defense=ldpp", "--dry-run")
    assert rc == 2
    one_error(err, "client_defense", "ldpp")
    # a valid value wins over the grid: the axis becomes that one value, with a warning
    from flcore.experiments import estimate

    seen = []
    monkeypatch.setattr(estimate, "sweep_span", lambda cfgs, *a, **k: (seen.extend(cfgs), (estimate.ZERO,) * 2
                                                                        + ("stub",))[1])
    rc, _, err = inproc("sweep", "params/selection.smoke.yaml", "--set", "client_defense=ldp", "--dry-run")
    assert rc == 0, err
    assert "--set client_defense='ldp' replaces the grid's client_defense axis ['none', 'leadfl']" in err
    assert sorted(c.schedule for c in seen) == ["periodic", "random"] and {c.client_defense for c in seen} == {"ldp"}


def test_cpu_capability_is_recorded_and_compared():
    from flcore.storage import store
    from flcore.experiments.verify import environment

    cap = store.cpu_capability()
    aten, onednn = cap.split("/")
    assert aten and onednn
    prov = {"device": "cpu", "torch": __import__("torch").__version__, "engine_numerics": ENGINE_NUMERICS}
    assert environment({**prov, "cpu_capability": cap}) == {}
    assert environment(prov)["cpu_capability"] == {"stored": "not recorded", "current": cap}
    assert "cpu_capability" not in environment({**prov, "device": "cuda:0"})


def test_an_override_that_narrows_a_sweep_does_not_warn_about_the_files_other_options():
    tiny = {"rounds": 1, "clients_per_round": 4, "schedule": "random", "aggregator": "fedavg"}
    spec = {"experiment": "tiny", "profile": "smoke",
            "base": {**tiny, "ldp": {"scale": 0.1}}, "grid": {"client_defense": ["none", "ldp"]}}
    with warnings.catch_warnings(record=True) as w:  # the file uses ldp.* in its ldp runs
        warnings.simplefilter("always")
        assert len(sweep_mod.expand(spec, ["client_defense=none"], warn_unused=True)) == 1
    assert [str(x.message) for x in w] == [  # the override's own note, and nothing about ldp.*
        "sweep: --set client_defense='none' replaces the grid's client_defense axis ['none', 'ldp']"]
    # an option section the override itself sets and no run uses is still a warning
    with pytest.warns(UserWarning, match="options krum.* are ignored: no run of the sweep uses 'krum'"):
        sweep_mod.expand(spec, ["client_defense=none", "krum.f=0"], warn_unused=True)
    # and one the file sets that no run of the file uses, too
    spec["base"]["krum"] = {"f": 0}
    with pytest.warns(UserWarning, match="options krum.* are ignored"):
        sweep_mod.expand(spec, ["client_defense=none"], warn_unused=True)
