"""Registries of methods, one per family, so a name in a parameter file leads to its code.

Families: ``aggregator``, ``attack``, ``client_defense``, ``schedule``.
The methods are found, not listed: :func:`discover` imports every module of the packages in
:data:`METHOD_PACKAGES` (``flcore.methods``), and each registers its own with :func:`register`.
Adding a method is one new file there. Each entry holds the function that implements the method, the dataclass of its
options (nested in the configuration under the method's name, e.g.
``leadfl.alpha``) and the paper it comes from.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

FAMILIES = ("aggregator", "attack", "client_defense", "schedule")


@dataclass(frozen=True)
class Method:
    family: str
    name: str
    fn: Callable
    options: type | None
    paper: str


REGISTRY: dict[str, dict[str, Method]] = {family: {} for family in FAMILIES}

#: The packages whose modules register methods (imported by name, so ``core`` depends on none).
METHOD_PACKAGES = ["flcore.methods"]
_discovered: set[str] = set()


def discover() -> None:
    """Import every module (recursively) of :data:`METHOD_PACKAGES` once; importing registers."""
    for package in METHOD_PACKAGES:
        if package in _discovered:
            continue
        _discovered.add(package)  # before importing: a method module may call get() at import
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
            importlib.import_module(info.name)


def methods(family: str) -> dict[str, Method]:
    """Every registered method of ``family``, by name."""
    discover()
    return REGISTRY[family]


def register(family: str, name: str, *, options: type | None = None, paper: str = ""):
    """Decorator: ``@register("aggregator", "multikrum", options=MultiKrumOptions, paper=...)``."""
    if family not in REGISTRY:
        raise ValueError(f"unknown family {family!r}; families are {', '.join(FAMILIES)}")

    def wrap(fn):
        if name in REGISTRY[family]:
            raise ValueError(f"{family} {name!r} registered twice")
        REGISTRY[family][name] = Method(family, name, fn, options, paper)
        return fn

    return wrap


def get(family: str, name: str) -> Method:
    from flcore.core.errors import ConfigError

    known = methods(family)
    if name not in known:
        raise ConfigError(f"unknown {family} {name!r}; valid choices: {', '.join(sorted(known))}")
    return known[name]
