"""Sweeps: every run of an experiment grid, computed once, stored, resumable.

A sweep file (``params/<experiment>.yaml``, per profile
``params/<experiment>.<profile>.yaml``) holds::

    experiment: original_tables   # the store folder, results/<experiment>/
    profile: default              # smoke | default | paper
    description: one line on what it computes
    base: {dataset: fmnist, rounds: 80, eval: {test_samples: 2000}}
    cases:                        # optional list of overrides (dotted keys allowed); default [{}]
      - {dataset: fmnist, leadfl.alpha: 0.4}
      - {dataset: cifar10, leadfl.alpha: 0.25}
    grid:                         # cartesian product of these lists, applied on top of each case
      client_defense: [none, ldp, flwbc, leadfl]
      seed: [0, 1]

Other top-level keys (papermill parameters of the notebooks) are ignored here;
a file with configuration keys at the top level and no ``base`` (a run's
parameter file such as ``params/smoke.yaml``) is refused.
A run's configuration is ``base``, then the command line's ``--set k=v``
overrides, then the case, then one point of the grid (later wins; a mapping
value merges into the section it names). ``experiment`` and ``profile`` come
from the top level of the file (``base`` may repeat them with the same value;
without either, from the file name, profile ``default``). :func:`expand` validates
every configuration before anything runs and drops duplicates (same hash, e.g.
a grid over an option of a method that a case does not use).

:func:`sweep` skips the runs already stored and valid, prints (on stderr) how
many are missing and an estimated time, computes the rest with an overall
progress bar and returns the paths of every run of the grid.

Resuming. Each run is written atomically by :mod:`flcore.storage.store` when it
finishes, so Ctrl-C (or a kill) loses only the runs in progress and the next
sweep starts from the stored ones. On Ctrl-C the driver terminates its
workers (they ignore SIGINT and remove their temporary file on SIGTERM) and
raises ``KeyboardInterrupt`` (the CLI prints ``interrupted``, exit code 130).
Local workers also die with the driver if it is killed (Linux
``PR_SET_PDEATHSIG``), so a killed sweep leaves no process computing.

Concurrency. The driver takes an exclusive ``fcntl.flock`` on
``results/.locks/.<hash>.lock`` around "check stored -> compute ->
write" of each run. A second sweep over the same store skips a locked run,
goes on with the others and comes back to it later; once the lock is free it
finds the run stored and reuses it, so two sweeps share the work, compute each
run once and corrupt nothing. The OS releases the lock of a killed process;
the lock file is removed after the run is stored (a leftover empty lock file is
harmless: the store reads ``*.json`` only). The lock is :class:`flcore.storage.store.RunLock`,
the one :func:`flcore.storage.runs.run` takes too (``flcore run`` waits for it), so a
sweep and single runs of the same configuration also compute it once.

Executors.

``local`` (default): ``workers`` processes (``spawn``), each with
``torch.set_num_threads(max(1, cores // workers))``; a worker computes and
writes its run with :func:`flcore.storage.runs.run`.

``ray``: ``ray.init(address=address)``; an instance this process already
started is used as it is. An instance the sweep starts is shut down when the
sweep ends, on Ctrl-C, on SIGTERM (a signal handler) and at interpreter exit
(``atexit``), so no Ray process outlives a killed driver (except after SIGKILL). No address starts a new local instance
(``address="local"``, so never a cluster found through ``RAY_ADDRESS``) limited
to ``workers`` CPUs (dashboard off, worker logs not forwarded), whose workers
find the code through ``PYTHONPATH`` (set to the repository root in the runtime
environment, with the ``FLCORE_*`` data variables of the driver). Ray starts
its workers at niceness 15, which on a machine shared with other work starves
them (a test sweep stalled for minutes); the runtime environment sets
``RAY_worker_niceness=0``.
With an address (a cluster), the repository is shipped as the runtime
environment's ``working_dir`` (without ``.venv``, ``results``, ``.git``,
built book); each node needs the Python packages and the datasets (e.g.
``FLCORE_DATA`` set on the nodes). Each run is a Ray task (one CPU) that returns
the result document (:func:`flcore.storage.runs.record`) and the driver writes it to
the store, so the workers need neither the results directory nor a shared
filesystem. At most ``workers`` tasks are in flight (default: the cluster's
CPUs), so the locks held are those of runs being computed. Tasks ask for one CPU
and no GPU, so Ray runs them on CPU.

Default number of workers, measured 2026-11-23 on this project's machine
(2-core CPU, AMD EPYC, shared: load average 7-10 from other jobs during the
measurement), Fashion-MNIST ``params/smoke.yaml`` with ``rounds=2`` (paper
schedule, Multi-Krum, LeadFL, 10 clients per round, 1000 test images), 4 runs
(``seed`` 0..3), local executor, wall time of the whole sweep including process
start and data loading:

    ========================  ======================================
    2 workers x 1 thread      91.4 s, 125.4 s (two repetitions)
    1 worker  x 2 threads     571.0 s (one; a second was stopped)
    ========================  ======================================

The same holds for a single run: ``simulate`` of 2 rounds (20 clients, 4 per
round) took 17.4 s on 1 thread and 175.3 s on 2 threads; a 2-run sweep of 2-round
runs with 1 worker took 37 s with 1 thread and 206 s with 2. The networks are
small, so intra-op parallelism gains little, and on a busy machine a second
thread waits at every operation for a core. Processes beat threads, so the
default is one single-threaded worker per core (:func:`default_workers`); with
fewer workers than cores each gets ``cores // workers`` threads, and
``threads=1`` is the better choice on a shared machine. On a CUDA machine the
default is one worker (the runs share the GPU). Each worker holds its own copy
of the dataset (Fashion-MNIST ~0.2 GB, CIFAR-10 ~0.7 GB as float32): pass
``workers`` lower on a machine with many cores and little memory.

Time estimate. Before computing, :func:`sweep` prints the estimate of
:mod:`flcore.experiments.estimate`: comparable stored runs (same cost, same kind of device, same
thread count), else costs measured here and now with the runs' thread count, as a
middle value and a range.
"""
from __future__ import annotations

