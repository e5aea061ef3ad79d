"""What ``make book`` drives: ``python -m flcore.build.book {sweeps,notebooks,generated} --profile P``.

``sweeps``     compute the missing runs of every experiment of the profile (after printing how
               many are missing overall and an estimate of the time), one sweep per parameter
               file, local executor.
``notebooks``  execute ``notebooks/<exp>.ipynb`` with papermill into
               ``book/experiments/<exp>.ipynb`` (``-f <param file> -p profile <profile>``),
               failing on any cell error, and remove the chapter's placeholder
               ``book/experiments/<exp>.md``.
``sync-params``  rewrite the sweep keys (profile, experiment, description, base, cases,
               grid) of each chapter notebook's ``parameters`` cell from its default
               parameter file, followed by ``set = ''`` (dotted overrides, as ``--set``),
               in ``notebooks/<exp>.py`` and its paired ``.ipynb``.
``generated``  write ``deviations.md`` (every setting of the parameter files that departs
               from the paper protocol, per profile, with the reason) and ``provenance.md``
               (every stored run the profile's sweeps use) into :func:`generated_dir`: the
               tracked ``book/_generated/`` for the default profile (the committed store's
               tables), ``_build/generated/<profile>/`` for any other profile, so that a smoke
               build leaves the tracked files alone.

The book build reads the generated tables of the profile named by ``$FLCORE_BOOK_PROFILE``
(default: ``default``): this module is also a Sphinx extension (``_config.yml``) that points
the chapters' ``{include} _generated/...`` directives at :func:`generated_dir`.

Parameter files: ``params/<exp>.yaml`` for the default profile, ``params/<exp>.<profile>.yaml``
otherwise; an experiment without a file for the profile uses the default profile's file
(and says so). The results store is ``results/`` or ``$FLCORE_RESULTS``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from flcore.analysis import configs, params
from flcore.core.constants import PROFILES, ROOT
from flcore.present import page

NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = ROOT / "book" / "experiments"
GENERATED = ROOT / "book" / "_generated"  # the default profile's generated tables (tracked)
BUILD = ROOT / "_build"
PROFILE_ENV = "FLCORE_BOOK_PROFILE"  # the profile whose generated tables the book build includes

# chapter -> the parameter files (sweeps) it reads, in order; the first one is passed to
# papermill with -f. The explorer has none: it reads the whole store.
EXPERIMENTS = {
    "original_tables": ["original_tables", "ablations"],
    "alpha_sensitivity": ["alpha_sensitivity"],
    "selection": ["selection"],
    "poisonedfl_prodigy": ["poisonedfl_prodigy"],
    "attack_effect": ["attack_effect"],
    "explorer": [],
}
OPTIONAL = {"attack_effect"}  # built only if its parameter files / notebook exist
#: Sweeps whose stored runs a chapter of the default profile shows but never computes (the paper
#: protocol: hours of a CPU per run); the provenance appendix lists them, missing runs included.
STORED_ONLY = {"original_tables": ["params/original_tables.paper.yaml", "params/local_steps.yaml",
                                   "params/undefended_cell.yaml", "params/ablations.paper.yaml",
                                   "params/table2_cifar10.paper.yaml", "params/sparsefed_momentum.paper.yaml"],
               "alpha_sensitivity": ["params/alpha_sensitivity.paper.yaml"],
               "selection": ["params/selection.paper.yaml"],
               "poisonedfl_prodigy": ["params/poisonedfl_official.yaml"],
               "attack_effect": ["params/attack_effect.paper.yaml"]}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def param_file(name: str, profile: str) -> tuple[Path | None, str]:
    """The parameter file of sweep ``name`` for ``profile`` and the profile it really is
    (``default`` when the profile has no file of its own)."""
    own = params.params_path(name, profile)
    if own.exists():
        return own, profile
    fallback = params.params_path(name, "default")
    if fallback.exists():
        return fallback, "default"
    return None, profile


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------- the profile's sweeps


def profile_sweeps(profile: str) -> list[tuple[str, str, Path | None, dict]]:
    """Every sweep of the profile as (chapter, sweep name, file, sweep dict).

    Includes, for the ablations, their reference setting (the ablation base with no client
    defense and with LeadFL), which the original_tables chapter compares them with.
    """
    out = []
    for chapter, names in EXPERIMENTS.items():
        for name in names:
            path, eff = param_file(name, profile)
            if path is None:
                if chapter in OPTIONAL:
                    continue
                raise SystemExit(f"error: no parameter file for {name} (profile {profile}): "
                                 f"expected {_rel(params.params_path(name, profile))}")
            if eff != profile:
                log(f"note: {name} has no {profile}-profile parameter file; using {_rel(path)}")
            spec = params.spec_from_file(path)
            out.append((chapter, name, path, spec))
            if name == "ablations":
                # the reference setting, unless the grid of original_tables has the same runs
                from flcore.experiments.sweep import expand

                grid_hashes = {c.hash for ch, n, _, sp in out if n == "original_tables" for c in expand(sp)}
                ref_cases = [{"client_defense": cd} for cd in ("none", "leadfl")
                             if expand({**spec, "cases": [{"client_defense": cd}], "grid": {}})[0].hash
                             not in grid_hashes]
                if ref_cases:
                    out.append((chapter, "ablations (reference)", path, {**spec, "cases": ref_cases, "grid": {}}))
    return out


def _attack_effect():
    try:
        from flcore.experiments import attack_effect
    except ImportError:
        return None
    return attack_effect if hasattr(attack_effect, "measure_all") else None


def _measures(name: str) -> bool:
    """Sweep ``name`` (``attack_effect``, ``attack_effect.paper``, ...) holds attack-effect
    measurements, stored under the attack_effect experiment, rather than plain runs."""
    return name.split(".")[0] == "attack_effect" and _attack_effect() is not None


def _configs(name: str, spec: dict) -> list:
    if _measures(name):
        return _attack_effect().read_params(spec)[0]
    from flcore.experiments.sweep import expand

    return expand(spec)


def _missing(name: str, cfgs: list) -> list:
    from flcore.storage import store

    ae = _attack_effect() if _measures(name) else None
    if ae is not None:
        import dataclasses

        out = []
        for c in cfgs:
            c2 = dataclasses.replace(c, experiment=ae.EXPERIMENT)
            if not ae.is_measurement(store.load_valid(store.path_for(c2)), c2):
                out.append(c)
        return out
    return [c for c in cfgs if store.find(c)[1] is None]


def cmd_sweeps(profile: str, workers: int | None = None) -> int:
    from flcore.experiments import estimate, sweep

    sweeps = profile_sweeps(profile)
    plan, total = [], 0
    wall, compute = estimate.ZERO, estimate.ZERO
    par = max(1, workers or sweep.default_workers())
    for chapter, name, path, spec in sweeps:
        cfgs = _configs(name, spec)
        missing = _missing(name, cfgs)
        plan.append((chapter, name, path, spec, cfgs, missing))
        total += len(missing)
        if missing:  # each chapter's sweep in turn, as below (flcore/experiments/estimate.py)
            k = min(par, len(missing))
            w, c, _ = estimate.sweep_span(missing, k, threads=max(1, sweep.cores() // k))
            factor = 2 if _measures(name) else 1  # a real run and its shadow
            wall, compute = wall + w.scale(factor), compute + c.scale(factor)
    n_all = sum(len(p[4]) for p in plan)
    log(f"book [{profile}]: {total} of {n_all} runs missing; estimated {estimate.fmt(wall)} "
        f"({estimate.human(compute.mid)} of compute, {par} worker(s))")
    t0 = time.perf_counter()
    for chapter, name, path, spec, cfgs, missing in plan:
        if not missing:
            log(f"{name} [{spec['profile']}]: all {len(cfgs)} runs stored")
            continue
        if _measures(name):
            log(f"{name} [{spec['profile']}]: {len(missing)} measurements missing (real run + shadow each)")
            _attack_effect().measure_all(path, progress=True)  # the file: it also holds the Hessian options
        else:
            sweep.sweep(spec, executor="local", workers=workers)
    log(f"book [{profile}]: sweeps done in {estimate.human(time.perf_counter() - t0)}")
    return 0


# --------------------------------------------------------------------------- notebooks


def ensure_kernel() -> None:
    """A kernel named python3 that runs this interpreter (the venv's); install it into the
    venv (``ipykernel install --sys-prefix``) if it is missing or points elsewhere."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        exe = spec.argv[0]
        # jupyter_client runs "python"/"python3" as sys.executable
        ok = exe in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}") or \
            Path(exe).resolve() == Path(sys.executable).resolve()
    except NoSuchKernel:
        ok = False
    if not ok:
        log("installing the python3 kernel into the virtual environment")
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3",
                        "--display-name", "Python 3 (ipykernel)"], check=True)


