"""The experiment notebooks and the book's parameter files, checked without executing anything.

* each ``notebooks/<name>.py`` (jupytext percent) and ``notebooks/<name>.ipynb`` hold the same
  cells (type, source, tags), and the ``.ipynb`` holds no outputs or execution counts;
* every notebook has a cell tagged ``parameters``; those of the book's chapters define the
  sweep keys, with defaults equal to ``params/<name>.yaml``;
* every parameter file the book uses exists for each profile, and expands to valid runs;
* no notebook defines a function, a lambda or a class: their logic lives in ``flcore``.
"""
import ast
import re
from pathlib import Path

import nbformat
import pytest

from flcore.build import book
from flcore.analysis import params as param_files

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "notebooks"
PAIRS = sorted(p.stem for p in NB.glob("*.py"))
NOTEBOOKS = sorted(p.stem for p in NB.glob("*.ipynb"))
# chapters whose parameters cell must define the whole sweep (the explorer's sweep is its live run)
SWEEP_KEYS = ("profile", "experiment", "description", "base", "cases", "grid")
CHAPTERS = ["original_tables", "alpha_sensitivity", "selection", "poisonedfl_prodigy", "explorer"]


def cells(nb) -> list[tuple[str, str, tuple]]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in nb.cells]


def parameters(name: str) -> dict:
    nb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    ns: dict = {}
    exec(cell.source, ns)  # plain assignments of literals
    return {k: v for k, v in ns.items() if not k.startswith("__")}


def test_every_chapter_notebook_exists():
    for name in CHAPTERS:
        assert (NB / f"{name}.py").exists() and (NB / f"{name}.ipynb").exists(), name


@pytest.mark.parametrize("name", PAIRS)
def test_jupytext_pair_in_sync(name):
    import jupytext

    ipynb = NB / f"{name}.ipynb"
    assert ipynb.exists(), f"{name}.py has no paired {name}.ipynb (jupytext --to ipynb notebooks/{name}.py)"
    from_py = jupytext.read(NB / f"{name}.py")
    from_nb = nbformat.read(ipynb, as_version=4)
    assert cells(from_py) == cells(from_nb), \
        f"notebooks/{name}.py and .ipynb differ: run `jupytext --sync notebooks/{name}.ipynb`"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_defines_no_function(name):
    nb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                found.append(f"cell {i}, line {node.lineno}: {type(node).__name__}")
    assert not found, f"notebooks/{name}: move these into flcore: {found}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_has_no_outputs(name):
    nb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert c.outputs == [], f"{name}.ipynb cell {i} has outputs (clear them before committing)"
            assert c.execution_count is None, f"{name}.ipynb cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{name}.ipynb holds saved widget state"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell(name):
    nb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}.ipynb needs exactly one cell tagged 'parameters'"
    assert tagged[0].cell_type == "code"
    assert "profile" in parameters(name)


@pytest.mark.parametrize("name", CHAPTERS)
def test_parameter_defaults_match_the_default_parameter_file(name):
    params = parameters(name)
    for key in SWEEP_KEYS:
        assert key in params, f"{name}: the parameters cell lacks {key!r}"
    path = param_files.params_path(name, "default")
    if not path.exists():  # the explorer: its sweep is the live run
        return
    raw = param_files.read_params(path)
    assert params["profile"] == raw.get("profile", "default")
    assert params["experiment"] == raw["experiment"]
    assert params["description"] == raw.get("description", "")
    got = param_files.sweep_spec(params["experiment"], params["profile"], params["base"], params["cases"], params["grid"])
    want = param_files.spec_from_file(path)
    for key in ("base", "cases", "grid"):
        assert got[key] == want[key], f"{name}: default {key} differs from {path.name}"


@pytest.mark.parametrize("profile", book.PROFILES)
def test_every_parameter_file_of_the_book_exists(profile):
    for chapter, names in book.EXPERIMENTS.items():
        for name in names:
            path, eff = book.param_file(name, profile)
            if chapter in book.OPTIONAL and path is None:
                continue
            assert path is not None, f"no parameter file for {name}"
            if profile in ("smoke", "default"):  # these profiles have their own files
                assert eff == profile, f"{param_files.params_path(name, profile)} missing"
    assert (ROOT / "params" / "smoke.yaml").exists()  # the explorer's live run


@pytest.mark.parametrize("profile", book.PROFILES)
def test_every_parameter_file_of_the_book_expands(profile):
    sweeps = book.profile_sweeps(profile)
    assert sweeps
    for chapter, name, path, spec in sweeps:
        cfgs = book._configs(name, spec)
        assert cfgs, name
        assert all(c.profile == spec["profile"] for c in cfgs)


