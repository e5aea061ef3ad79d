"""Run a configuration or reuse its stored result: the one entry point for the CLI, sweeps and notebooks."""
from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

from flcore.storage import store
from flcore.core.config import Config
from flcore.sim.engine import simulate, simulate_pack
from flcore.core.errors import ConfigError

DEVICES = "auto, cpu, cuda, cuda:<index>"


def check_device(device) -> str | None:
    """``device`` if it names a device of this machine (None and ``auto`` included); else :class:`ConfigError`
    naming the valid choices."""
    from flcore.sim.engine import precision

    precision()  # a bad $FLCORE_PRECISION is an error before anything runs
    if device is None:
        return device
    text = str(device)
    if text in ("auto", "cpu"):
        return device
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise ConfigError(f"device {text!r} is not valid; valid choices: {DEVICES}")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"device {text!r}: this machine has no CUDA GPU (torch {torch.__version__} sees none); "
                          f"valid choices here: auto, cpu")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise ConfigError(f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s); "
                          f"valid choices: cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return device


def record(cfg: Config, result: dict) -> dict:
    """The stored document of a finished simulation."""
    return {"config": cfg.to_dict(), "hash": cfg.hash, "status": result["status"], "rounds": result["rounds"],
            "summary": result["summary"], "provenance": store.provenance(result, cfg)}


def run(cfg: Config, force: bool = False, device=None, progress: bool = True,
        lock: bool = True) -> tuple[Path, dict]:
    """Return the stored run of ``cfg``, computing (and storing) it if absent, invalid or ``force``.

    ``lock``: hold the run's :class:`flcore.storage.store.RunLock` from the check of the store to the write,
    so that two processes asking for the same run compute it once: the second waits, then finds it
    stored (``force`` recomputes anyway). A sweep's worker passes False: its driver holds the lock.
    """
    check_device(device)
    path = store.path_for(cfg)  # where a new result is written
    if not force:
        stored_at, doc = store.find(cfg)  # also under another experiment: the same run
        if doc is not None:
            return stored_at, doc
    if not lock:
        return path, _compute(cfg, path, device, progress)
    run_lock = store.RunLock(cfg)
    if not run_lock.acquire():
        print(f"waiting: another process computes run {cfg.hash} (lock {run_lock.path})", file=sys.stderr,
              flush=True)
        run_lock.acquire(blocking=True)
    stored = False
    try:
        if not force:  # stored meanwhile by the process that held the lock (a bad file was reported above)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stored_at, doc = store.find(cfg)
            if doc is not None:
                stored = True
                return stored_at, doc
        doc = _compute(cfg, path, device, progress)
        stored = True
        return path, doc
    finally:
        run_lock.release(remove=stored)


def _compute(cfg: Config, path: Path, device, progress: bool) -> dict:
    store.loaded_commit()  # the commit of the code that computes, read before it does
    doc = record(cfg, simulate(cfg, device=device, progress=progress))
    store.write(path, doc)
    return store.read(path)


def compute_pack(cfgs: list[Config], device=None, progress: bool = False) -> list[Path]:
    """Compute ``cfgs`` in one simulation (:func:`flcore.sim.engine.simulate_pack`, batched rows) and
    store each run under its own hash; return the paths. No locking: a sweep's driver holds
    the runs' locks."""
    check_device(device)
    store.loaded_commit()
    paths = []
    for cfg, result in zip(cfgs, simulate_pack(cfgs, device=device, progress=progress)):
        path = store.path_for(cfg)
        store.write(path, record(cfg, result))
        paths.append(path)
    return paths


def is_stored(cfg: Config) -> bool:
    return store.find(cfg)[1] is not None
