"""The architecture holds: packages import one way (the import-linter contract of pyproject.toml),
importing flcore has no side effects, a method is one new file, and the README's architecture
section names the packages in the contract's order."""
import os
import re
import subprocess
import sys
import textwrap
import tomllib

import grimp
import pytest
from importlinter.contracts.layers import LayersContract

from flcore.core.constants import ROOT


def contract_options() -> dict:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in cfg["contracts"] if c["id"] == "layers"]
    return {k: v for k, v in layers.items() if k not in ("id", "name", "type")}


def check(graph) -> bool:
    contract = LayersContract(name="layers", session_options={"root_packages": ["flcore"]},
                              contract_options=contract_options())
    return contract.check(graph, verbose=False).kept


def test_packages_import_only_the_packages_below_them():
    assert check(grimp.build_graph("flcore", cache_dir=None))


@pytest.mark.parametrize("importer,imported", [("flcore.core.config", "flcore.methods.aggregators"),
                                               ("flcore.methods.defenses", "flcore.sim.engine"),
                                               ("flcore.storage.store", "flcore.experiments.attack_effect"),
                                               ("flcore.analysis.tables", "flcore.present.explorer")])
def test_the_contract_fails_on_a_reversed_import(importer, imported):
    graph = grimp.build_graph("flcore", cache_dir=None)
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="import")
    assert not check(graph)


def test_the_cli_command_checks_the_same_contract():
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "lint-imports"), "--no-cache"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_importing_flcore_has_no_side_effects():
    """No environment change, no subprocess (git), no allocator call when the modules are imported."""
    code = textwrap.dedent("""
        import ctypes, os, subprocess
        calls = []
        def spy(orig):
            def wrapped(*a, **k):
                calls.append(str(a[0] if a else k.get("args")))
                return orig(*a, **k)
            return wrapped
        subprocess.run, subprocess.Popen, ctypes.CDLL = spy(subprocess.run), spy(subprocess.Popen), spy(ctypes.CDLL)
        import flcore, flcore.cli, flcore.build.book, flcore.storage.store, flcore.sim.engine
        print(sum("git" in c or "libc.so" in c for c in calls), "THP_MEM_ALLOC_ENABLE" in os.environ)
    """)
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "False"]


TOY = '''
"""A toy aggregator: the mean of the two updates nearest the coordinate-wise median (a test's)."""
import torch

from flcore.core.registry import register


@register("aggregator", "toy_mean", paper="none (test)")
def toy_mean(updates, weights, opts, state):
    med = updates.median(dim=0).values
    nearest = torch.cdist(updates, med[None]).flatten().argsort()[:2]
    w = torch.zeros(len(updates), dtype=updates.dtype)
    w[nearest] = 0.5
    return w @ updates, w
'''


def test_a_new_aggregator_is_one_file(tmp_path):
    """The toy's file, in a folder on the method package's path, is found, named in a configuration
    and run by the simulation; nothing else is edited."""
    (tmp_path / "toy_mean.py").write_text(TOY)
    code = textwrap.dedent(f"""
        import flcore.methods
        flcore.methods.__path__.append({str(tmp_path)!r})
        from flcore.core import config, registry
        from flcore.sim.engine import simulate
        cfg = config.load("params/smoke.yaml", ["rounds=1", "eval.test_samples=200", "aggregator=toy_mean"])
        rec = simulate(cfg, device="cpu", progress=False)
        print(registry.get("aggregator", "toy_mean").paper, sum(w > 0 for w in rec["rounds"][0]["agg_weights"]))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "none (test) 2"


def test_readme_architecture_lists_the_packages_in_the_contracts_order():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(flcore(?:\.\w+)?)`", section.split("```")[1])
    layers = [m for m in contract_options()["layers"] if m != "flcore.__main__"]
    assert named == layers
    for package in layers:
        if package != "flcore.cli":
            assert (ROOT / package.replace(".", "/") / "__init__.py").read_text().startswith('"""'), package