def test_generated_deviations_table_is_markdown():
    text = book.deviations("smoke")
    lines = text.splitlines()
    assert lines[:2] == ["```{table}", ":class: flcore-wide flcore-deviations"]  # scrolls, see _css/book.css
    (header,) = [l for l in lines if l.startswith("| experiment |")]
    assert header.startswith("| experiment | setting | paper protocol")
    n = header.count("|")
    rows = [l for l in lines if l.startswith("| ") and not l.startswith("| experiment")]
    assert rows and all(l.count("|") - l.count("\\|") == n for l in rows)
    assert any("| local_epochs |" in l for l in rows)


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_every_departure_from_the_protocol_says_why(profile):
    rows = [l for l in book.deviations(profile).splitlines()
            if l.startswith("| ") and not l.startswith("| experiment")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", l)[1:-1]] for l in rows]
    why = {(c[0], c[1]): c[-1] for c in cells}
    assert rows and all(why.values()), [k for k, v in why.items() if not v]
    if profile == "default":  # the CIFAR-10 cell's dataset and batch size are named departures
        assert {("original_tables", "dataset"), ("original_tables", "batch_size")} <= set(why)


def test_sync_params_rewrites_sweep_keys_and_keeps_notebook_options():
    current = ("profile = 'default'\nexperiment = 'x'\ndescription = 'old'\nbase = {'rounds': 1}\n"
               "cases = [{'a': 1}]\ngrid = {}\n# a comment on the option\nlevel = 50.0\n")
    raw = {"experiment": "x", "description": "new", "base": {"rounds": 2}, "cases": [{"a": 2}, {"a": 3}], "grid": {}}
    out = book.parameters_cell_source(current, raw)
    ns: dict = {}
    exec(out, ns)
    assert ns["description"] == "new" and ns["base"] == {"rounds": 2} and ns["cases"] == [{"a": 2}, {"a": 3}]
    assert ns["profile"] == "default" and ns["level"] == 50.0
    assert "# a comment on the option" in out
    assert book.parameters_cell_source(out, raw) == out  # idempotent


# --------------------------------------------------------------------------- the installed package


@pytest.mark.parametrize("path", sorted(NB.glob("*.py")) + sorted(NB.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_the_installed_package(path):
    text = path.read_text()
    assert "sys.path" not in text, f"{path.name} edits sys.path; flcore is imported as the installed package"


# --------------------------------------------------------------------------- generated tables of a profile


def _git(*args) -> str:
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout


@pytest.mark.parametrize("profile", [p for p in book.PROFILES if p != "default"])
def test_generated_tables_of_a_non_default_profile_are_not_tracked(profile):
    out = book.generated_dir(profile)
    assert out.is_relative_to(ROOT / "_build"), out
    rel = out.relative_to(ROOT).as_posix()
    assert _git("ls-files", "--", rel) == ""
    assert _git("check-ignore", f"{rel}/deviations.md").strip() == f"{rel}/deviations.md"


def test_generated_tables_of_the_default_profile_are_the_tracked_ones():
    assert book.generated_dir("default") == ROOT / "book" / "_generated"
    assert sorted(_git("ls-files", "book/_generated").split()) == [
        "book/_generated/deviations.md", "book/_generated/provenance.md"]


def test_chapters_include_the_generated_tables_of_the_profile_being_built():
    chapters = [p for p in sorted((ROOT / "book").glob("*.md")) if "_generated/" in p.read_text()]
    assert chapters
    for p in chapters:
        text = p.read_text()
        assert book.redirect_includes(text, "default") == text
        smoke = book.redirect_includes(text, "smoke")
        assert "{include} _generated/" not in smoke, p.name
        assert "{include} /_build/generated/smoke/" in smoke, p.name
    cfg = (ROOT / "_config.yml").read_text()
    assert "- flcore.build.book" in cfg  # the Sphinx extension that redirects the includes
    assert f"{book.PROFILE_ENV}=$(PROFILE)" in (ROOT / "Makefile").read_text()


def test_book_profile_from_the_environment(monkeypatch):
    monkeypatch.delenv(book.PROFILE_ENV, raising=False)
    assert book.book_profile() == "default"
    monkeypatch.setenv(book.PROFILE_ENV, "smoke")
    assert book.book_profile() == "smoke"
    monkeypatch.setenv(book.PROFILE_ENV, "tiny")
    with pytest.raises(SystemExit, match="not a profile"):
        book.book_profile()


def test_provenance_lists_the_paper_protocol_attack_effect_measurements(tmp_path, monkeypatch):
    from flcore.experiments import attack_effect as ae
    from flcore.storage import store

    import shutil

    cfgs, _, _ = ae.read_params(ROOT / "params" / "attack_effect.paper.yaml")
    # a valid plain run of the same configuration (a selection cell) is not the measurement
    plain = ROOT / "results" / "selection" / f"{cfgs[0].hash}.json"
    assert store.load_valid(plain) is not None, "the committed store lost the selection run"
    (tmp_path / "selection").mkdir()
    shutil.copy(plain, tmp_path / "selection" / plain.name)
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    text = book.provenance("default")
    for c in cfgs:  # stored under the attack_effect experiment, as measurements, not as plain runs
        assert f"| attack_effect.paper | `attack_effect/{c.hash}.json` | missing |" in text