import copy
import itertools
import os
import signal
import sys
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any

from flcore.core import config as config_mod
from flcore.experiments import estimate as est
from flcore.storage import store
from flcore.core.config import Config
from flcore.core.constants import PROFILES, ROOT
from flcore.core.errors import ConfigError


POLL_S = 0.5  # how often the driver wakes up (Ctrl-C, retrying a run locked by another sweep)
EXCLUDES = [".venv", ".git", "results", "_build", "notebooks/_executed", ".pytest_cache", ".hypothesis",
            "__pycache__"]
KNOWN_KEYS = ("experiment", "profile", "base", "cases", "grid")
_NAME = config_mod.EXPERIMENT_NAME


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """One single-threaded worker per core on CPU (measured, see above); one on a CUDA machine."""
    try:
        import torch

        if torch.cuda.is_available():
            return 1
    except ImportError:
        pass
    return cores()


# --------------------------------------------------------------------------- expansion


def _fmt(d: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"


def _merge(raw: dict, key: str, value: Any) -> None:
    """set_dotted, but a mapping merges into an existing section instead of replacing it."""
    if isinstance(value, dict):
        node = raw
        for p in key.split("."):
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) or node is None:
            if not value:
                config_mod.set_dotted(raw, key, {} if node is None else node)
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ConfigError(f"key {k!r} under {key!r} must be a string")
                _merge(raw, f"{key}.{k}", v)
            return
    config_mod.set_dotted(raw, key, copy.deepcopy(value))