def papermill_command(chapter: str, profile: str) -> list[str]:
    """``papermill notebooks/<chapter>.ipynb book/experiments/<chapter>.ipynb -f <param file>
    -p profile <profile>`` (the chapter's first parameter file; none for the explorer)."""
    cmd = [sys.executable, "-m", "papermill", _rel(NOTEBOOKS / f"{chapter}.ipynb"),
           _rel(CHAPTERS / f"{chapter}.ipynb"), "--kernel", "python3", "--cwd", str(ROOT)]
    names = EXPERIMENTS[chapter]
    path, eff = param_file(names[0], profile) if names else (None, profile)
    if path is not None:
        cmd += ["-f", _rel(path)]
    return cmd + ["-p", "profile", eff]


def _tag_hidden(nb_path: Path) -> None:
    """Collapse the parameter cells' code in the book (sphinx-togglebutton)."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "hide-input" not in tags:
            cell.setdefault("metadata", {})["tags"] = tags + ["hide-input"]
    nbformat.write(nb, nb_path)


#: Seconds one cell of a chapter whose runs are all stored may take (``$FLCORE_CELL_TIMEOUT``;
#: 0: no limit). Such a cell only reads and draws (seconds). The limit also bounds a known
#: stall: after a cell that draws into widgets, the notebook client's wait for the kernel's
#: reply sometimes misses its wake-up and would wait forever; at the timeout its last poll
#: finds the reply, and the notebook goes on unharmed.
CELL_TIMEOUT_ENV = "FLCORE_CELL_TIMEOUT"
CELL_TIMEOUT_DEFAULT = 120


def cell_timeout() -> int:
    raw = os.environ.get(CELL_TIMEOUT_ENV, str(CELL_TIMEOUT_DEFAULT)).strip()
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
    except ValueError:
        raise SystemExit(f"error: ${CELL_TIMEOUT_ENV} must be a whole number of seconds >= 0 "
                         f"(0: no limit), not {raw!r}") from None
    return value


def chapter_complete(chapter: str, sweeps: list) -> bool:
    """Whether every run the chapter's notebook reads is stored (so that it computes none)."""
    return all(not _missing(name, _configs(name, spec)) for ch, name, _, spec in sweeps if ch == chapter)


