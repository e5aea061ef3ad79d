"""The stored document of each configuration a notebook reads: :func:`load_runs` reuses the stored
runs and computes and stores the missing ones (through :mod:`flcore.storage.runs`), with a
progress line per computed run; :func:`stored_runs` only reads, computing nothing. The analysis
(:mod:`flcore.analysis`) takes the documents.
"""
from __future__ import annotations

from typing import Iterable


def run_label(cfg) -> str:
    """A short name of a run for progress lines: dataset, aggregator, client defense, attack,
    schedule, seed and hash."""
    return (f"{cfg.dataset}/{cfg.aggregator}/{cfg.client_defense}/{cfg.attack}, {cfg.schedule} schedule, "
            f"seed {cfg.seed} ({cfg.hash})")


def load_runs(cfgs: Iterable, progress: bool = True, log=print) -> list[dict]:
    """The stored document of every configuration (through :func:`flcore.storage.runs.run`: stored
    runs are reused, missing ones computed and stored).

    Each computed run prints a line on stderr as it starts and as it finishes (with its wall
    time), so that a terminal (``papermill --log-output`` included) shows progress per run;
    ``progress`` also shows the rounds of the run in progress."""
    import sys
    import time

    from flcore.storage import runs

    cfgs = list(cfgs)
    missing = {c.hash for c in cfgs if not runs.is_stored(c)}
    if missing and log:
        log(f"{len(cfgs) - len(missing)} of {len(cfgs)} runs stored; computing {len(missing)} now")
    docs, done, total = [], 0, len(missing)
    for cfg in cfgs:
        if cfg.hash not in missing:
            docs.append(runs.run(cfg, progress=False)[1])
            continue
        missing.discard(cfg.hash)  # a configuration listed twice is computed once
        done += 1
        print(f"run {done}/{total} started: {run_label(cfg)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        _, doc = runs.run(cfg, progress=progress)
        status = doc.get("status", "completed")
        print(f"run {done}/{total} {status} in {time.perf_counter() - t0:.0f} s: {run_label(cfg)}", file=sys.stderr,
              flush=True)
        docs.append(doc)
    diverged = [d for d in docs if d.get("status") == "diverged"]
    if diverged and log:
        log(f"note: {len(diverged)} run(s) diverged (non-finite model): " + ", ".join(
            f"{d['hash']} ({d['config'].get('aggregator')}/{d['config'].get('client_defense')}, round "
            f"{d['summary'].get('diverged_round')})" for d in diverged))
    return docs


def stored_runs(cfgs: Iterable) -> list[dict]:
    """The stored documents of those configurations that have one; nothing is computed."""
    return stored_labelled((c, None) for c in cfgs)[1]


def stored_labelled(labelled: Iterable) -> tuple[list, list[dict]]:
    """Of ``(cfg, overrides)`` pairs (:func:`flcore.analysis.params.expand_labelled`), those whose
    run is stored, and their documents, in the same order; nothing is computed."""
    from flcore.storage import store

    pairs, docs = [], []
    for cfg, over in labelled:
        doc = store.find(cfg)[1]
        if doc is not None:
            pairs.append((cfg, over))
            docs.append(doc)
    return pairs, docs