def _parse_overrides(overrides) -> dict:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    if isinstance(overrides, str):
        overrides = [overrides]
    out = {}
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. leadfl.alpha=0.2)")
        key, text = item.split("=", 1)
        out[key.strip()] = config_mod._parse_scalar(text)
    return out


def read_spec(sweep_path_or_dict) -> tuple[dict, str]:
    """The sweep file as a dict (validated top level: base, cases, grid) and a label for messages."""
    defaults = {"profile": "default"}
    if isinstance(sweep_path_or_dict, dict):
        spec, label = copy.deepcopy(sweep_path_or_dict), "sweep"
    else:
        path = Path(sweep_path_or_dict)
        spec, label = config_mod.read_yaml(path), str(path)
        # params/<experiment>[.<profile>].yaml: the name gives the defaults
        parts = path.name.split(".")
        defaults["experiment"] = parts[0]
        if len(parts) == 3 and parts[1] in PROFILES:
            defaults["profile"] = parts[1]

    stray = sorted(k for k in spec if k in (config_mod.TOP_LEVEL | set(config_mod.SECTIONS)) - set(KNOWN_KEYS))
    if stray and "base" not in spec:
        raise ConfigError(f"{label}: not a sweep file: configuration keys ({', '.join(stray)}) at the top level "
                          f"and no 'base'; put them under 'base' (or run one configuration with "
                          f"python -m flcore run)")
    if "base" not in spec:
        raise ConfigError(f"{label}: a sweep file needs a 'base' configuration (the keys shared by its runs, "
                          f"e.g. base: {{dataset: fmnist, rounds: 80}}); without one every run would be the "
                          f"paper protocol's defaults")
    base = spec.get("base")
    if base is None:
        base = {}
    if not isinstance(base, dict):
        raise ConfigError(f"{label}: 'base' must be a mapping of configuration keys, got {base!r}")
    base = dict(base)
    for key in ("experiment", "profile"):  # top level, else base, else the file name
        if key in base:
            value = base.pop(key)
            if spec.get(key, value) != value:
                raise ConfigError(f"{label}: base.{key} ({value!r}) differs from the top-level {key} "
                                  f"({spec[key]!r}); set it once, at the top level")
            spec[key] = value
        if key in defaults:
            spec.setdefault(key, defaults[key])

    exp = spec.get("experiment")
    if not isinstance(exp, str) or not _NAME.fullmatch(exp):
        raise ConfigError(f"{label}: 'experiment' must name the store folder (letters, digits, _ . -), got {exp!r}")

    cases = spec.get("cases")
    if cases is None:
        cases = [{}]
    if not isinstance(cases, list) or not cases:
        raise ConfigError(f"{label}: 'cases' must be a non-empty list of mappings (overrides), got {cases!r}")
    for i, case in enumerate(cases, 1):
        if case is None:
            cases[i - 1] = case = {}
        if not isinstance(case, dict):
            raise ConfigError(f"{label}: case {i} must be a mapping of overrides (e.g. {{dataset: fmnist}}), "
                              f"got {case!r}")
        for key in case:
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{label}: case {i}: key {key!r} must be a non-empty string")
            if key in ("experiment", "profile"):
                raise ConfigError(f"{label}: case {i}: {key!r} is set at the top level of the sweep file")

    grid = spec.get("grid")
    if grid is None:
        grid = {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{label}: 'grid' must be a mapping of keys to lists of values, got {grid!r}")
    for key, values in grid.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{label}: grid key {key!r} must be a non-empty string")
        if key in ("experiment", "profile"):
            raise ConfigError(f"{label}: grid.{key}: {key!r} is set at the top level of the sweep file")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{label}: grid.{key} must be a non-empty list of values "
                              f"(e.g. {key}: [{values!r}]), got {values!r}")
    spec.update(base=base, cases=cases, grid=grid)
    return spec, label


