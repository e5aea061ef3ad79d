"""Tests of flcore.experiments.sweep: expansion, the local executor (resume, interruption, two sweeps at
once) and the Ray executor against the local one. Runs are tiny Fashion-MNIST federations
(1-2 rounds, 4 clients per round of 600 images each) written to temporary stores."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flcore.core import config
from flcore.storage import store
from flcore.core.errors import ConfigError
from flcore.experiments.sweep import expand, expand_cases, sweep

ROOT = Path(__file__).resolve().parent.parent

TINY = {"dataset": "fmnist", "rounds": 1, "local_epochs": 1, "clients": 100, "clients_per_round": 4,
        "malicious_clients": 5, "batch_size": 32, "schedule": "random", "aggregator": "fedavg",
        "eval": {"test_samples": 200}}


def spec(**kw) -> dict:
    out = {"experiment": "tiny", "profile": "smoke", "description": "tiny runs", "notebook_option": 1,
           "base": dict(TINY)}
    out.update(kw)
    return out


def write_spec(path: Path, s: dict) -> Path:
    path.write_text(yaml.safe_dump(s))
    return path


def stored(results: Path, experiment="tiny") -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (results / experiment).glob("*.json")}


def all_valid(results: Path, experiment="tiny") -> None:
    for p in (results / experiment).glob("*.json"):
        store.read(p)  # raises on a partial or corrupted file
    assert not list(results.rglob("*.tmp"))


def env_for(results: Path) -> dict:
    return {**os.environ, "FLCORE_RESULTS": str(results), "PYTHONPATH": str(ROOT), "FLCORE_OFFLINE": "1"}


@pytest.fixture
def procs():
    """Subprocesses of a test, killed (by pid) if the test leaves them running."""
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# A sweep in its own process, as ``python -m flcore sweep`` runs it but with one torch thread per
# worker: on a loaded 2-core machine a second intra-op thread makes these runs ~10x slower.
RUNNER = """
import sys
from flcore.experiments.sweep import sweep
try:
    paths = sweep(sys.argv[1], workers=int(sys.argv[2]), threads=1, progress=False)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
