"""Run configurations as plain dicts (the ``config`` of a stored run document, see
:mod:`flcore.storage.store`): dotted access (:func:`get`), flat dotted keys (:func:`flatten`),
differences (:func:`diff`) and the settings that tell the runs of one table cell apart
(:func:`cell_variants`).
"""
from __future__ import annotations

from typing import Iterable


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def get(cfg: dict, dotted: str, default=None):
    node = cfg
    for p in dotted.split("."):
        if not isinstance(node, dict) or p not in node:
            return default
        node = node[p]
    return node


def diff(a: dict, b: dict, ignore: Iterable[str] = ("experiment",)) -> dict:
    """Flattened keys whose value in ``a`` differs from ``b`` (keys absent from ``b`` included)."""
    fa, fb = flatten(a), flatten(b)
    ign = tuple(ignore)
    return {k: v for k, v in fa.items()
            if fb.get(k, object()) != v and not any(k == i or k.startswith(i + ".") for i in ign)}


IDENTITY_IGNORE = ("seed", "experiment", "profile")


def cell_variants(docs: list[dict], fixed: tuple = ("aggregator", "client_defense")) -> list[str]:
    """For each run, the settings that tell it apart from the other runs with the same
    ``fixed`` values other than the seed (e.g. ``alpha=0.15`` when LeadFL runs with two
    alphas); ``""`` when only seeds differ."""
    groups: dict[tuple, list[int]] = {}
    for i, d in enumerate(docs):
        groups.setdefault(tuple(get(d["config"], k) for k in fixed), []).append(i)
    out = [""] * len(docs)
    for idx in groups.values():
        flat = [flatten(docs[i]["config"]) for i in idx]
        keys = sorted({k for f in flat for k in f} - set(IDENTITY_IGNORE))
        varying = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
        for i, f in zip(idx, flat):
            out[i] = ", ".join(f"{k.split('.')[-1]}={f.get(k)}" for k in varying)
    return out