def apply_overrides(spec: dict, overrides, label: str = "sweep") -> tuple[dict, list[str]]:
    """A copy of the (read) sweep ``spec`` with ``overrides`` (``["key=value", ...]`` or a dict of
    dotted keys) set in its base. The override wins everywhere: a key that the grid varies has
    its axis replaced by the one value, and a key that cases set is replaced in those cases,
    each with a note saying what was replaced (:func:`expand` warns them once the runs are valid,
    so an override is never silently overridden by the grid). Returns ``(spec, notes)``.
    ``experiment`` and ``profile`` come from the sweep file and cannot be overridden."""
    items = _parse_overrides(overrides)
    notes: list[str] = []
    if not items:
        return spec, notes
    spec = copy.deepcopy(spec)
    base: dict = {}
    for k, v in spec["base"].items():
        _merge(base, k, v)
    for key, value in items.items():
        if key in ("experiment", "profile"):
            raise ConfigError(f"{label}: {key!r} cannot be overridden; it comes from the sweep file "
                              f"(use the file of the profile, e.g. params/<experiment>.smoke.yaml)")
        replaced = []
        if key in spec["grid"]:
            replaced.append(f"the grid's {key} axis {spec['grid'][key]!r}")
            spec["grid"][key] = [value]
        in_cases = [i for i, case in enumerate(spec["cases"], 1) if key in case]
        if in_cases:
            replaced.append(f"{key} of case{'s' if len(in_cases) > 1 else ''} {', '.join(map(str, in_cases))}")
            for case in spec["cases"]:
                if key in case:
                    case[key] = value
        if replaced:
            notes.append(f"{label}: --set {key}={value!r} replaces {' and '.join(replaced)}")
        _merge(base, key, value)
    spec["base"] = base
    return spec, notes


def expand(sweep_path_or_dict, overrides=None, warn_unused: bool = False, check_unused: bool = True) -> list[Config]:
    """Every run configuration of a sweep, validated, duplicates (same hash) removed, in
    file order (cases outer, grid inner with its last key varying fastest).

    ``overrides``: ``["key=value", ...]`` (or a dict of dotted keys) applied by
    :func:`apply_overrides` (base; a grid axis or case value of the same key is replaced).
    Raises :class:`ConfigError` naming the case and grid point of the first invalid run.
    Option sections are checked in the runs that use their method; a section that no run
    uses is checked against the first run that has it (and, with ``warn_unused``, warned
    about once: :func:`sweep` does so). ``check_unused=False`` skips that check, for a part
    of a sweep whose whole has been checked (an option block meant for other runs of the
    sweep may not fit the runs of the part).
    """
    spec, label = read_spec(sweep_path_or_dict)
    spec, notes = apply_overrides(spec, overrides, label)
    base: dict = {}
    for key, value in spec["base"].items():
        if not isinstance(key, str):
            raise ConfigError(f"{label}: base key {key!r} must be a string")
        _merge(base, key, value)
    methods = config_mod._all_method_options()
    keys = list(spec["grid"])
    points = list(itertools.product(*(spec["grid"][k] for k in keys)))
    out, seen = [], set()
    given, used = {}, set()  # option sections given (where first) / used by some run
    n_cases = len(spec["cases"])
    for i, case in enumerate(spec["cases"], 1):
        for point in points:
            raw = copy.deepcopy(base)
            where = f"case {i} of {n_cases} {_fmt(case)}" if n_cases > 1 or case else "base"
            try:
                for key, value in case.items():
                    _merge(raw, key, value)
                for key, value in zip(keys, point):
                    _merge(raw, key, value)
                raw["experiment"], raw["profile"] = spec["experiment"], spec["profile"]
                cfg = config_mod.from_dict(raw, check_unused_options=False)
            except ConfigError as e:
                at = f" at grid point {_fmt(dict(zip(keys, point)))}" if keys else ""
                raise ConfigError(f"{label}: {where}{at}: {e}") from None
            for name in raw:
                if methods.get(name) is not None and name not in given:
                    given[name] = (cfg, raw[name], where)
            used.update(cfg.methods)
            if cfg.hash not in seen:
                seen.add(cfg.hash)
                out.append(cfg)
    unused = sorted(set(given) - used)  # options meant for some runs of the grid are not a mistake
    for name in unused if check_unused else ():
        cfg, value, where = given[name]
        try:
            config_mod.check_unused(cfg, {name: config_mod._build(name, methods[name], value)}, warn=False)
        except ConfigError as e:
            raise ConfigError(f"{label}: {where}: {e} (no run of the sweep uses {name!r})") from None
    if warn_unused and overrides is not None:
        # an override that narrows the grid (e.g. --set client_defense=ldp) leaves the file's
        # options for the other runs unused: not a mistake; a section an override sets is one
        by_override = {key.split(".")[0] for key in _parse_overrides(overrides)}
        in_file = expand(sweep_path_or_dict, None, check_unused=False)
        used_by_file = set().union(*(c.methods for c in in_file))
        unused = [name for name in unused if name in by_override or name not in used_by_file]
    for name in unused if warn_unused else ():
        warnings.warn(f"{label}: options {name}.* are ignored: no run of the sweep uses {name!r}",
                      UserWarning, stacklevel=2)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return out



