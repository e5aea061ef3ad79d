"""The results store: ``results/<experiment>/<hash>.json``, one file per run.

A stored run holds ``config`` (the resolved configuration), ``rounds`` (one
record per round), ``summary``, ``provenance`` and ``checksum`` (sha256 of the
canonical JSON of everything else). Files are written atomically (a temporary
file in the same folder, fsync, then ``os.replace``), so a reader sees either
the old file or the new one, never a partial one. A file whose checksum or
schema does not hold is reported and ignored (and recomputed by ``run``).

What :func:`read` checks before a stored run is used (:class:`StoreError` otherwise):

- the file is JSON with every field of :data:`REQUIRED`, and its checksum holds;
- the schema: ``config``, ``summary`` and ``provenance`` are mappings, ``rounds``
  a non-empty list of records numbered 0, 1, 2 ... each with :data:`ROUND_KEYS`,
  the status ``completed`` (then one record per configured round) or ``diverged``;
- ``config`` is a valid configuration of the current code, and the file is named by
  its hash (``<hash>.json``; a Hessian comparison ``hessian-<key>.json``, its key
  recomputed), as is the stored ``hash``: a run copied under another run's name is
  not that run;
- ``summary`` holds what :func:`flcore.sim.engine.summarise` makes of the rounds (extra
  keys, such as an analysis's results, are allowed).

Temporary files are named ``.<name>.<pid>.<random>.tmp``. One left behind by a
killed writer is removed by the next write to its folder (and by a reader of the
run) once it is stale: older than :data:`TMP_GRACE_S` and its writer process gone,
or older than :data:`TMP_STALE_S` in any case.

Sharing. A run is identified by its configuration hash alone: :func:`locate` finds a run
stored under another experiment's folder, so an identical configuration is computed once.

Locks. :class:`RunLock` is the per-run lock ``.locks/.<hash>.lock`` of the store,
taken by :func:`flcore.storage.runs.run` and by sweeps around "check stored -> compute ->
write", so a run is computed once however many processes ask for it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from flcore.core import config as config_mod
from flcore.core.config import Config
from flcore.core.constants import ROOT
from flcore.core.errors import ConfigError, StoreError

RESULTS = ROOT / "results"  # the committed store; $FLCORE_RESULTS names another
REQUIRED = ("config", "rounds", "summary", "provenance", "checksum")
ROUND_KEYS = ("round", "main_acc", "backdoor_acc", "selected", "malicious")
STATUSES = ("completed", "diverged")
TMP_GRACE_S = 60.0  # a temporary file younger than this may belong to a writer on another machine
TMP_STALE_S = 600.0  # writing a result takes milliseconds: a temporary file this old is left over


def results_dir() -> Path:
    """The store's root: ``$FLCORE_RESULTS`` if set, else ``results/`` of the repository."""
    value = os.environ.get("FLCORE_RESULTS")
    if value is None:
        return RESULTS
    if not value.strip():
        raise StoreError(f"FLCORE_RESULTS is set but empty; set it to the store's folder or unset it "
                         f"(default: {RESULTS})")
    return Path(value)


def path_for(cfg: Config) -> Path:
    if not config_mod.EXPERIMENT_NAME.fullmatch(cfg.experiment):  # never a path outside the store
        raise ConfigError(f"experiment must name a folder of the store (letters, digits, _ . -), "
                          f"got {cfg.experiment!r}")
    return results_dir() / cfg.experiment / f"{cfg.hash}.json"


def find(cfg: Config) -> tuple[Path, dict | None]:
    """``cfg``'s stored run as (path, valid document or None): its own experiment's file
    (:func:`path_for`) if there, else the same configuration stored under another experiment (a
    run is its configuration hash: the experiment name is not part of it), a plain run before an
    analysis document that also holds the run (an attack-effect measurement, ``kind`` set: the
    same configuration recomputed, which matches the plain run only under the same CPU kernels),
    else (:func:`path_for`, None)."""
    own = path_for(cfg)
    if own.exists():
        return own, load_valid(own)
    derived = None  # an analysis document that is also a run of cfg (an attack-effect measurement)
    for other in sorted(results_dir().glob(f"*/{cfg.hash}.json")):
        doc = load_valid(other)
        if doc is not None and "kind" not in doc:
            return other, doc
        if doc is not None and derived is None:
            derived = other, doc
    if derived is not None:
        return derived
    return own, load_valid(own)  # None; cleans the run's stale temporary files as every read does