def _papermill(cmd: list[str], chapter: str, limit: int, attempts: int = 2) -> int:
    """Run papermill; its output passes through. A cell that really outlasts the timeout
    (papermill's ``CellTimeoutError``) is retried once with a fresh kernel, then reported."""
    for attempt in range(1, attempts + 1):
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE)
        tail = b""
        while chunk := os.read(proc.stderr.fileno(), 4096):
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
            tail = (tail + chunk)[-65536:]
        rc = proc.wait()
        if rc == 0 or b"CellTimeoutError" not in tail:
            return rc
        log(f"{chapter}: a cell did not finish within {limit} s"
            + ("; running the notebook again with a fresh kernel" if attempt < attempts else
               f"; if its cells need longer here, raise ${CELL_TIMEOUT_ENV} (0: no limit)"))
    return rc


def cmd_notebooks(profile: str, only: list[str] | None = None) -> int:
    ensure_kernel()
    sweeps = profile_sweeps(profile)
    CHAPTERS.mkdir(parents=True, exist_ok=True)
    failed_dir = ROOT / "_build" / "papermill-failed"
    for chapter in EXPERIMENTS:
        if only and chapter not in only:
            continue
        src = NOTEBOOKS / f"{chapter}.ipynb"
        if not src.exists():
            if chapter in OPTIONAL:
                log(f"{chapter}: no notebook yet; its placeholder chapter stays")
                continue
            raise SystemExit(f"error: {_rel(src)} missing")
        cmd = papermill_command(chapter, profile)
        out = CHAPTERS / f"{chapter}.ipynb"
        # a chapter whose runs are all stored only reads them: a cell that outlasts the
        # timeout hangs (see _papermill); one that still computes runs gets no limit
        complete = chapter_complete(chapter, sweeps)
        limit = cell_timeout() if complete else 0
        if limit:
            cmd += ["--execution-timeout", str(limit)]
        elif not complete:
            log(f"{chapter}: runs missing, computed in the notebook (no cell timeout)")
        log("papermill " + " ".join(cmd[3:]))
        t0 = time.perf_counter()
        rc = _papermill(cmd, chapter, limit)
        if rc != 0:
            failed_dir.mkdir(parents=True, exist_ok=True)
            if out.exists():
                out.replace(failed_dir / out.name)
            log(f"{chapter}: a cell failed; the executed notebook is in {_rel(failed_dir / out.name)}")
            return rc
        _tag_hidden(out)
        placeholder = CHAPTERS / f"{chapter}.md"
        if placeholder.exists():
            placeholder.unlink()
        log(f"{chapter}: {time.perf_counter() - t0:.0f} s")
    return 0