def expand_cases(sweep_path_or_dict, cases=None, overrides=None, warn_unused: bool = False) -> list[Config]:
    """The runs of the sweep's ``cases`` only (1-based numbers, as in :func:`expand`'s messages;
    ``None``: every case), in file order. The whole sweep is expanded first, so a part is
    computed only from a file that is valid as a whole; an unknown case number is a
    :class:`ConfigError` naming the valid range."""
    full = expand(sweep_path_or_dict, overrides, warn_unused=warn_unused)
    if cases is None:
        return full
    spec, label = read_spec(sweep_path_or_dict)
    n = len(spec["cases"])
    wanted = sorted(set(cases))
    bad = [c for c in wanted if not isinstance(c, int) or not 1 <= c <= n]
    if bad or not wanted:
        raise ConfigError(f"{label}: no case {', '.join(map(str, bad)) or '(none given)'}; valid case numbers: "
                          f"1 to {n} (the file's cases, in order)")
    part = dict(spec, cases=[spec["cases"][c - 1] for c in wanted])
    with warnings.catch_warnings():  # the whole file's expansion has warned already
        warnings.simplefilter("ignore")
        return expand(part, overrides, check_unused=False)


# --------------------------------------------------------------------------- locks


RunLock = store.RunLock  # the per-run lock, shared with flcore.storage.runs.run


# --------------------------------------------------------------------------- local executor

_IN_TASK = False


class _Terminated(BaseException):
    pass


def _on_sigterm(signum, frame):
    if _IN_TASK:
        raise _Terminated()  # unwind: store.write removes its temporary file
    os._exit(128 + signum)


def _init_worker(threads: int, parent: int) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the driver stops the workers
    signal.signal(signal.SIGTERM, _on_sigterm)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the driver died before prctl
        os._exit(1)


def _local_task(cfg_dicts: list[dict], results: str, device) -> list[str]:
    global _IN_TASK
    from flcore.storage.runs import compute_pack, run

    os.environ["FLCORE_RESULTS"] = results
    _IN_TASK = True
    try:
        # the driver holds the runs' locks (RunLock) while this task computes them
        cfgs = [config_mod.from_dict(d, check_unused_options=False) for d in cfg_dicts]
        if len(cfgs) == 1:
            path, _ = run(cfgs[0], device=device, progress=False, lock=False)
            return [str(path)]
        return [str(p) for p in compute_pack(cfgs, device=device)]
    except _Terminated:
        os._exit(128 + signal.SIGTERM)
    finally:
        _IN_TASK = False


