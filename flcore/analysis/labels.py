"""Runs and settings as text, from the display names of :mod:`flcore.core.names`: overrides
(:func:`override_label` for legends and tables, :func:`fmt_overrides` as ``key=value``), what
data a set of runs is (:func:`describe`), and the chapters' names of a run's setting. They are
here rather than in :mod:`flcore.present` because the tables of :mod:`flcore.analysis.tables`
use them.
"""
from __future__ import annotations

from flcore.analysis.configs import flatten, get
from flcore.core.names import (ATTACK_NAMES, CLIENT_ORDER, KEY_NAMES, OVERRIDE_NAMES, PROFILE_NAMES, client_name,
                               schedule_name, server_name)


def fmt_overrides(over: dict) -> str:
    def one(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {one(x)}" for k, x in v.items()) + "}"
        return str(v)

    return ", ".join(f"{k}={one(v)}" for k, v in over.items()) or "base"


def override_label(over: dict, empty: str = "plain") -> str:
    """Overrides as readable text for legends and tables: ``lr_decay={kind: exponential,
    gamma: 0.99}`` reads "lr decay ×0.99 per round", ``poisonedfl.noise_gamma=0.5`` reads
    "noise scale γ = 0.5"; names from :data:`flcore.core.names.OVERRIDE_NAMES` and
    :data:`flcore.core.names.KEY_NAMES`, other keys as ``key = value``. ``empty`` when there is
    no override."""
    parts = []
    for k, v in over.items():
        if k == "lr_decay" and isinstance(v, dict):
            kind = v.get("kind", "exponential")
            parts.append(f"lr decay ×{v['gamma']:g} per round" if kind == "exponential" and "gamma" in v
                         else f"lr decay ({kind})")
            continue
        flat = flatten({k: v}) if isinstance(v, dict) else {k: v}
        for key, val in flat.items():
            one = f"{key}={val}"
            if one in OVERRIDE_NAMES:
                parts.append(OVERRIDE_NAMES[one])
            elif key == "aggregator":
                parts.append(server_name(val))
            elif key == "client_defense":
                parts.append(client_name(val))
            elif key == "schedule":
                parts.append(schedule_name(val))
            elif key == "attack":
                parts.append(ATTACK_NAMES.get(val, str(val)))
            else:
                name = KEY_NAMES.get(key, key.split(".")[-1].replace("_", " "))
                parts.append(f"{name} = {val:g}" if isinstance(val, float) else f"{name} = {val}")
    return ", ".join(parts) or empty


def describe(docs: list[dict]) -> str:
    """One line saying what data the runs are: dataset label, profile, rounds, local epochs, seeds."""
    if not docs:
        return "no runs"

    def vals(f):
        out = []
        for d in docs:
            v = f(d)
            if v not in out:
                out.append(v)
        return out

    def join(xs):
        return "/".join(str(x) for x in xs)

    labels = vals(lambda d: d["provenance"].get("data_label") or d["config"].get("dataset"))
    seeds = sorted(vals(lambda d: d["config"].get("seed", 0)))
    ev = vals(lambda d: get(d["config"], "eval.test_samples"))
    profiles = vals(lambda d: d["config"].get("profile"))
    return (f"{join(labels)}; {join(PROFILE_NAMES.get(p, f'profile {p}') for p in profiles)}; "
            f"{join(vals(lambda d: d['config'].get('rounds')))} rounds; "
            f"{join(vals(lambda d: d['config'].get('local_epochs')))} local epoch(s); "
            f"{len(seeds)} seed(s) ({join(seeds)}); {join(ev)} test images per evaluation")


def defense_label(doc: dict) -> str:
    """A run of the alpha sweep as read: "no defense", "LeadFL, α = 0.4", or the defense's name."""
    c = doc["config"]
    if c["client_defense"] == "leadfl":
        return f"LeadFL, α = {get(c, 'leadfl.alpha'):g}"
    return "no defense" if c["client_defense"] == "none" else client_name(c["client_defense"])


def defense_label_order(settings) -> list[str]:
    """Settings named by :func:`defense_label` in the order the alpha chapter shows them: "no
    defense", then LeadFL by increasing α, then the other defenses by name."""
    def key(s: str):
        if s == "no defense":
            return (0, 0.0, s)
        if s.startswith("LeadFL") and "=" in s:
            return (1, float(s.split("=")[-1]), s)
        return (2, 0.0, s)
    return sorted(dict.fromkeys(settings), key=key)


def by_client_defense(docs: list[dict]) -> list[dict]:
    """Stored runs in the chapters' order of client defenses (none, LDP, FL-WBC, LeadFL, then
    any other by name); the sort is stable, so runs of one defense keep their order."""
    def key(d: dict):
        c = d["config"]["client_defense"]
        return (CLIENT_ORDER.index(c) if c in CLIENT_ORDER else len(CLIENT_ORDER), c)
    return sorted(docs, key=key)


def case_label(cfg) -> str:
    """A measured case of the attack-effect chapter: its client defense (and LeadFL's variant and
    alpha when they are not the code's at 0.4)."""
    if cfg.client_defense == "leadfl":
        o = cfg.options("leadfl")
        return "LeadFL" if (o.variant, o.alpha) == ("code", 0.4) else f"LeadFL ({o.variant}, alpha {o.alpha:g})"
    return "no client defense" if cfg.client_defense == "none" else client_name(cfg.client_defense)


def undefended_cell_setting(cfg: dict) -> str:
    """The undefended-cell experiment a run belongs to, as words: its schedule and which part
    of the state Multi-Krum compares."""
    state = "trainable parameters only" if cfg.get("aggregate_state") == "trainable" else "whole state"
    return f"{schedule_name(cfg.get('schedule'))}, {state}"


def pfl_variant(over: dict) -> str:
    """What a PoisonedFL-chapter run changes besides the attack and the aggregator, as
    ``key=value`` overrides ("" for the plain setting)."""
    return fmt_overrides({k: v for k, v in over.items() if k not in ("attack", "aggregator")}).replace("base", "")