# --------------------------------------------------------------------------- generated tables

# Why a setting departs from the paper protocol, keyed by configuration key (dotted) or by
# "<experiment>:<key>" where one experiment has its own reason.
WHY = {
    "rounds": "CPU budget: a few rounds in the smoke profile",
    "alpha_sensitivity:rounds": "40 rounds, as in the seed report's alpha sweep (smoke: a few)",
    "selection:rounds": "CPU budget: four burst cycles (smoke: a few rounds)",
    "attack_effect:rounds": "CPU budget: four burst cycles (smoke: a few rounds)",
    "poisonedfl_prodigy:rounds": "scaled setting: a few alignment windows instead of the official number of rounds (see the chapter)",
    "local_epochs": "CPU budget: 1 local epoch instead of 10; the paper profile keeps 10",
    "poisonedfl_prodigy:local_epochs": "the official PoisonedFL setting trains 1 local epoch",
    "eval.test_samples": "CPU budget: a fixed subset of the test set (the same for every run) is evaluated",
    "eval.every": "CPU budget: evaluated every k-th round (and the last)",
    "eval.bn": "textbook evaluation (running statistics); PoisonedFL's network has no BatchNorm",
    "aggregate_state": "trainable parameters only",
    "original_tables:aggregate_state": "SparseFed clips update norms, which BatchNorm counters would dominate: it aggregates trainable parameters (BN statistics averaged)",
    "ablations:aggregate_state": "ablation: BatchNorm counters out of Multi-Krum's distances",
    "poisonedfl_prodigy:aggregate_state": "PoisonedFL crafts and the rules aggregate model deltas of the trainable parameters",
    "aggregator": "experiment variable (server-side rule)",
    "alpha_sensitivity:aggregator": "the seed report's alpha sweep uses the reference code's Bulyan",
    "selection:aggregator": "the seed report's selection figures use the reference code's Bulyan",
    "attack_effect:aggregator": "the setting of the seed report's burst experiments (reference Bulyan)",
    "client_defense": "experiment variable (client-side defense)",
    "schedule": "experiment variable (client selection)",
    "alpha_sensitivity:schedule": "periodic bursts, as in the seed report's alpha sweep",
    "attack_effect:schedule": "periodic bursts: benign rounds between bursts show the attack effect's decay",
    "ablations:schedule": "ablation: the older reference code's seeding (legacy)",
    "poisonedfl_prodigy:schedule": "uniform selection of the genuine clients, as in the official PoisonedFL setting",
    "attack": "experiment variable (attack)",
    "periodic.cycle": "smoke: a short cycle so that a burst occurs within a few rounds",
    "periodic.burst": "smoke: a short cycle so that a burst occurs within a few rounds",
    "model.name": "PoisonedFL's (Fashion-)MNIST network, as in its official setting",
    "clients": "PoisonedFL setting, scaled down from the official number of genuine clients",
    "clients_per_round": "PoisonedFL setting, scaled (see the chapter)",
    "malicious_clients": "PoisonedFL uses fake clients instead of compromised genuine ones",
    "batch_size": "PoisonedFL's official batch size",
    "original_tables:batch_size": "the reference's batch size per dataset: 16 on Fashion-MNIST, 32 on CIFAR-10 (protocol column: Fashion-MNIST's)",
    "dataset": "experiment variable (dataset; without the official CIFAR-10 archive, its JPEG copy, labelled as such in every table)",
    "momentum": "PoisonedFL: plain SGD on the clients",
    "split.kind": "PoisonedFL's non-IID bias split",
    "split.bias": "PoisonedFL's non-IID bias split",
    "lr_decay.kind": "experiment variable: a benign learning-rate schedule",
    "lr_decay.gamma": "experiment variable: a benign learning-rate schedule",
    "leadfl.alpha": "experiment variable (regularisation strength)",
    "seed": "repetitions: the same configuration with other seeds (the papers report one run per cell)",
    "ablations:leadfl.alpha": "ablation: the released code with the regulariser switched off",
    "leadfl.variant": "ablation: LeadFL as printed / as corrected instead of the released code",
    "backdoor.trigger": "ablation: the trigger written with the data pipeline's own values",
    "multikrum.f": "PoisonedFL setting: f set to the expected fakes per round",
    "multikrum.m": "PoisonedFL setting: m set to the genuine clients per round",
    "prodigy.f": "PoisonedFL setting: f set to the expected fakes per round (or underestimated on purpose)",
    "trimmed_mean.oracle": "the official PoisonedFL release trims with knowledge of the number of fakes",
    "trimmed_mean.beta": "a textbook trimmed mean without oracle knowledge",
    "norm_clip.threshold": "the official PoisonedFL release clips at the mean genuine norm (oracle); or a median threshold",
    "poisonedfl.fake_clients": "PoisonedFL setting, scaled: the fakes keep their official share of the genuine clients",
    "poisonedfl.window": "smoke: alignment tests within a few rounds",
    "poisonedfl.noise_gamma": "experiment variable: noise adaptation",
    "poisonedfl.flip_p": "experiment variable: sign flipping",
    "poisonedfl.selection": "experiment variable: random selection of the fakes",
    "poisonedfl.partition": "experiment variable: dimension partitioning",
}
VARIABLE_SOURCES = ("case", "grid")