class _LocalBackend:
    def __init__(self, workers: int, threads: int, device):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.device = device
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(threads, os.getpid()))

    def submit(self, cfgs: list[Config]):
        return self.pool.submit(_local_task, [c.to_dict() for c in cfgs], str(store.results_dir()), self.device)

    def wait(self, handles, timeout):
        from concurrent.futures import FIRST_COMPLETED, wait

        return wait(handles, timeout=timeout, return_when=FIRST_COMPLETED).done

    def finish(self, handle, cfgs: list[Config]) -> None:
        handle.result()

    def close(self, abort: bool) -> None:
        if self.pool is None:
            return
        procs = list((getattr(self.pool, "_processes", None) or {}).values()) if abort else []
        self.pool.shutdown(wait=not abort, cancel_futures=True)
        for p in procs:  # SIGTERM: a worker removes its temporary file and exits
            p.terminate()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        self.pool = None


# --------------------------------------------------------------------------- ray executor


def _ray_task(cfg_dicts: list[dict], device, threads: int) -> list[dict]:
    import torch

    from flcore.sim.engine import simulate_pack
    from flcore.storage.runs import record

    torch.set_num_threads(threads)
    cfgs = [config_mod.from_dict(d, check_unused_options=False) for d in cfg_dicts]
    executor = "loop" if len(cfgs) == 1 else "batched"
    return [record(c, r) for c, r in zip(cfgs, simulate_pack(cfgs, device, False, executor=executor))]


