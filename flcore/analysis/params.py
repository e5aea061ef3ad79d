"""Parameter files and the sweeps of the notebooks' parameters cells.

``params/<name>.yaml`` (default profile) and ``params/<name>.<profile>.yaml`` (other profiles)
read as sweep dicts of :func:`flcore.experiments.sweep.expand`; a chapter's parameters cell
resolved against them (:func:`resolve_spec`), its ``set`` parameter applied as
``flcore sweep --set`` applies it (:func:`with_overrides`), and its runs listed with the
overrides that made each (:func:`expand_labelled`, :func:`chapter_sweep`). Nothing here reads or
computes a run: the notebooks pass the configurations to :func:`flcore.experiments.load.load_runs`.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from flcore.core.constants import ROOT


PARAMS = ROOT / "params"


def params_path(name: str, profile: str) -> Path:
    """``params/<name>.yaml`` for the default profile, ``params/<name>.<profile>.yaml`` otherwise."""
    return PARAMS / (f"{name}.yaml" if profile == "default" else f"{name}.{profile}.yaml")


def read_params(path: str | Path) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


def sweep_spec(experiment: str, profile: str, base: dict | None, cases: list | None = None,
               grid: dict | None = None, description: str = "") -> dict:
    """The sweep dict of :func:`flcore.experiments.sweep.expand` built from notebook parameters.

    ``profile`` and ``experiment`` are top-level keys of a sweep; copies of them inside
    ``base`` (as some parameter files write them) are dropped, the top-level values win.
    """
    base = {k: copy.deepcopy(v) for k, v in (base or {}).items() if k not in ("profile", "experiment")}
    return {"experiment": experiment, "profile": profile, "description": description, "base": base,
            "cases": copy.deepcopy(cases) if cases else [{}], "grid": copy.deepcopy(grid) if grid else {}}


def spec_from_file(path: str | Path) -> dict:
    """A parameter file as a sweep dict (see :func:`sweep_spec`); the name gives missing defaults."""
    path = Path(path)
    raw = read_params(path)
    parts = path.name.split(".")
    profile = raw.get("profile") or (parts[1] if len(parts) == 3 else "default")
    return sweep_spec(raw.get("experiment", parts[0]), profile, raw.get("base"), raw.get("cases"),
                      raw.get("grid"), raw.get("description", ""))


def resolve_spec(name: str, profile: str, experiment: str, base: dict, cases: list | None, grid: dict | None,
                 description: str = "") -> tuple[dict, str]:
    """The sweep a notebook runs, and a sentence saying where it came from.

    The notebooks' parameter defaults are ``params/<name>.yaml`` (default profile). Papermill
    replaces only the keys a parameter file has, so two cases are resolved here:

    * ``-p profile smoke`` alone (base, cases and grid left at the defaults): the profile's
      own file ``params/<name>.<profile>.yaml`` is used;
    * ``-f params/<name>.<profile>.yaml``: a key that file does not have (e.g. no ``cases``)
      means "none", not the notebook default.

    Anything else is taken as given.
    """
    d = spec_from_file(params_path(name, "default")) if params_path(name, "default").exists() else None
    given = sweep_spec(experiment, profile, base, cases, grid, description)
    own = params_path(name, profile)
    if d is not None and own.exists():
        f = spec_from_file(own)
        untouched = (given["base"], given["cases"], given["grid"]) == (d["base"], d["cases"], d["grid"])
        if profile != "default" and untouched:
            return f, f"parameters of {own.relative_to(ROOT)}"
        if given["base"] == f["base"]:
            raw = read_params(own)
            for key in ("cases", "grid"):
                if key not in raw and given[key] == d[key]:
                    given[key] = [{}] if key == "cases" else {}
            return given, f"parameters of {own.relative_to(ROOT)}"
    return given, "notebook parameters"


def expand_labelled(spec: dict) -> list[tuple[Any, dict]]:
    """Every configuration of a sweep with the overrides (case merged with grid point) that made it.

    Same order and de-duplication as :func:`flcore.experiments.sweep.expand` (first occurrence wins).
    """
    import itertools

    from flcore.experiments.sweep import expand

    expand(spec)  # the whole sweep, checked once (option blocks against the runs that use them)
    grid = spec.get("grid") or {}
    keys = list(grid)
    out, seen = [], set()
    for case in spec.get("cases") or [{}]:
        for point in itertools.product(*(grid[k] for k in keys)):
            over = {**(case or {}), **dict(zip(keys, point))}
            one = {**spec, "cases": [case or {}], "grid": {k: [v] for k, v in zip(keys, point)}}
            (cfg,) = expand(one, check_unused=False)
            if cfg.hash not in seen:
                seen.add(cfg.hash)
                out.append((cfg, over))
    return out


def override_items(text) -> list[str]:
    """The ``set`` parameter of a notebook as ``--set`` items: ``"seed=5 leadfl.alpha=0.1"`` ->
    ``["seed=5", "leadfl.alpha=0.1"]`` (split like a shell command line, so a value with spaces can
    be quoted: ``"lr_decay='{kind: exponential, gamma: 0.9}'"``). A list is taken as it is."""
    import shlex

    from flcore.core.errors import ConfigError

    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        return list(text)
    if not isinstance(text, str):
        raise ConfigError("must be a string of KEY=VALUE items separated by spaces (e.g. 'seed=5 leadfl.alpha=0.1')")
    try:
        return shlex.split(text)
    except ValueError as e:  # an unclosed quote
        raise ConfigError(f"{e} (KEY=VALUE items separated by spaces, e.g. 'seed=5')") from None


def with_overrides(spec: dict, overrides) -> dict:
    """``spec`` with ``overrides`` (``--set`` items) applied as ``flcore sweep --set`` applies them
    (:func:`flcore.experiments.sweep.apply_overrides`: the base, and a grid axis or case value of the same key
    replaced, with a warning), checked by :func:`flcore.experiments.sweep.expand` over the whole sweep (same
    messages: unknown keys, invalid values)."""
    from flcore.experiments.sweep import apply_overrides, expand, read_spec

    items = override_items(overrides)
    if not items:
        return spec
    expand(spec, items)  # validates, and warns what the override replaces
    full, label = read_spec(spec)
    out, _ = apply_overrides(full, items, label)
    return {**spec, "base": out["base"], "cases": out["cases"], "grid": out["grid"]}


def chapter_sweep(name: str, profile: str, experiment: str, base: dict, cases: list | None, grid: dict | None,
                  description: str = "", overrides="") -> tuple[dict, list[tuple[Any, dict]]]:
    """A chapter's sweep from its parameters cell: ``(spec, [(config, overrides)])``; the
    notebook reads the documents of its runs with :func:`flcore.experiments.load.load_runs`
    (stored runs reused, missing ones computed).

    ``overrides``: the notebook's ``set`` parameter, ``KEY=VALUE`` items separated by spaces
    applied to the sweep's base exactly as ``flcore sweep --set`` (see :func:`with_overrides`);
    a mistake raises one :class:`flcore.core.errors.ConfigError` naming it."""
    from flcore.core.errors import ConfigError

    spec, source = resolve_spec(name, profile, experiment, base, cases, grid, description)
    try:
        items = override_items(overrides)
        spec = with_overrides(spec, items)
    except ConfigError as e:
        raise ConfigError(f"set = {overrides!r}: {e}") from None  # one message, not expand's call stack
    labelled = expand_labelled(spec)
    print(f"{len(labelled)} runs ({source}, profile {spec['profile']}"
          + (f"; set {' '.join(items)}" if items else "") + ")")
    return spec, labelled