def protocol_defaults(cfg_dict: dict) -> dict:
    """Flattened paper-protocol defaults for the sections ``cfg_dict`` has: top-level keys
    and sections from :class:`flcore.core.config.Config`, method options from their dataclasses."""
    import dataclasses

    from flcore.core import config, registry

    out = configs.flatten(config.Config().to_dict())
    for name in cfg_dict:
        if isinstance(cfg_dict[name], dict) and name not in config.SECTIONS:
            for family in registry.FAMILIES:
                m = registry.methods(family).get(name)
                if m is not None and m.options is not None:
                    out.update(configs.flatten({name: dataclasses.asdict(m.options())}))
    return out


def _where(spec: dict) -> dict:
    """Flattened key -> where the sweep sets it (base, case, grid)."""
    from flcore.core import config

    def keys(d):
        raw = {}
        for k, v in (d or {}).items():
            config.set_dotted(raw, k, v)
        return set(configs.flatten(raw))

    out = {k: "base" for k in keys(spec.get("base"))}
    for case in spec.get("cases") or []:
        for k in keys(case):
            out.setdefault(k, "case")
            if out[k] == "base":
                out[k] = "base, case"
    for k in keys({g: 0 for g in (spec.get("grid") or {})}):
        out[k] = "grid" if k not in out else out[k] + ", grid"
    return out


def _fmt_values(values: list) -> str:
    vals = []
    for v in values:
        s = json.dumps(v) if not isinstance(v, str) else v
        if s not in vals:
            vals.append(s)
    text = ", ".join(vals)
    return text.replace("|", "\\|")


def wide_table_open(cls: str) -> list[str]:
    """The opening lines of a Markdown table wrapped in MyST's ``{table}`` directive with the
    classes ``flcore-wide`` and ``cls`` (styled by ``_css/book.css``)."""
    return ["```{table}", f":class: flcore-wide {cls}", ""]


WIDE_TABLE_CLOSE = "```"