class _RayBackend:
    def __init__(self, workers: int | None, threads: int | None, device, address: str | None):
        import ray

        self.ray, self.device = ray, device
        self.started, self.inflight = False, []
        # Ray starts its workers at niceness 15: on a machine shared with other work they would
        # hardly get a core, so the runs' tasks keep the driver's priority
        env = {"RAY_worker_niceness": "0"}
        if not ray.is_initialized():
            if address is None or address == "local":
                env.update({k: v for k, v in os.environ.items() if k.startswith("FLCORE_") and k != "FLCORE_RESULTS"})
                env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
                # "local": always a new instance, never a cluster found through RAY_ADDRESS or `ray start`
                ray.init(address="local", num_cpus=workers or default_workers(), include_dashboard=False,
                         log_to_driver=False, runtime_env={"env_vars": env})
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         runtime_env={"working_dir": str(ROOT), "excludes": EXCLUDES, "env_vars": env})
            self.started = True
            self._guard()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, cpus)
        local = address is None or address == "local"
        self.threads = threads or (max(1, cores() // self.workers) if local else 1)
        self.remote = ray.remote(num_cpus=1, max_retries=0)(_ray_task)

    def submit(self, cfgs: list[Config]):
        ref = self.remote.remote([c.to_dict() for c in cfgs], self.device, self.threads)
        self.inflight.append(ref)
        return ref

    def wait(self, handles, timeout):
        done, _ = self.ray.wait(list(handles), num_returns=1, timeout=timeout)
        return done

    def finish(self, handle, cfgs: list[Config]) -> None:
        self.inflight.remove(handle)
        try:
            docs = self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None
        for cfg, doc in zip(cfgs, docs):
            store.write(store.path_for(cfg), doc)

    def _guard(self) -> None:
        """Shut the Ray instance this driver started down however the driver ends: at exit
        (``atexit``) and on SIGTERM (a kill; Ctrl-C raises KeyboardInterrupt, which closes the
        backend), so that no Ray process outlives it. Only SIGKILL escapes."""
        import atexit
        import threading

        atexit.register(self._at_exit)
        self._previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_signal)

    def _unguard(self) -> None:
        import atexit

        atexit.unregister(self._at_exit)
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _at_exit(self) -> None:
        self.close(abort=True)

    def _on_signal(self, signum, frame):
        self.close(abort=True)
        raise SystemExit(128 + signum)

    def close(self, abort: bool) -> None:
        if abort and self.inflight:
            for ref in self.inflight:
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # already finished or gone
                    pass
        self.inflight = []
        if self.started:
            self.started = False
            self._unguard()
            self.ray.shutdown()


# --------------------------------------------------------------------------- driver


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


#: Runs per pack that ``--pack auto`` forms on a GPU (on a CPU it packs nothing: batched rows
#: are no faster there than one client after another).
PACK_AUTO_CUDA = 64


def pack_size(pack, device) -> int:
    """The number of runs per pack that ``pack`` asks for: an integer >= 1, or ``auto``
    (:data:`PACK_AUTO_CUDA` on a GPU, 1 on a CPU)."""
    if pack is None:
        return 1
    if str(pack) == "auto":
        return PACK_AUTO_CUDA if est.device_kind(device) == "cuda" else 1
    try:
        size = int(pack)
    except (TypeError, ValueError):
        size = 0
    if size < 1 or str(size) != str(pack).strip():
        raise ConfigError(f"pack {pack!r} is not valid; valid choices: auto or a positive integer (runs per pack)")
    return size


def make_packs(cfgs: list[Config], size: int) -> list[list[Config]]:
    """``cfgs`` cut into packs of at most ``size`` runs that can share one simulation (equal
    :func:`flcore.sim.engine.pack_key`), in the order of ``cfgs`` within each pack."""
    if size == 1:
        return [[c] for c in cfgs]
    from flcore.sim.engine import pack_key

    by_key: dict[tuple, list[Config]] = {}
    for c in cfgs:
        by_key.setdefault(pack_key(c), []).append(c)
    return [group[i:i + size] for group in by_key.values() for i in range(0, len(group), size)]


def _execute(todo: list[list[Config]], backend, workers: int, bar) -> tuple[int, int]:
    """Run the packs of ``todo`` (lists of runs computed in one simulation) with at most
    ``workers`` packs in flight; return (runs computed here, runs stored by another sweep).
    Each run of a pack is locked (:class:`RunLock`) from the check of the store to the write;
    a run locked by another sweep leaves the pack and is tried again later, alone."""
    queue, busy = deque(todo), []
    inflight: dict[Any, tuple[list[Config], list[RunLock]]] = {}
    computed = reused = 0
    error = None

    def release(locks, remove=False):
        for lock in locks:
            lock.release(remove=remove)

    try:
        while queue or busy or inflight:
            while error is None and queue and len(inflight) < workers:
                mine, locks = [], []
                for cfg in queue.popleft():
                    lock = RunLock(cfg)
                    if not lock.acquire():
                        busy.append([cfg])  # another sweep computes it: come back later
                        continue
                    if store.find(cfg)[1] is not None:
                        lock.release(remove=True)
                        reused += 1
                        bar.update(1)
                        continue
                    mine.append(cfg)
                    locks.append(lock)
                if not mine:
                    continue
                try:
                    inflight[backend.submit(mine)] = (mine, locks)
                except BaseException:
                    release(locks)
                    raise
            if error is not None:
                queue.clear()
                busy.clear()
            if not inflight:
                if busy:
                    time.sleep(POLL_S)
                    queue.extend(busy)
                    busy.clear()
                    continue
                break
            # a finite wait keeps the main thread responsive to Ctrl-C
            done = backend.wait(list(inflight), POLL_S)
            for handle in done:
                pack, locks = inflight.pop(handle)
                try:
                    backend.finish(handle, pack)
                except Exception as e:  # stop submitting; let the runs in flight finish and be stored
                    release(locks)
                    if error is None:
                        error = (pack, e)
                    continue
                release(locks, remove=True)
                computed += len(pack)
                bar.update(len(pack))
            queue.extend(busy)
            busy.clear()
    except BaseException:  # Ctrl-C: stop the workers first, then free their runs' locks
        backend.close(abort=True)
        for _, locks in inflight.values():
            release(locks)
        raise
    if error is not None:
        pack, e = error
        cfg = pack[0]
        what = f"run {cfg.hash} ({cfg.dataset}/{cfg.aggregator}/{cfg.client_defense}, seed {cfg.seed})"
        _log(f"sweep: {what if len(pack) == 1 else f'a pack of {len(pack)} runs, the first {what},'} failed")
        raise e
    return computed, reused


def sweep(path, executor: str = "local", workers: int | None = None, address: str | None = None,
          overrides=None, dry_run: bool = False, progress: bool = True, threads: int | None = None,
          device=None, pack=None, cases=None) -> list[Path]:
    """Compute the missing runs of a sweep file; return the stored paths of all its runs.

    ``executor``: ``local`` (worker processes) or ``ray`` (``address`` of a cluster, or a local
    instance). ``workers``: runs in parallel (default: :func:`default_workers`, or a cluster's
    CPUs). ``threads``: torch threads per run (default ``max(1, cores // workers)``).
    ``overrides``: ``["key=value", ...]`` applied to the sweep's ``base``. ``dry_run``: only
    print the number of missing runs and the estimate, return ``[]``. ``device``: as
    :func:`flcore.storage.runs.run` (default: CUDA if present). ``pack``: runs per simulation
    (:func:`pack_size`: ``auto`` or an integer; default 1): the missing runs that can share
    one simulation (:func:`make_packs`) are computed together by
    :func:`flcore.sim.engine.simulate_pack`, their clients trained as batched rows, each run stored
    under its own hash with the pack recorded in its provenance. ``cases``: only these cases of
    the file (1-based, :func:`expand_cases`), e.g. one row of a long grid.
    """
    if executor not in ("local", "ray"):
        raise ConfigError(f"executor {executor!r} is not valid; valid choices: local, ray")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be positive, got {workers}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be positive, got {threads}")
    from flcore.storage.runs import check_device

    check_device(device)
    size = pack_size(pack, device)
    cfgs = expand_cases(path, cases, overrides, warn_unused=True)
    found = [store.find(c) for c in cfgs]
    missing = [c for c, (_, doc) in zip(cfgs, found) if doc is None]
    name = f"{cfgs[0].experiment} [{cfgs[0].profile}]"
    n_workers = workers or (default_workers() if executor == "local" or address is None else None)
    if not missing:
        _log(f"sweep {name}: all {len(cfgs)} runs stored")
        return [] if dry_run else [p for p, _ in found]
    par = min(n_workers or 1, len(missing))
    wall, compute, how = est.sweep_span(missing, par, device, threads or max(1, cores() // par))
    if n_workers:
        when = f"estimated {est.fmt(wall)}, {est.human(compute.mid)} of compute over {par} worker(s); {how}"
    else:  # a Ray cluster of unknown size
        when = f"estimated {est.fmt(compute)} of compute (wall time: that over the cluster's CPUs); {how}"
    packs = make_packs(missing, size)
    if size > 1:
        when += f"; {len(packs)} pack(s) of up to {size} runs (estimated as separate runs)"
    _log(f"sweep {name}: {len(missing)} of {len(cfgs)} runs missing; {when}")
    if dry_run:
        return []

    from tqdm.auto import tqdm

    if executor == "local":
        n_workers = min(n_workers, len(packs))
        backend = _LocalBackend(n_workers, threads or max(1, cores() // n_workers), device)
    else:
        backend = _RayBackend(n_workers, threads, device, address)
        n_workers = backend.workers
    ok = False
    bar = tqdm(total=len(missing), desc=cfgs[0].experiment, unit="run", disable=not progress, smoothing=0)
    t0 = time.perf_counter()
    try:
        computed, reused = _execute(packs, backend, n_workers, bar)
        ok = True
    finally:
        bar.close()
        backend.close(abort=not ok)
    _log(f"sweep {name}: {computed} computed, {reused} stored by another sweep, "
         f"{len(cfgs) - len(missing)} already stored; {est.human(time.perf_counter() - t0)}")
    return [store.locate(c) for c in cfgs]
