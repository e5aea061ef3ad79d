"""Per-round views of stored runs: the per-round frame of several runs (:func:`rounds_frame`,
accuracies in %), the malicious clients and burst rounds of a run (and their contiguous
blocks), the clients Multi-Krum kept, the aggregation weight on PoisonedFL's fake clients, the
attack's own records, the test error of each evaluated round, the round-to-round jitter at the
end of runs (:func:`tail_jitter`), and whether two runs agree round by round.
"""
from __future__ import annotations

import math
from typing import Iterable

from flcore.analysis.configs import get


def rounds_frame(docs: list[dict], keys: Iterable[str] = ()):
    """One row per (run, round): run hash, round, main/backdoor accuracy (%), malicious and
    selected counts, fake clients, lr, wall time, plus the configuration values ``keys``
    (dotted), e.g. ``client_defense`` or ``leadfl.alpha``. Rounds without evaluation have NaN
    accuracies. The per-round values are those of :func:`flcore.analysis.export.round_record` (the
    rows of ``flcore export``), accuracies in percent."""
    import pandas as pd

    from flcore.analysis.export import round_record

    rows = []
    keys = list(keys)
    for d in docs:
        extra = {k: get(d["config"], k) for k in keys}
        for r in d["rounds"]:
            rec = round_record(r)
            rows.append({**rec, "run": d["hash"], "seed": d["config"].get("seed", 0),
                         "main_acc": _pct(rec["main_acc"]), "backdoor_acc": _pct(rec["backdoor_acc"]), **extra})
    cols = ["run", "seed", "round", "main_acc", "backdoor_acc", "n_malicious", "n_selected", "fake_clients",
            "lr", "wall_s", *keys]
    return pd.DataFrame(rows, columns=cols)


def _pct(v):
    return float("nan") if v is None else 100.0 * float(v)


def malicious_counts(doc: dict) -> list[int]:
    return [len(r.get("malicious") or []) for r in doc["rounds"]]


def burst_rounds(doc: dict, threshold: int = 5) -> list[int]:
    """Rounds with at least ``threshold`` malicious clients (5 of 10 is a tie under the
    reference Multi-Krum, 6 a takeover)."""
    return [r["round"] for r in doc["rounds"] if len(r.get("malicious") or []) >= threshold]


def blocks(rounds: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous blocks ``[(first, last), ...]`` of a set of rounds."""
    out: list[list[int]] = []
    for r in sorted(set(rounds)):
        if out and r == out[-1][1] + 1:
            out[-1][1] = r
        else:
            out.append([r, r])
    return [(a, b) for a, b in out]


def burst_set(doc: dict, cycle: int | None = None, burst: int | None = None, threshold: int = 5) -> list[int]:
    """Burst rounds of a run: the first ``burst`` rounds of each ``cycle`` for the periodic
    schedule; otherwise the rounds with at least ``threshold`` malicious clients."""
    if doc["config"].get("schedule") == "periodic":
        cycle = cycle or get(doc["config"], "periodic.cycle", 10)
        burst = burst if burst is not None else get(doc["config"], "periodic.burst", 2)
        return [r["round"] for r in doc["rounds"] if r["round"] % cycle < burst]
    return burst_rounds(doc, threshold)


def half_selected(doc: dict) -> int:
    """Half the clients selected per round, rounded up (at least 1): the burst threshold."""
    return max(1, math.ceil(doc["config"]["clients_per_round"] / 2))


def kept_clients(doc: dict) -> list[dict]:
    """Per round with aggregation weights: malicious selected, clients kept (weight > 0),
    malicious kept and the malicious share among the kept clients."""
    out = []
    for r in doc["rounds"]:
        w = r.get("agg_weights")
        if not w:
            continue
        sel = r.get("selected") or []
        mal = set(r.get("malicious") or [])
        kept = [c for c, x in zip(sel, w[:len(sel)]) if x > 0]
        km = sum(1 for c in kept if c in mal)
        out.append({"round": r["round"], "malicious_selected": len(mal), "kept": len(kept), "malicious_kept": km,
                    "malicious_share_kept": km / len(kept) if kept else float("nan")})
    return out


def fake_weight(doc: dict) -> list[dict]:
    """Per round: the aggregation weight on fake clients (the rows after the genuine ones,
    ``fake_clients`` of them) and the fakes' share of the submitted updates."""
    out = []
    for r in doc["rounds"]:
        w = r.get("agg_weights")
        nf = r.get("fake_clients", 0) or 0
        if w is None:
            continue
        ng = len(w) - nf
        tot = sum(w)
        out.append({"round": r["round"], "fakes": nf, "weight_on_fakes": (sum(w[ng:]) / tot) if tot else float("nan"),
                    "fake_share": nf / len(w) if w else float("nan")})
    return out


def attack_records(doc: dict) -> list[dict]:
    """PoisonedFL's per-round record (c, lam, alignment, threshold, tested, aligned) with the round."""
    return [{"round": r["round"], **(r.get("attack") or {})} for r in doc["rounds"] if r.get("attack")]


def alignment_outcomes(doc: dict) -> dict:
    """PoisonedFL's alignment tests in a run (:func:`attack_records`): how many were made and
    passed, the first failed round (None if none failed), and the scale factor c of the first
    and of the last round (None without attack records)."""
    recs = attack_records(doc)
    tests = [r for r in recs if r.get("tested")]
    failed = [r["round"] for r in tests if r.get("aligned") is False]
    return {"tests": len(tests), "passed": sum(1 for r in tests if r.get("aligned")),
            "first_failed": failed[0] if failed else None,
            "c_first": recs[0].get("c") if recs else None, "c_final": recs[-1].get("c") if recs else None}


def round_errors(doc: dict) -> list[float]:
    """Test error (%) of each evaluated round of a run, in order (rounds without a finite
    main-task accuracy skipped)."""
    return [100 - 100 * r["main_acc"] for r in doc["rounds"]
            if r.get("main_acc") is not None and math.isfinite(r["main_acc"])]


def same_rounds(doc: dict, other: dict | None, keys: Iterable[str] = ("selected", "main_acc", "backdoor_acc")):
    """Whether two runs have the same number of round records and the same values of ``keys``
    in each round (e.g. a run measured by one experiment and the same configuration stored by
    another); ``None`` when there is no ``other``."""
    if other is None:
        return None
    keys = tuple(keys)
    return (all(a.get(k) == b.get(k) for a, b in zip(doc["rounds"], other["rounds"]) for k in keys)
            and len(doc["rounds"]) == len(other["rounds"]))


def tail_jitter(frame, value: str = "main_acc", last: int = 10) -> float:
    """Round-to-round variation at the end of runs: the standard deviation of ``value`` over the
    last ``last`` evaluated rounds of each run of a :func:`rounds_frame`, averaged over the runs
    (NaN where no run has two evaluated rounds)."""
    f = frame.dropna(subset=[value]).sort_values("round", kind="stable")
    return float(f.groupby("run")[value].apply(lambda s: s.tail(last).std()).mean())