def deviations(profile: str) -> str:
    """Markdown: per experiment and setting, the protocol value, each profile's values,
    where the sweep sets it and why."""
    from flcore.experiments.sweep import expand

    names = list(dict.fromkeys(n for ns in EXPERIMENTS.values() for n in ns))
    rows = []
    fell_back = set()
    for name in names:
        per_profile, where, defaults = {}, {}, {}
        for p in PROFILES:
            path, eff = param_file(name, p)
            if path is None:
                continue
            if eff != p:
                fell_back.add((name, p))
            spec = params.spec_from_file(path)
            try:
                cfgs = _configs(name, spec)
            except Exception as e:  # a file this module cannot expand is reported, not fatal
                log(f"deviations: {name} [{p}] skipped: {e}")
                continue
            for k, v in _where(spec).items():
                where.setdefault(k, v)
            vals: dict[str, list] = {}
            for c in cfgs:
                d = c.to_dict()
                dflt = protocol_defaults(d)
                for k, v in configs.flatten(d).items():
                    if k in ("experiment", "profile"):
                        continue
                    defaults.setdefault(k, dflt.get(k))
                    vals.setdefault(k, []).append(v)
            per_profile[p] = vals
        keys = sorted({k for vals in per_profile.values() for k in vals},
                      key=lambda k: (k.count("."), k))
        for k in keys:
            dflt = defaults.get(k)
            differs = any(v != dflt for vals in per_profile.values() for v in vals.get(k, []))
            if not differs:
                continue
            cells = []
            for p in PROFILES:
                vals = per_profile.get(p, {}).get(k)
                if vals is None:
                    cells.append("—")
                else:
                    cells.append(_fmt_values(vals) + (" †" if (name, p) in fell_back else ""))
            src = where.get(k, "derived")
            why = WHY.get(f"{name}:{k}") or WHY.get(k) or (
                "experiment variable" if any(s in src for s in VARIABLE_SOURCES) else "")
            rows.append((name, k, "—" if dflt is None else _fmt_values([dflt]), *cells, src, why))
    head = ["experiment", "setting", "paper protocol", *(f"`{p}`" + (" (this build)" if p == profile else "")
                                                          for p in PROFILES), "set in", "why"]
    # a table of its own class (_css/book.css): it scrolls inside the column, and its "why"
    # column wraps in a column of readable width
    lines = [*wide_table_open("flcore-deviations"), "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(x).replace("\n", " ") for x in r) + " |")
    lines.append(WIDE_TABLE_CLOSE)
    notes = ["", "Values are those of the resolved run configurations of each parameter file "
             "(several values: the experiment varies the setting). \"—\": the setting does not "
             "occur in that profile (the method is not used) or the profile has no parameter file. The paper protocol is the default "
             "configuration of `flcore.core.config.Config` and of each method's options."]
    if fell_back:
        notes.append("")
        notes.append("† No parameter file of this profile; the build uses the default profile's file ("
                     + ", ".join(sorted({f"{n} for `{p}`" for n, p in fell_back})) + ").")
    return "\n".join(lines + notes) + "\n"


def _short_commit(commit) -> str:
    commit = str(commit or "—")
    head, dirty = commit.split("+", 1) if "+" in commit else (commit, "")
    return head[:12] + (f"+{dirty}" if dirty else "")


def provenance(profile: str) -> str:
    """Markdown: every stored run the profile's sweeps use, with totals and the verify command."""
    from flcore.experiments import estimate
    from flcore.storage import store

    rows, seen = [], set()
    total_wall, n_stored, devices, commits = 0.0, 0, {}, {}
    sweeps = profile_sweeps(profile)
    if profile == "default":
        sweeps += [(chapter, Path(f).stem, ROOT / f, params.spec_from_file(ROOT / f))
                   for chapter, files in STORED_ONLY.items() for f in files]
    for chapter, name, path, spec in sweeps:
        try:
            cfgs = _configs(name, spec)
        except Exception as e:
            log(f"provenance: {name} skipped: {e}")
            continue
        for c in cfgs:
            if _measures(name):  # its own measurement only, not a plain run of the same configuration
                import dataclasses

                c = dataclasses.replace(c, experiment=_attack_effect().EXPERIMENT)
                p = store.path_for(c)
                doc = store.load_valid(p)
                doc = doc if _attack_effect().is_measurement(doc, c) else None
            else:
                p, doc = store.find(c)
            if p in seen:
                continue
            seen.add(p)
            rel = f"{p.parent.name}/{p.name}"
            if doc is None:
                rows.append((name, f"`{rel}`", "missing", "—", str(c.seed), "—", "—", "—", "—", "—", "—", "—", "—"))
                continue
            prov = doc["provenance"]
            wall = float(prov.get("wall_s") or 0.0)
            total_wall += wall
            n_stored += 1
            kind = estimate.device_kind(prov.get("device") or "unknown")
            n_dev, wall_dev = devices.get(kind, (0, 0.0))
            devices[kind] = (n_dev + 1, wall_dev + wall)
            commits[prov.get("git_commit")] = commits.get(prov.get("git_commit"), 0) + 1
            rows.append((name, f"`{rel}`", doc.get("status", "—"), str(len(doc["rounds"])), str(c.seed),
                         prov.get("data_label", "—"), prov.get("gpu") or prov.get("device", "—"),
                         prov.get("torch", "—"), str(prov.get("engine_numerics", 1)),
                         prov.get("cpu_capability", "—") if kind == "cpu" else "—", str(prov.get("threads", "—")),
                         f"`{_short_commit(prov.get('git_commit'))}`", f"{wall:.0f} s"))
    results = store.results_dir().resolve()
    where = _rel(results) + "/"  # relative to the repository when inside it
    head = ["experiment", "run (`<experiment>/<hash>.json`)", "status", "rounds", "seed", "data", "device", "torch",
            "engine", "CPU kernels", "threads", "git commit", "wall time"]
    lines = [f"Profile `{profile}`; store `{where}`. {n_stored} of {len(rows)} runs stored, "
             f"{total_wall / 3600:.2f} h of compute in total"
             + (" (" + ", ".join(f"{n} runs and {w / 3600:.2f} h on {d}" for d, (n, w) in sorted(devices.items()))
                + ")" if devices else "")
             + ".", "",
             *wide_table_open("flcore-provenance"), "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append(WIDE_TABLE_CLOSE)
    lines += ["", "Recompute the first rounds of any of these runs and compare every recorded metric with:", "",
              "```bash", f"python -m flcore verify {where.rstrip('/')}/<experiment>/<hash>.json --rounds 3", "```", "",
              "Column *engine* is the engine's numerics version (`flcore.sim.engine.ENGINE_NUMERICS`; 1 where the run "
              "predates the field): version 2 computes the networks channels-last, which changes results at "
              "float32 rounding, so a run of version 1 is compared with `--tolerance` or recomputed. *CPU kernels* "
              "is the vector instruction set torch and oneDNN used (not recorded before the field; those "
              "Fashion-MNIST runs reproduce under `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`). "
              "A run made on the CPU (device `cpu`) is recomputed bit for bit on a CPU with the same torch "
              "version, engine version and CPU kernels. A run made on a GPU (device `cuda`) is checked with `--device cuda` on a GPU; floating-point "
              "sums are ordered differently on the two kinds of device, so a CPU recomputation of a GPU run "
              "differs in its metrics even though the configuration, data and seeds are the same."]
    return "\n".join(lines) + "\n"


def generated_dir(profile: str) -> Path:
    """Where the generated tables of ``profile`` are written and read: ``book/_generated``
    (tracked) for the default profile, ``_build/generated/<profile>`` (not tracked) otherwise."""
    if profile not in PROFILES:
        raise SystemExit(f"error: unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return GENERATED if profile == "default" else BUILD / "generated" / profile


def cmd_generated(profile: str) -> int:
    out = generated_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    (out / "deviations.md").write_text(deviations(profile))
    (out / "provenance.md").write_text(provenance(profile))
    log(f"wrote {_rel(out / 'deviations.md')} and {_rel(out / 'provenance.md')}")
    return 0


# --------------------------------------------------------------------------- Sphinx extension

_INCLUDE_GENERATED = re.compile(r"^(```\{include\}[ \t]+)_generated/", re.MULTILINE)


def book_profile() -> str:
    """The profile named by ``$FLCORE_BOOK_PROFILE`` (empty or unset: ``default``)."""
    profile = os.environ.get(PROFILE_ENV) or "default"
    if profile not in PROFILES:
        raise SystemExit(f"error: {PROFILE_ENV}={profile!r} is not a profile; choose one of {', '.join(PROFILES)}")
    return profile


def redirect_includes(source: str, profile: str) -> str:
    """A chapter's Markdown with its ``{include} _generated/<file>`` directives pointing at
    :func:`generated_dir` of ``profile`` (a path starting with ``/`` is relative to the book's
    root); unchanged for the default profile."""
    if profile == "default":
        return source
    target = "/" + generated_dir(profile).relative_to(ROOT).as_posix() + "/"
    return _INCLUDE_GENERATED.sub(lambda m: m.group(1) + target, source)


def _on_source_read(app, docname: str, source: list) -> None:
    source[0] = redirect_includes(source[0], app.config.flcore_book_profile)


def _ensure_extra_path(app, config) -> None:
    """The downloads folder (``html_extra_path``, :data:`flcore.present.page.EXTRA`) exists before
    Sphinx checks it, also in a build whose notebooks wrote no file."""
    page.EXTRA.mkdir(parents=True, exist_ok=True)


def setup(app):
    """Sphinx entry point (``extensions: [flcore.build.book]`` in ``_config.yml``). The profile is a
    configuration value that triggers a full re-read when it changes between builds."""
    app.add_config_value("flcore_book_profile", book_profile(), "env")
    app.connect("source-read", _on_source_read)
    app.connect("config-inited", _ensure_extra_path, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# --------------------------------------------------------------------------- parameters cells

SWEEP_KEYS = ("profile", "experiment", "description", "base", "cases", "grid")
SET_COMMENT = "# overrides of the base as flcore's --set: KEY=VALUE items separated by spaces, e.g. 'seed=5 leadfl.alpha=0.1'"


def parameters_cell_source(current: str, raw: dict) -> str:
    """``current`` (a parameters cell's code, the sweep keys first) with the sweep keys
    replaced by the values of the parameter file ``raw``, followed by ``set = ''`` (the
    overrides, see :func:`flcore.analysis.params.chapter_sweep`); what follows them (the notebook's own
    options and their comments) is kept."""
    import ast
    import pprint

    tree = ast.parse(current)
    lines = current.splitlines()
    sweep_end = max((node.end_lineno for node in tree.body
                     if isinstance(node, ast.Assign) and len(node.targets) == 1
                     and isinstance(node.targets[0], ast.Name) and node.targets[0].id in SWEEP_KEYS + ("set",)),
                    default=0)
    kept = "\n".join(lines[sweep_end:]).strip("\n")  # the notebook's own options, comments included
    values = {"profile": raw.get("profile", "default"), "experiment": raw["experiment"],
              "description": raw.get("description", ""), "base": raw.get("base", {}),
              "cases": raw.get("cases"), "grid": raw.get("grid", {})}
    out = [f"{k} = {pprint.pformat(v, width=100, sort_dicts=False)}" for k, v in values.items()]
    out += [SET_COMMENT, "set = ''"]
    return "\n".join(out + (["", kept] if kept else []))


def cmd_sync_params() -> int:
    import jupytext

    for name in EXPERIMENTS:
        path, _ = param_file(name, "default")
        py = NOTEBOOKS / f"{name}.py"
        if path is None or not py.exists():
            continue
        nb = jupytext.read(py)
        (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if not all(f"{k} =" in cell.source for k in SWEEP_KEYS):  # e.g. attack_effect: its own keys
            continue
        new = parameters_cell_source(cell.source, params.read_params(path))
        if new == cell.source:
            continue
        cell.source = new
        jupytext.write(nb, py, fmt="py:percent")
        subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", "--update", "-q", str(py)], check=True)
        log(f"{_rel(py)}: parameters cell now follows {_rel(path)}")
    return 0


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m flcore.build.book", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["sweeps", "notebooks", "sync-params", "generated"])
    p.add_argument("--profile", choices=PROFILES, default=os.environ.get("PROFILE", "default"))
    p.add_argument("--workers", type=int, default=None, help="sweeps: runs in parallel (default: one per core)")
    p.add_argument("--only", nargs="*", help="notebooks: only these chapters")
    args = p.parse_args(argv)
    if args.command == "sweeps":
        return cmd_sweeps(args.profile, args.workers)
    if args.command == "notebooks":
        return cmd_notebooks(args.profile, args.only)
    if args.command == "sync-params":
        return cmd_sync_params()
    return cmd_generated(args.profile)


if __name__ == "__main__":
    sys.exit(main())