def locate(cfg: Config) -> Path:
    """The path of :func:`find`."""
    return find(cfg)[0]


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def checksum(doc: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in doc.items() if k != "checksum"})).hexdigest()


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale_tmp(folder: Path, stem: str | None = None, now: float | None = None) -> list[Path]:
    """Remove the stale temporary files (see the module docstring) of ``folder`` (only those of
    ``<stem>.json`` if given); return the removed paths. Errors (a read-only store) are ignored."""
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = list(Path(folder).glob(f".{stem}.*.tmp" if stem else ".*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        parts = tmp.name[1:-len(".tmp")].split(".")  # <name>.<pid>.<random>
        try:
            age = now - tmp.stat().st_mtime
        except OSError:
            continue
        pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
        gone = pid is None or not _pid_running(pid)
        if age > TMP_STALE_S or (age > TMP_GRACE_S and gone):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def write(path: Path, doc: dict) -> Path:
    doc = dict(doc)
    doc["checksum"] = checksum(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{path}: no such stored result") from None
    except IsADirectoryError:
        raise StoreError(f"{path} is a folder; name one stored result in it, "
                         f"e.g. {path / '<hash>.json'}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: not valid JSON (truncated or corrupted): {e}") from None
    except OSError as e:
        raise StoreError(f"{path}: cannot be read: {e.strerror}") from None
    if not isinstance(doc, dict) or any(k not in doc for k in REQUIRED):
        raise StoreError(f"{path}: missing fields; a stored run needs {', '.join(REQUIRED)}")
    if doc["checksum"] != checksum(doc):
        raise StoreError(f"{path}: checksum mismatch (the file was altered or corrupted)")
    check_schema(doc, path)
    return doc


def _same(a, b) -> bool:
    """Equal, floats up to rounding (a summary recomputed by another numpy may differ in the last bit)."""
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


#: Documents derived from a run rather than a run themselves: their ``kind``, the prefix of their
#: file name and the field holding the options the key covers (:func:`derived_key`).
DERIVED_KINDS = {"hessian_diagonal": ("hessian", "hessian_options")}


def derived_key(cfg: Config, prefix: str, options: dict) -> str:
    """The 16-hex key of a document derived from run ``cfg`` with ``options`` (e.g. the Hessian
    comparison of :mod:`flcore.experiments.attack_effect`): a hash of both, like a run's."""
    blob = json.dumps({"run": cfg.identity(), prefix: options}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def expected_name(doc: dict, cfg: Config) -> str:
    """The file name (without ``.json``) a stored document must have: its configuration's hash, or
    for a derived document (:data:`DERIVED_KINDS`), ``<prefix>-<derived key>``."""
    if doc.get("kind") in DERIVED_KINDS:
        prefix, field = DERIVED_KINDS[doc["kind"]]
        return f"{prefix}-{derived_key(cfg, prefix, doc.get(field) or {})}"
    return cfg.hash


def check_schema(doc: dict, path: Path) -> None:
    """The checks of the module docstring after the checksum; :class:`StoreError` naming the first failure."""
    from flcore.sim.engine import summarise

    for key, kind in (("config", dict), ("summary", dict), ("provenance", dict), ("rounds", list)):
        if not isinstance(doc[key], kind):
            raise StoreError(f"{path}: '{key}' must be a {'list' if kind is list else 'mapping'}, "
                             f"got {type(doc[key]).__name__}")
    rounds = doc["rounds"]
    if not rounds:
        raise StoreError(f"{path}: 'rounds' is empty; a stored run has at least one round record")
    for i, rec in enumerate(rounds):
        if not isinstance(rec, dict) or any(k not in rec for k in ROUND_KEYS):
            raise StoreError(f"{path}: a round record lacks one of {', '.join(ROUND_KEYS)}")
        if rec["round"] != i or isinstance(rec["round"], bool):
            raise StoreError(f"{path}: round record {i} is numbered {rec['round']!r}; records are rounds 0, 1, 2 ...")
        if not isinstance(rec["selected"], list) or not isinstance(rec["malicious"], list):
            raise StoreError(f"{path}: round {i}: 'selected' and 'malicious' must be lists of client ids")
        for key in ("main_acc", "backdoor_acc"):
            v = rec[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise StoreError(f"{path}: round {i}: {key} must be a number or null, got {v!r}")
    status = doc.get("status", doc["summary"].get("status"))
    if status not in STATUSES:
        raise StoreError(f"{path}: status {status!r} is not one of {', '.join(STATUSES)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = config_mod.from_dict(doc["config"], check_unused_options=False)
    except ConfigError as e:
        raise StoreError(f"{path}: the stored configuration is not valid for the current code: {e}") from None
    if status == "completed" and len(rounds) != cfg.rounds:
        raise StoreError(f"{path}: a completed run of {cfg.rounds} rounds with {len(rounds)} round records")
    if len(rounds) > cfg.rounds:
        raise StoreError(f"{path}: {len(rounds)} round records for a run of {cfg.rounds} rounds")
    if doc.get("hash", cfg.hash) != cfg.hash:
        raise StoreError(f"{path}: the stored configuration hashes to {cfg.hash}, not to its stored hash "
                         f"{doc['hash']}")
    name = expected_name(doc, cfg)
    if path.name != f"{name}.json":
        raise StoreError(f"{path}: the file name does not match its configuration, whose result is "
                         f"{name}.json (a run copied or renamed under another run's name)")
    expected = summarise(rounds, status)
    for key, value in expected.items():
        if not _same(doc["summary"].get(key), value):
            raise StoreError(f"{path}: summary.{key} is {doc['summary'].get(key)!r}, but the round records "
                             f"give {value!r} (the summary does not match the rounds)")


def load_valid(path: Path) -> dict | None:
    """The stored run at ``path`` if it exists and is valid; None otherwise (with a warning if corrupted)."""
    path = Path(path)
    clean_stale_tmp(path.parent, path.stem)
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
    for folder in sorted(base.glob(experiment or "*")):
        if folder.is_dir():
            clean_stale_tmp(folder)
    for p in sorted(base.glob(pattern)):
        doc = load_valid(p)
        if doc is not None:
            yield p, doc


# ----------------------------------------------------------------------------- locks


class RunLock:
    """Exclusive flock on ``results/.locks/.<hash>.lock``: one process computes a run at a time
    (whichever experiment asks for it: the lock, like the run, is keyed by the configuration hash)."""

    def __init__(self, cfg: Config):
        path_for(cfg)  # the experiment name is checked
        self.path = results_dir() / ".locks" / f".{cfg.hash}.lock"
        self.fd: int | None = None

    def acquire(self, blocking: bool = False) -> bool:
        """Take the lock; without ``blocking``, return False at once if another process holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:  # Ctrl-C while waiting
                os.close(fd)
                raise
            try:  # the file may have been removed by its previous holder: lock the current one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return True
            os.close(fd)

    def release(self, remove: bool = False) -> None:
        if self.fd is None:
            return
        if remove:  # only once the run is stored: a later holder of a stale inode finds it stored
            self.path.unlink(missing_ok=True)
        os.close(self.fd)  # closing releases the flock
        self.fd = None


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


@functools.cache
def loaded_commit() -> str:
    """The commit of the code this process runs: read once, when the process first asks (a run
    asks before it computes), not when a run ends, so a long run records the code it ran even if
    the tree changes meanwhile. A copy of the tree without its ``.git`` (a compute node's copy)
    names its commit in ``$FLCORE_GIT_COMMIT``."""
    return os.environ.get("FLCORE_GIT_COMMIT") or git_commit()


def cpu_capability() -> str:
    """The vector instruction set the CPU kernels dispatch to, as ``ATEN/oneDNN``: torch's
    own (``AVX512``, ``AVX2``, ...) and the cap set on oneDNN through ``ONEDNN_MAX_CPU_ISA``
    (``default``: the best the CPU has). Convolutions round differently under AVX-512 and
    AVX2, so a CPU run reproduces bit for bit only under the same capability."""
    import torch

    return f"{torch.backends.cpu.get_cpu_capability()}/{os.environ.get('ONEDNN_MAX_CPU_ISA', 'default')}"


def provenance(result: dict, cfg: Config) -> dict:
    import numpy
    import torch

    from flcore.sim.engine import ENGINE_NUMERICS, precision

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
        "git_commit": loaded_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": result["device"],
        "cpu": cpu,
        **({"gpu": torch.cuda.get_device_name(result["device"]), "precision": precision()}
           if str(result["device"]).startswith("cuda") else {}),
        "engine_numerics": ENGINE_NUMERICS,
        "threads": torch.get_num_threads(),
        **({"cpu_capability": cpu_capability()} if str(result["device"]).startswith("cpu") else {}),
        "data_source": data.source,
        "data_label": data.label,
        "data_files": data.files,
        "seed": cfg.seed,
        "wall_s": round(result["wall_s"], 3),
        **({"pack": result["pack"], "executor": result.get("executor", "batched")} if result.get("pack", 1) > 1 else {}),
        "dims": result["d"],
    }
