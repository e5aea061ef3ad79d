"""The results store: ``results/<experiment>/<hash>.json``, one file per run.

A stored run holds ``config`` (the resolved configuration), ``rounds`` (one
record per round), ``summary``, ``provenance`` and ``checksum`` (sha256 of the
canonical JSON of everything else). Files are written atomically (a temporary
file in the same folder, fsync, then ``os.replace``), so a reader sees either
the old file or the new one, never a partial one. A file whose checksum or
schema does not hold is reported and ignored (and recomputed by ``run``).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from flcore.config import Config
from flcore.errors import StoreError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("FLCORE_RESULTS", ROOT / "results"))
REQUIRED = ("config", "rounds", "summary", "provenance", "checksum")
ROUND_KEYS = ("round", "main_acc", "backdoor_acc", "selected", "malicious")


def results_dir() -> Path:
    return Path(os.environ.get("FLCORE_RESULTS", RESULTS))


def path_for(cfg: Config) -> Path:
    return results_dir() / cfg.experiment / f"{cfg.hash}.json"


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def checksum(doc: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in doc.items() if k != "checksum"})).hexdigest()


def write(path: Path, doc: dict) -> Path:
    doc = dict(doc)
    doc["checksum"] = checksum(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: Path) -> dict:
    """Load and validate a stored run; raise :class:`StoreError` if it cannot be trusted."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise StoreError(f"{path}: no such stored result") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: not valid JSON (truncated or corrupted): {e}") from None
    if not isinstance(doc, dict) or any(k not in doc for k in REQUIRED):
        raise StoreError(f"{path}: missing fields; a stored run needs {', '.join(REQUIRED)}")
    if doc["checksum"] != checksum(doc):
        raise StoreError(f"{path}: checksum mismatch (the file was altered or corrupted)")
    for rec in doc["rounds"]:
        if any(k not in rec for k in ROUND_KEYS):
            raise StoreError(f"{path}: a round record lacks one of {', '.join(ROUND_KEYS)}")
    return doc


def load_valid(path: Path) -> dict | None:
    """The stored run at ``path`` if it exists and is valid; None otherwise (with a warning if corrupted)."""
    if not path.exists():
        return None
    try:
        return read(path)
    except StoreError as e:
        warnings.warn(f"ignoring stored result: {e}; it will be recomputed", stacklevel=2)
        return None


def iter_runs(experiment: str | None = None):
    """Every valid stored run (optionally of one experiment), as (path, doc)."""
    base = results_dir()
    pattern = f"{experiment}/*.json" if experiment else "*/*.json"
    for p in sorted(base.glob(pattern)):
        doc = load_valid(p)
        if doc is not None:
            yield p, doc


# ----------------------------------------------------------------------------- provenance


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "flcore"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (commit or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


#: The commit of the code this process loaded: read when flcore is imported, not when a run
#: ends, so a long run records the code it ran even if the tree changes meanwhile. A copy of
#: the tree without its ``.git`` (a compute node's copy) names its commit in ``$FLCORE_GIT_COMMIT``.
LOADED_COMMIT = os.environ.get("FLCORE_GIT_COMMIT") or git_commit()


def provenance(result: dict, cfg: Config) -> dict:
    import numpy
    import torch

    data = result["data"]
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "git_commit": LOADED_COMMIT,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": result["device"],
        "cpu": cpu,
        **({"gpu": torch.cuda.get_device_name()} if str(result["device"]).startswith("cuda") else {}),
        "threads": torch.get_num_threads(),
        "data_source": data.source,
        "data_label": data.label,
        "data_files": data.files,
        "seed": cfg.seed,
        "wall_s": round(result["wall_s"], 3),
        "dims": result["d"],
    }