print("\\n".join(map(str, paths)))
"""


def cli_sweep(spec_path: Path, results: Path, workers=1) -> subprocess.Popen:
    # SIGINT handled by default even when the tests run where it is ignored (a background job)
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(spec_path), str(workers)], cwd=ROOT,
                            env=env_for(results), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_file(results: Path, n: int, proc: subprocess.Popen, timeout=120) -> None:
    t0 = time.time()
    while len(stored(results)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "no run finished in time"
        time.sleep(0.05)


def computed(stderr: str) -> int:
    m = re.search(r"(\d+) computed", stderr)
    return int(m.group(1)) if m else 0


# --------------------------------------------------------------------------- expand


def test_expand_counts_cases_times_grid_and_sets_experiment():
    s = spec(cases=[{"seed": 0}, {"seed": 1, "eval.test_samples": 300}],
             grid={"client_defense": ["none", "ldp"], "lr": [0.01, 0.02]})
    cfgs = expand(s, overrides=["rounds=2"])
    assert len(cfgs) == 8
    assert len({c.hash for c in cfgs}) == 8
    assert all(c.experiment == "tiny" and c.profile == "smoke" and c.rounds == 2 for c in cfgs)
    assert [c.seed for c in cfgs] == [0] * 4 + [1] * 4
    # a dotted case key merges into the base's section instead of replacing it
    assert cfgs[4].eval.test_samples == 300 and cfgs[4].eval.batch == 1000
    # the grid's last key varies fastest
    assert [(c.client_defense, c.lr) for c in cfgs[:4]] == [("none", 0.01), ("none", 0.02), ("ldp", 0.01),
                                                             ("ldp", 0.02)]
    # a configuration survives the trip to a worker
    assert all(config.from_dict(c.to_dict()).hash == c.hash for c in cfgs)


def test_expand_from_file_and_defaults(tmp_path):
    p = write_spec(tmp_path / "mine.paper.yaml", {"base": TINY})
    (cfg,) = expand(p)
    assert cfg.experiment == "mine" and cfg.profile == "paper"


def test_expand_dedupes_options_of_inactive_methods():
    # ldp.scale does nothing without the ldp defense: the two 'none' runs are one run
    s = spec(grid={"client_defense": ["none", "ldp"], "ldp.scale": [0.1, 0.2]})
    cfgs = expand(s)
    assert [(c.client_defense, c.options("ldp") and c.options("ldp").scale) for c in cfgs] == \
        [("none", None), ("ldp", 0.1), ("ldp", 0.2)]


@pytest.mark.parametrize("bad, match", [
    ({"grid": {"seed": 0}}, r"grid\.seed must be a non-empty list"),
    ({"grid": {"seed": []}}, r"grid\.seed must be a non-empty list"),
    ({"grid": ["seed"]}, r"'grid' must be a mapping"),
    ({"cases": {"seed": 0}}, r"'cases' must be a non-empty list"),
    ({"cases": [{"seed": 0}, 3]}, r"case 2 must be a mapping"),
    ({"base": [1]}, r"'base' must be a mapping"),
    ({"experiment": "a/b"}, r"'experiment' must name the store folder"),
    ({"cases": [{}, {"lr": -1.0}]}, r"case 2 of 2 \{lr: -1.0\}: lr must be positive"),
    ({"grid": {"aggregator": ["fedavg", "nope"]}}, r"grid point \{aggregator: nope\}.*aggregator"),
    ({"grid": {"eval.test_sample": [1]}}, r"grid point \{eval.test_sample: 1\}: unknown option eval.test_sample"),
])
def test_expand_rejects_malformed_sweeps(bad, match):
    with pytest.raises(ConfigError, match=match):
        expand(spec(**bad))


def test_expand_cases_keeps_the_chosen_cases_with_their_hashes():
    s = spec(cases=[{"seed": 0}, {"seed": 1}, {"seed": 2, "lr": 0.02}], grid={"client_defense": ["none", "ldp"]})
    full = expand(s)
    part = expand_cases(s, [3, 1])
    # file order, the same configurations (hashes) as in the whole sweep
    assert [c.hash for c in part] == [c.hash for c in full[:2] + full[4:]]
    assert [c.hash for c in expand_cases(s, None)] == [c.hash for c in full]
    # an override that replaces the grid axis narrows the case to one cell
    (cell,) = expand_cases(s, [2], overrides=["client_defense=ldp"])
    assert cell.hash == full[3].hash


def test_expand_cases_of_an_official_file_matches_the_whole():
    # a lone case whose option blocks fit it only as part of the file (Multi-Krum's m for n = 36 in
    # the base; the case has no fakes) is still computed: the whole file is checked instead
    path = ROOT / "params" / "poisonedfl_official.yaml"
    full = {c.hash for c in expand(path)}
    part = expand_cases(path, [1], overrides=["seed=0"])
    assert len(part) == 1 and part[0].hash in full and part[0].aggregator == "fedavg"


@pytest.mark.parametrize("cases, match", [([0], "no case 0; valid case numbers: 1 to 3"),
                                          ([2, 4], "no case 4; valid case numbers: 1 to 3"),
                                          ([], r"no case \(none given\)")])
def test_expand_cases_rejects_unknown_case_numbers(cases, match):
    with pytest.raises(ConfigError, match=match):
        expand_cases(spec(cases=[{"seed": 0}, {"seed": 1}, {"seed": 2}]), cases)


def test_base_may_repeat_profile_and_a_run_file_is_not_a_sweep(tmp_path):
    assert {c.profile for c in expand(spec(base={**TINY, "profile": "smoke"}))} == {"smoke"}
    with pytest.raises(ConfigError, match="base.profile .'paper'. differs"):
        expand(spec(base={**TINY, "profile": "paper"}))
    with pytest.raises(ConfigError, match="not a sweep file"):
        expand(ROOT / "params" / "smoke.yaml")


def test_bad_override_is_a_config_error():
    with pytest.raises(ConfigError, match="key=value"):
        expand(spec(), overrides=["rounds"])
    with pytest.raises(ConfigError, match="'profile' cannot be overridden"):
        expand(spec(), overrides=["profile=paper"])


# --------------------------------------------------------------------------- local executor

GRID = {"client_defense": ["none", "ldp"], "seed": [0]}


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    """A 2-run sweep computed once by the local executor (2 workers x 1 thread)."""
    results = tmp_path_factory.mktemp("local")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLCORE_RESULTS", str(results))
        paths = sweep(spec(grid=GRID), workers=2, threads=1, progress=False)
    return results, paths


def test_local_sweep_runs_missing_then_nothing(local_store, monkeypatch, capsys):
    results, paths = local_store
    monkeypatch.setenv("FLCORE_RESULTS", str(results))
    assert len(paths) == 2 and all(p.parent == results / "tiny" for p in paths)
    all_valid(results)
    assert not list((results / "tiny").glob(".*.lock"))
    before = stored(results)
    assert set(before) == {p.name for p in paths}

    assert sweep(spec(grid=GRID), workers=2, progress=False) == paths
    assert stored(results) == before  # nothing recomputed
    assert "all 2 runs stored" in capsys.readouterr().err

    # dry run: the missing runs are counted and estimated, nothing runs
    assert sweep(spec(grid={"seed": [0, 1, 2]}), overrides=["rounds=2"], dry_run=True) == []
    assert "3 of 3 runs missing; estimated" in capsys.readouterr().err
    assert stored(results) == before


def test_a_run_stored_under_another_experiment_is_shared(local_store, monkeypatch, capsys):
    """A run is its configuration hash: another experiment's identical configuration finds it,
    as stored (sweep, run, is_stored, stored_runs), and computes nothing."""
    from flcore.experiments import load
    from flcore.storage import runs

    results, paths = local_store
    monkeypatch.setenv("FLCORE_RESULTS", str(results))
    before = {p.name: p.stat().st_mtime_ns for p in results.rglob("*.json")}
    other = spec(grid=GRID, experiment="another")
    assert sweep(other, workers=1, progress=False) == paths  # the "tiny" files
    assert "all 2 runs stored" in capsys.readouterr().err
    cfgs = expand(other)
    assert all(runs.is_stored(c) for c in cfgs)
    path, doc = runs.run(cfgs[0], progress=False)
    assert path == paths[0] and doc["hash"] == cfgs[0].hash
    assert [d["hash"] for d in load.stored_runs(cfgs)] == [c.hash for c in cfgs]
    missing = expand(spec(grid={"seed": [7]}, experiment="another"))[0]
    pairs, docs = load.stored_labelled([(missing, {"seed": 7}), (cfgs[1], {"seed": 1})])
    assert [c.hash for c, _ in pairs] == [cfgs[1].hash] and pairs[0][1] == {"seed": 1}
    assert [d["hash"] for d in docs] == [cfgs[1].hash]  # the missing run is skipped, not computed
    assert not (results / "another").exists()  # nothing written for the other experiment
    assert {p.name: p.stat().st_mtime_ns for p in results.rglob("*.json")} == before


def test_interrupted_and_killed_sweeps_resume(tmp_path, monkeypatch, procs):
    """Ctrl-C during the second run, then SIGKILL of a second sweep during the third: the
    finished runs are kept and never recomputed, nothing partial is left, a rerun completes."""
    results = tmp_path / "results"
    p = write_spec(tmp_path / "tiny.yaml", spec(grid={"seed": [0, 1, 2]}))

    proc = cli_sweep(p, results)
    procs.append(proc)
    wait_for_file(results, 1, proc)
    first = stored(results)
    time.sleep(0.5)  # the second run is under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert len(stored(results)) == 1  # the run in progress was dropped, not half-written
    all_valid(results)

    proc = cli_sweep(p, results)
    procs.append(proc)
    wait_for_file(results, 2, proc)
    second = stored(results)
    assert all(second[name] == mtime for name, mtime in first.items())
    time.sleep(0.5)
    proc.kill()  # SIGKILL of the driver; the kernel sends SIGTERM to its worker
    proc.communicate()
    time.sleep(1.0)
    all_valid(results)
    assert stored(results) == second

    monkeypatch.setenv("FLCORE_RESULTS", str(results))
    paths = sweep(p, workers=1, threads=1, progress=False)
    assert len(paths) == 3 and all(q.exists() for q in paths)
    all_valid(results)
    after = stored(results)
    assert all(after[name] == mtime for name, mtime in second.items())  # finished runs were not repeated


def test_two_concurrent_sweeps_share_the_work(tmp_path, procs):
    results = tmp_path / "results"
    p = write_spec(tmp_path / "tiny.yaml", spec(grid={"seed": [0, 1, 2]}))
    a = cli_sweep(p, results)
    b = cli_sweep(p, results)
    procs += [a, b]
    (out_a, err_a), (out_b, err_b) = a.communicate(timeout=150), b.communicate(timeout=150)
    assert a.returncode == 0 and b.returncode == 0, (err_a, err_b)
    assert out_a.split() == out_b.split() and len(out_a.split()) == 3
    assert computed(err_a) + computed(err_b) == 3, (err_a, err_b)  # every run computed once
    all_valid(results)
    assert len(stored(results)) == 3
    assert not list((results / "tiny").glob(".*.lock"))


# --------------------------------------------------------------------------- ray executor


def test_ray_executor_matches_local(local_store, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    results, local_paths = local_store
    ray_results = tmp_path / "ray"
    monkeypatch.setenv("FLCORE_RESULTS", str(ray_results))
    paths = sweep(spec(grid=GRID), executor="ray", workers=2, threads=1, progress=False)
    assert len(paths) == 2
    all_valid(ray_results)
    for p in paths:
        doc = store.read(p)
        ref = store.read(results / "tiny" / p.name)  # same configuration, same hash
        assert doc["config"] == ref["config"]
        strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in doc["rounds"]]
        assert strip == [{k: v for k, v in r.items() if k != "wall_s"} for r in ref["rounds"]]
        assert doc["summary"] == ref["summary"]
        assert doc["provenance"]["threads"] == 1
    # the driver wrote them: a second ray sweep has nothing to do and starts no cluster
    assert sweep(spec(grid=GRID), executor="ray", workers=2, progress=False) == paths
    assert [p.name for p in paths] == [p.name for p in local_paths]


def test_a_chapter_sweep_with_options_meant_for_some_cases_expands_case_by_case():
    """Multi-Krum's m fits the attacked runs (10 genuine + 2 fakes) but not the run without
    fakes; labelled expansion (one case at a time) must accept what the whole sweep accepts."""
    from flcore.analysis import params

    spec = params.spec_from_file("params/poisonedfl_prodigy.smoke.yaml")
    whole = expand(spec)
    labelled = params.expand_labelled(spec)
    assert [c.hash for c, _ in labelled] == [c.hash for c in whole]


# --------------------------------------------------------------------------- packs


def test_a_packed_sweep_stores_every_run_under_its_hash_and_verify_says_it_was_packed(tmp_path, monkeypatch, capsys):
    """``--pack 3``: the three missing runs are one simulation (batched rows), each stored
    under its own hash with the pack in its provenance; each agrees with the run computed
    alone to float rounding; ``verify`` recomputes one alone and reports the pack."""
    from flcore.experiments import verify
    from flcore.sim.engine import simulate
    from flcore.experiments.sweep import make_packs, pack_size

    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    grid = {"client_defense": ["none", "leadfl"], "seed": [0, 1]}
    cfgs = expand(spec(grid=grid))
    assert [len(p) for p in make_packs(cfgs, 3)] == [3, 1]
    assert pack_size("auto", "cpu") == 1 and pack_size("2", "cpu") == 2
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(ConfigError, match="valid choices: auto or a positive integer"):
            pack_size(bad, "cpu")
    # one run stored already: the pack is formed from the three missing ones
    from flcore.storage.runs import run
    run(cfgs[0], progress=False)
    paths = sweep(spec(grid=grid), workers=1, threads=1, progress=False, pack=3, device="cpu")
    assert "1 pack(s) of up to 3 runs" in capsys.readouterr().err
    docs = [store.read(p) for p in paths]
    assert [d["hash"] for d in docs] == [c.hash for c in cfgs]
    assert "pack" not in docs[0]["provenance"]
    assert all(d["provenance"]["pack"] == 3 and d["provenance"]["executor"] == "batched" for d in docs[1:])
    for cfg, doc in zip(cfgs[1:], docs[1:]):
        alone = simulate(cfg, device="cpu", progress=False)["rounds"]
        for a, b in zip(alone, doc["rounds"]):
            assert a["selected"] == b["selected"]
            assert abs(a["main_acc"] - b["main_acc"]) <= 0.03
    ok, report = verify.verify(paths[1], rounds=1, tolerance=0.05)
    assert ok and '"pack": {"stored": 3, "current": 1}' in report


def test_the_device_script_computes_a_file_in_packs_and_tars_the_new_runs(tmp_path):
    """``scripts/device_sweep.sh`` (what a GPU session runs) on the CPU with a tiny pack: the
    sweep's missing runs are computed as packs of 2, and exactly the new stored runs come back
    in ``$OUT/runs.tar.gz``."""
    import tarfile

    store_dir, out = tmp_path / "store", tmp_path / "out"
    f = write_spec(tmp_path / "tiny.yaml", spec(grid={"seed": [0, 1]}))
    env = {**os.environ, "FLCORE_RESULTS": str(store_dir), "OUT": str(out), "DEVICE": "cpu", "PACK": "2",
           "PYTHON": sys.executable, "LIMIT_S": "300"}
    run_ = subprocess.run(["bash", str(ROOT / "scripts" / "device_sweep.sh"), str(f)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert run_.returncode == 0, run_.stderr + run_.stdout
    stored = sorted(str(p) for p in store_dir.rglob("*.json"))
    assert len(stored) == 2
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = sorted("/" + n.lstrip("/") for n in tar.getnames())
    assert names == stored
    docs = [store.read(p) for p in stored]
    assert all(d["provenance"]["pack"] == 2 for d in docs)
    assert "2 new stored runs" in (out / "sweep.log").read_text()
    # a second call computes nothing and sends nothing
    again = subprocess.run(["bash", str(ROOT / "scripts" / "device_sweep.sh"), str(f)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 new stored runs" in (out / "sweep.log").read_text()


def test_the_device_script_computes_an_attack_effect_file_too(tmp_path):
    """A parameter file of experiment attack_effect goes to its own command: the measurement
    and the Hessian comparison are stored and sent back."""
    import tarfile

    store_dir, out = tmp_path / "store", tmp_path / "out"
    base = {**TINY, "rounds": 2, "schedule": "periodic", "attack": "backdoor",
            "periodic": {"cycle": 2, "burst": 1, "malicious_per_round": 2}}
    f = write_spec(tmp_path / "ae.yaml", {"experiment": "attack_effect", "profile": "smoke", "base": base,
                                          "cases": [{"client_defense": "none"}],
                                          "hessian": {"rounds": [0], "steps": [2], "coordinates": 4, "seed": 0}})
    env = {**os.environ, "FLCORE_RESULTS": str(store_dir), "OUT": str(out), "DEVICE": "cpu",
           "PYTHON": sys.executable, "LIMIT_S": "300"}
    run_ = subprocess.run(["bash", str(ROOT / "scripts" / "device_sweep.sh"), str(f)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert run_.returncode == 0, run_.stderr + run_.stdout
    docs = [store.read(p) for p in sorted(store_dir.rglob("*.json"))]
    assert sorted(d["kind"] for d in docs) == ["attack_effect", "hessian_diagonal"]
    with tarfile.open(out / "runs.tar.gz") as tar:
        assert len(tar.getnames()) == 2
