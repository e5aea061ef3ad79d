"""The notebooks' ``set`` parameter (dotted overrides as ``flcore sweep --set``) and the per-run
progress lines of :func:`flcore.experiments.load.load_runs`; nothing is trained."""
import nbformat
import pytest

from flcore.analysis import params
from flcore.build import book
from flcore.core.constants import ROOT
from flcore.core.errors import ConfigError
from flcore.experiments import load

NB = ROOT / "notebooks"
EXPERIMENT_NOTEBOOKS = ["original_tables", "alpha_sensitivity", "selection", "poisonedfl_prodigy", "attack_effect"]


@pytest.fixture
def no_compute(monkeypatch):
    """chapter_runs without computing or reading runs: load_runs returns the configurations."""
    monkeypatch.setattr(load, "load_runs", lambda cfgs: list(cfgs))


def chapter_runs(*args):
    """A chapter's sweep and the documents of its runs, read as the notebooks read them
    (:func:`flcore.analysis.params.chapter_sweep`, then :func:`flcore.experiments.load.load_runs`)."""
    spec, labelled = params.chapter_sweep(*args)
    return spec, labelled, load.load_runs(cfg for cfg, _ in labelled)


def selection_smoke(overrides):
    d = params.spec_from_file(params.params_path("selection", "default"))
    return chapter_runs("selection", "smoke", "selection", {**d["base"], "profile": "default"}, d["cases"],
                        d["grid"], d["description"], overrides)


def test_override_items_split_like_a_command_line():
    assert params.override_items("") == [] and params.override_items(None) == []
    assert params.override_items("seed=5  leadfl.alpha=0.1") == ["seed=5", "leadfl.alpha=0.1"]
    assert params.override_items("lr_decay='{kind: exponential, gamma: 0.9}' seed=1") == [
        "lr_decay={kind: exponential, gamma: 0.9}", "seed=1"]
    assert params.override_items(["seed=5"]) == ["seed=5"]
    with pytest.raises(ConfigError, match="quotation"):
        params.override_items("seed='5")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        params.override_items(5)


def test_set_applies_to_every_run_of_the_chapter(no_compute):
    spec, labelled, cfgs = selection_smoke("seed=5 leadfl.alpha=0.1 eval.test_samples=300")
    assert len(cfgs) == 4
    assert all(c.seed == 5 and c.eval.test_samples == 300 and c.eval.batch == 1000 for c in cfgs)
    assert {c.options("leadfl").alpha for c in cfgs if c.client_defense == "leadfl"} == {0.1}
    # the same runs as the command line's sweep --set
    from flcore.experiments.sweep import expand

    want = expand(params.params_path("selection", "smoke"), ["seed=5", "leadfl.alpha=0.1", "eval.test_samples=300"])
    assert [c.hash for c in cfgs] == [c.hash for c in want]
    assert [c.hash for c, _ in labelled] == [c.hash for c in want]


def test_set_of_a_grid_key_replaces_its_axis_with_a_warning(no_compute):
    """The default selection chapter varies the seed over [0, 1, 2]: ``set seed=5`` gives its
    8 cells at seed 5 (what ``papermill notebooks/selection.ipynb out.ipynb -p set seed=5`` runs)."""
    d = params.spec_from_file(params.params_path("selection", "default"))
    with pytest.warns(UserWarning, match=r"--set seed=5 replaces the grid's seed axis \[0, 1, 2\]"):
        spec, labelled, cfgs = chapter_runs("selection", "default", "selection", d["base"], d["cases"],
                                            d["grid"], d["description"], "seed=5")
    assert spec["grid"]["seed"] == [5] and len(cfgs) == 8 and {c.seed for c in cfgs} == {5}
    assert {(c.schedule, c.client_defense) for c in cfgs} == {
        (s, c) for s in ("periodic", "random") for c in ("none", "ldp", "flwbc", "leadfl")}
    from flcore.experiments.sweep import expand

    with pytest.warns(UserWarning):
        want = expand(params.params_path("selection", "default"), ["seed=5"])
    assert [c.hash for c in cfgs] == [c.hash for c in want]


def test_no_set_is_the_chapter_sweep(no_compute):
    _, _, cfgs = selection_smoke("")
    from flcore.experiments.sweep import expand

    assert [c.hash for c in cfgs] == [c.hash for c in expand(params.params_path("selection", "smoke"))]


@pytest.mark.parametrize("overrides, message", [
    ("sed=5", r"set = 'sed=5': .*unknown key 'sed'; valid keys: "),
    ("seed", r"override 'seed' must look like key=value"),
    ("rounds=-1", r"rounds must be positive"),
    ("client_defense=ldpp", r"set = 'client_defense=ldpp': .*ldpp"),
    ("profile=paper", r"'profile' cannot be overridden"),
    ("leadfl.alpha='0.1", r"No closing quotation"),
])
def test_a_bad_set_is_one_message(no_compute, overrides, message):
    with pytest.raises(ConfigError, match=message) as e:
        selection_smoke(overrides)
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_sync_params_emits_set():
    current = "profile = 'default'\nexperiment = 'x'\ndescription = ''\nbase = {}\ncases = None\ngrid = {}\nlevel = 1\n"
    out = book.parameters_cell_source(current, {"experiment": "x", "base": {"rounds": 2}})
    ns: dict = {}
    exec(out, ns)
    assert ns["set"] == "" and ns["level"] == 1 and ns["base"] == {"rounds": 2}
    assert book.parameters_cell_source(out, {"experiment": "x", "base": {"rounds": 2}}) == out  # idempotent
    assert out.count("set = ''") == 1


@pytest.mark.parametrize("name", EXPERIMENT_NOTEBOOKS)
def test_every_experiment_notebook_has_the_set_parameter(name):
    nb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    ns: dict = {}
    exec(cell.source, ns)
    assert ns.get("set") == "", f"{name}: the parameters cell lacks set = ''"


def test_load_runs_prints_a_line_per_computed_run(monkeypatch, capsys):
    from flcore.storage import runs
    from flcore.experiments.sweep import expand

    cfgs = expand(params.params_path("selection", "smoke"))[:3]
    stored = {cfgs[0].hash}
    monkeypatch.setattr(runs, "is_stored", lambda c: c.hash in stored)
    monkeypatch.setattr(runs, "run", lambda c, progress=True: (None, {"hash": c.hash, "status": "completed"}))
    docs = load.load_runs(cfgs + [cfgs[1]], log=None)
    assert [d["hash"] for d in docs] == [c.hash for c in cfgs + [cfgs[1]]]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4  # two computed runs, started and finished (the repeated one is stored by then)
    assert err[0].startswith("run 1/2 started: fmnist/bulyan_reference/") and cfgs[1].hash in err[0]
    assert err[1].startswith("run 1/2 completed in ") and " s: " in err[1]
    assert err[3].startswith("run 2/2 completed in ") and cfgs[2].hash in err[3]
