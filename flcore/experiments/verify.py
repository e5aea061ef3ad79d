"""Recompute the first rounds of a stored run and compare every per-round metric.

``python -m flcore verify results/<experiment>/<hash>.json [--rounds K] [--device D] [--tolerance T]``
exits 0 when the recomputed rounds equal the stored ones, 1 with a diff
otherwise, 2 (one message) when it cannot compare: the file is not a valid
stored run (see :func:`flcore.storage.store.read`: checksum, schema, file name = hash of
the configuration, summary = the rounds' summary), ``K`` is below 1, or the run
was stored on another kind of device and no tolerance is given.

This is how a reader checks that a stored result was produced by the current
code. The recomputation uses the stored run's thread count (floating-point
reductions may depend on it) and, by default, the stored run's kind of device.

Before computing, the stored provenance is compared with this machine's:

- the kind of device (``cpu``/``cuda``): a run stored on CUDA is not reproduced
  to the last bit on a CPU (nor the reverse). Without ``--tolerance`` verify
  stops and says where to recompute it; with it, it compares on the device asked for;
- the torch version and :data:`flcore.sim.engine.ENGINE_NUMERICS` (runs that do not
  record it are version 1): a difference is reported in the output
  (``environment``), since exact equality is then not expected;
- a run computed in a pack with other runs (``pack`` in its provenance, by
  ``flcore sweep --pack``) is recomputed alone with batched rows: its clients share
  steps with other groups than in the pack, so it agrees to float rounding, and the
  output says so (``environment.pack``).

``--tolerance T`` accepts accuracies (``main_acc``, ``backdoor_acc``,
``backdoor_nontarget_acc``) that differ by at most ``T`` (absolute); every other
metric (selection, learning rate, aggregation weights, fake clients) must still
be equal. The output always reports the largest accuracy deviation
(``max_deviation``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from flcore.core import config
from flcore.storage import store
from flcore.sim.engine import ENGINE_NUMERICS, precision, simulate
from flcore.core.errors import ConfigError, UserError
from flcore.storage.runs import check_device

COMPARED = ("selected", "malicious", "fake_clients", "main_acc", "backdoor_acc", "backdoor_nontarget_acc",
            "agg_weights", "lr")
ACCURACIES = ("main_acc", "backdoor_acc", "backdoor_nontarget_acc")


def _kind(device) -> str:
    return str(device).split(":")[0]


def environment(prov: dict) -> dict:
    """What differs between the stored run's provenance and this process: {field: {stored, current}}."""
    out = {}
    current = {"torch": torch.__version__, "engine_numerics": ENGINE_NUMERICS}
    stored = {"torch": prov.get("torch"), "engine_numerics": prov.get("engine_numerics", 1)}
    if str(prov.get("device", "")).startswith("cpu"):
        current["cpu_capability"] = store.cpu_capability()
        stored["cpu_capability"] = prov.get("cpu_capability", "not recorded")
    else:  # CUDA: runs before the field used torch's default, TF32 convolutions where the GPU has them
        current["precision"] = precision()
        stored["precision"] = prov.get("precision", "not recorded (torch default: TF32 convolutions)")
    for key, value in current.items():
        if stored[key] != value:
            out[key] = {"stored": stored[key], "current": value}
    if prov.get("pack", 1) > 1:  # computed with other runs as batched rows; recomputed alone
        out["pack"] = {"stored": prov["pack"], "current": 1}
    return out


#: How to recompute under the AVX2 kernels: the capability of the CPU runs stored before
#: ``cpu_capability`` was recorded (they reproduce exactly with it on an AVX-512 machine).
AVX2_RECIPE = "ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 flcore verify ..."


