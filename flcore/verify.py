"""Recompute the first rounds of a stored run and compare every per-round metric.

``python -m flcore verify results/<experiment>/<hash>.json [--rounds K]`` exits
0 when the recomputed rounds equal the stored ones, 1 with a diff otherwise.
This is how a reader checks that a stored result was produced by the current
code. The recomputation uses the stored run's thread count (floating-point
reductions may depend on it) and the CPU unless told otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from flcore import config, store
from flcore.engine import simulate

COMPARED = ("selected", "malicious", "fake_clients", "main_acc", "backdoor_acc", "backdoor_nontarget_acc",
            "agg_weights", "lr")


def verify(path: str | Path, rounds: int | None = None, device: str = "cpu") -> tuple[bool, str]:
    doc = store.read(Path(path))
    cfg = config.from_dict(doc["config"])
    if cfg.hash != doc.get("hash", cfg.hash):
        return False, f"{path}: the stored configuration hashes to {cfg.hash}, not {doc['hash']}"
    k = len(doc["rounds"]) if rounds is None else min(rounds, len(doc["rounds"]))
    threads = doc["provenance"].get("threads")
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        new = simulate(cfg, device=device, progress=True, rounds=k)["rounds"]
    finally:
        torch.set_num_threads(old_threads)
    diffs = []
    for i, (old_rec, new_rec) in enumerate(zip(doc["rounds"][:k], new)):
        # a recomputation cut short evaluates its last round, which the full run may not have
        extra_eval = i == k - 1 and k < len(doc["rounds"])
        for key in COMPARED:
            if extra_eval and key.endswith("_acc") and old_rec.get(key) is None:
                continue
            if old_rec.get(key) != new_rec.get(key):
                diffs.append({"round": old_rec["round"], "metric": key, "stored": old_rec.get(key),
                              "recomputed": new_rec.get(key)})
    if len(new) != k:
        diffs.append({"rounds": "count", "stored": k, "recomputed": len(new)})
    if diffs:
        return False, json.dumps({"verified": False, "path": str(path), "rounds": k, "diff": diffs}, indent=1)
    return True, json.dumps({"verified": True, "path": str(path), "rounds": k,
                             "metrics": [m for m in COMPARED if any(m in r for r in new)]})