def verify(path: str | Path, rounds: int | None = None, device: str | None = None,
           tolerance: float | None = None) -> tuple[bool, str]:
    """Recompute ``rounds`` rounds (default: all) of the stored run at ``path``; (verified, JSON report).

    ``device``: default the kind of device the run was stored from. Raises :class:`UserError`
    (exit code 2) when the comparison cannot be made (see the module docstring)."""
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
        raise ConfigError(f"--rounds must be a positive number of rounds to recompute (or omitted: all), "
                          f"got {rounds!r}")
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance)
                                      and tolerance >= 0):
        raise ConfigError(f"--tolerance must be a number >= 0 (absolute, on accuracies), got {tolerance!r}")
    doc = store.read(Path(path))
    cfg = config.from_dict(doc["config"], check_unused_options=False)
    prov = doc["provenance"]
    n = len(doc["rounds"])
    k = n if rounds is None else min(rounds, n)
    if k < 1:  # store.read refuses a run without round records; never report success on nothing
        raise UserError(f"{path}: no round records to compare")

    stored_device = str(prov.get("device", "cpu"))
    stored_where = stored_device
    if _kind(stored_device) == "cuda":
        stored_where += f" ({prov['gpu']})" if prov.get("gpu") else " (GPU not recorded)"
    if device is None and _kind(stored_device) == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{path}: stored on {stored_where}, and this machine has no CUDA GPU; recompute it on a "
                        f"machine with one (`--device cuda`) or compare on the CPU with "
                        f"`--device cpu --tolerance X` (absolute tolerance on accuracies, e.g. 0.02)")
    device = device or _kind(stored_device)
    check_device(device)
    here = _kind(device) if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if here != _kind(stored_device) and tolerance is None:
        raise UserError(f"{path}: stored on {stored_where}; recompute there (`--device {_kind(stored_device)}`) "
                        f"or compare on {here} with --tolerance X (absolute tolerance on accuracies, e.g. 0.02): "
                        f"numbers from two kinds of device differ at rounding level")

    threads = prov.get("threads")
    old_threads = torch.get_num_threads()
    if isinstance(threads, int) and threads > 0:
        torch.set_num_threads(threads)
    try:
        executor = "batched" if prov.get("pack", 1) > 1 else "loop"
        new = simulate(cfg, device=device, progress=True, rounds=k, executor=executor)["rounds"]
    finally:
        torch.set_num_threads(old_threads)

    tol = 0.0 if tolerance is None else float(tolerance)
    diffs, max_dev = [], 0.0
    for i, (old_rec, new_rec) in enumerate(zip(doc["rounds"][:k], new)):
        # a recomputation cut short evaluates its last round, which the full run may not have
        extra_eval = i == k - 1 and k < n
        for key in COMPARED:
            old, now = old_rec.get(key), new_rec.get(key)
            if extra_eval and key in ACCURACIES and old is None:
                continue
            if key in ACCURACIES and isinstance(old, (int, float)) and isinstance(now, (int, float)):
                dev = abs(old - now)
                max_dev = max(max_dev, dev)
                if dev <= tol:
                    continue
            elif old == now:
                continue
            diffs.append({"round": old_rec["round"], "metric": key, "stored": old, "recomputed": now})
    if len(new) != k:
        diffs.append({"rounds": "count", "stored": k, "recomputed": len(new)})
    report = {"verified": not diffs, "path": str(path), "rounds": k, "device": str(device),
              "stored_device": stored_device, "tolerance": tolerance, "max_deviation": max_dev}
    env = environment(prov)
    if env:
        report["environment"] = env
        if diffs:
            report["note"] = ("the stored run comes from another " + " and ".join(env) + " than this one; "
                              "exact equality is not expected: compare with --tolerance X")
            if "cpu_capability" in env:
                report["note"] += (f"; for a CPU run stored with AVX2 kernels (or with the capability not "
                                   f"recorded) recompute under them: {AVX2_RECIPE}")
    if diffs:
        report["diff"] = diffs
        return False, json.dumps(report, indent=1)
    report["metrics"] = [m for m in COMPARED if any(m in r for r in new)]
    return True, json.dumps(report)
