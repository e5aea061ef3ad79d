"""Small pure helpers of the experiment notebooks: sweeps from notebook parameters, stored runs
as tables, burst shading, seed aggregation, mitigation rounds, per-phase means, Pareto fronts.

Everything here takes plain data (stored run documents, see :mod:`flcore.store`, or
DataFrames made from them) and returns plain data, so that the notebooks read as
"which runs, which view" and the helpers are unit-tested on synthetic documents
(``tests/test_report.py``). Accuracies are fractions in [0, 1] in the documents and
percentages (x100) in the tables and figures.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Iterable

from flcore.constants import ROOT

PARAMS = ROOT / "params"
PUBLISHED = ROOT / "book" / "data" / "published.yaml"

# Display names (tables and legends)
SERVER_NAMES = {"multikrum": "Multi-Krum", "bulyan_reference": "Bulyan (reference)", "bulyan": "Bulyan",
                "sparsefed": "SparseFed", "fedavg": "FedAvg", "median": "Median", "trimmed_mean": "Trimmed mean",
                "norm_clip": "Norm clipping", "krum": "Krum", "prodigy": "ProDiGy"}
CLIENT_NAMES = {"none": "None", "ldp": "LDP", "flwbc": "FL-WBC", "leadfl": "LeadFL"}
CLIENT_ORDER = ["none", "ldp", "flwbc", "leadfl"]
SERVER_ORDER = ["multikrum", "bulyan_reference", "bulyan", "sparsefed", "fedavg", "median", "trimmed_mean",
                "norm_clip", "krum", "prodigy"]
METRICS = {"main_acc_final": "main-task acc", "backdoor_acc_avg": "backdoor acc avg",
           "backdoor_acc_final": "backdoor acc final"}
DASH = "—"
# One word per concept: "paper protocol" is the profile (the papers' 10 local epochs),
# "LeadFL schedule" the client selection of the LeadFL code (schedule ``paper``).
SCHEDULE_NAMES = {"paper": "LeadFL schedule", "legacy": "legacy schedule", "periodic": "periodic bursts",
                  "random": "random selection", "consistent": "consistent selection"}
PROFILE_NAMES = {"smoke": "smoke profile", "default": "default profile", "paper": "paper protocol"}
ATTACK_NAMES = {"none": "no attack", "backdoor": "backdoor", "poisonedfl": "PoisonedFL"}
DATASET_NAMES = {"fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
#: Readable names of single configuration overrides (``key=value`` as written by
#: :func:`fmt_overrides`), for legends and tables; see :func:`override_label`.
OVERRIDE_NAMES = {"poisonedfl.selection=random": "random selection of the fakes",
                  "poisonedfl.partition=True": "dimension partitioning",
                  "schedule=legacy": "legacy schedule", "aggregate_state=trainable": "trainable parameters only",
                  "leadfl.variant=paper": "LeadFL as printed", "leadfl.variant=corrected": "LeadFL corrected",
                  "backdoor.trigger=clean": "in-range trigger"}
#: Readable names of configuration keys whose value is shown after the name.
KEY_NAMES = {"poisonedfl.noise_gamma": "noise scale γ", "poisonedfl.flip_p": "flip probability p",
             "poisonedfl.fake_clients": "fake clients", "prodigy.f": "ProDiGy's assumed f",
             "multikrum.f": "Multi-Krum f", "leadfl.alpha": "α", "local_epochs": "local epochs",
             "seed": "seed", "rounds": "rounds"}


# --------------------------------------------------------------------------- parameters and sweeps


def params_path(name: str, profile: str) -> Path:
    """``params/<name>.yaml`` for the default profile, ``params/<name>.<profile>.yaml`` otherwise."""
    return PARAMS / (f"{name}.yaml" if profile == "default" else f"{name}.{profile}.yaml")


def read_params(path: str | Path) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


def sweep_spec(experiment: str, profile: str, base: dict | None, cases: list | None = None,
               grid: dict | None = None, description: str = "") -> dict:
    """The sweep dict of :func:`flcore.sweep.expand` built from notebook parameters.

    ``profile`` and ``experiment`` are top-level keys of a sweep; copies of them inside
    ``base`` (as some parameter files write them) are dropped, the top-level values win.
    """
    base = {k: copy.deepcopy(v) for k, v in (base or {}).items() if k not in ("profile", "experiment")}
    return {"experiment": experiment, "profile": profile, "description": description, "base": base,
            "cases": copy.deepcopy(cases) if cases else [{}], "grid": copy.deepcopy(grid) if grid else {}}


def spec_from_file(path: str | Path) -> dict:
    """A parameter file as a sweep dict (see :func:`sweep_spec`); the name gives missing defaults."""
    path = Path(path)
    raw = read_params(path)
    parts = path.name.split(".")
    profile = raw.get("profile") or (parts[1] if len(parts) == 3 else "default")
    return sweep_spec(raw.get("experiment", parts[0]), profile, raw.get("base"), raw.get("cases"),
                      raw.get("grid"), raw.get("description", ""))


def resolve_spec(name: str, profile: str, experiment: str, base: dict, cases: list | None, grid: dict | None,
                 description: str = "") -> tuple[dict, str]:
    """The sweep a notebook runs, and a sentence saying where it came from.

    The notebooks' parameter defaults are ``params/<name>.yaml`` (default profile). Papermill
    replaces only the keys a parameter file has, so two cases are resolved here:

    * ``-p profile smoke`` alone (base, cases and grid left at the defaults): the profile's
      own file ``params/<name>.<profile>.yaml`` is used;
    * ``-f params/<name>.<profile>.yaml``: a key that file does not have (e.g. no ``cases``)
      means "none", not the notebook default.

    Anything else is taken as given.
    """
    d = spec_from_file(params_path(name, "default")) if params_path(name, "default").exists() else None
    given = sweep_spec(experiment, profile, base, cases, grid, description)
    own = params_path(name, profile)
    if d is not None and own.exists():
        f = spec_from_file(own)
        untouched = (given["base"], given["cases"], given["grid"]) == (d["base"], d["cases"], d["grid"])
        if profile != "default" and untouched:
            return f, f"parameters of {own.relative_to(ROOT)}"
        if given["base"] == f["base"]:
            raw = read_params(own)
            for key in ("cases", "grid"):
                if key not in raw and given[key] == d[key]:
                    given[key] = [{}] if key == "cases" else {}
            return given, f"parameters of {own.relative_to(ROOT)}"
    return given, "notebook parameters"


def expand_labelled(spec: dict) -> list[tuple[Any, dict]]:
    """Every configuration of a sweep with the overrides (case merged with grid point) that made it.

    Same order and de-duplication as :func:`flcore.sweep.expand` (first occurrence wins).
    """
    import itertools

    from flcore.sweep import expand

    expand(spec)  # the whole sweep, checked once (option blocks against the runs that use them)
    grid = spec.get("grid") or {}
    keys = list(grid)
    out, seen = [], set()
    for case in spec.get("cases") or [{}]:
        for point in itertools.product(*(grid[k] for k in keys)):
            over = {**(case or {}), **dict(zip(keys, point))}
            one = {**spec, "cases": [case or {}], "grid": {k: [v] for k, v in zip(keys, point)}}
            (cfg,) = expand(one, check_unused=False)
            if cfg.hash not in seen:
                seen.add(cfg.hash)
                out.append((cfg, over))
    return out


def override_items(text) -> list[str]:
    """The ``set`` parameter of a notebook as ``--set`` items: ``"seed=5 leadfl.alpha=0.1"`` ->
    ``["seed=5", "leadfl.alpha=0.1"]`` (split like a shell command line, so a value with spaces can
    be quoted: ``"lr_decay='{kind: exponential, gamma: 0.9}'"``). A list is taken as it is."""
    import shlex

    from flcore.errors import ConfigError

    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        return list(text)
    if not isinstance(text, str):
        raise ConfigError("must be a string of KEY=VALUE items separated by spaces (e.g. 'seed=5 leadfl.alpha=0.1')")
    try:
        return shlex.split(text)
    except ValueError as e:  # an unclosed quote
        raise ConfigError(f"{e} (KEY=VALUE items separated by spaces, e.g. 'seed=5')") from None


def with_overrides(spec: dict, overrides) -> dict:
    """``spec`` with ``overrides`` (``--set`` items) applied as ``flcore sweep --set`` applies them
    (:func:`flcore.sweep.apply_overrides`: the base, and a grid axis or case value of the same key
    replaced, with a warning), checked by :func:`flcore.sweep.expand` over the whole sweep (same
    messages: unknown keys, invalid values)."""
    from flcore.sweep import apply_overrides, expand, read_spec

    items = override_items(overrides)
    if not items:
        return spec
    expand(spec, items)  # validates, and warns what the override replaces
    full, label = read_spec(spec)
    out, _ = apply_overrides(full, items, label)
    return {**spec, "base": out["base"], "cases": out["cases"], "grid": out["grid"]}


def chapter_runs(name: str, profile: str, experiment: str, base: dict, cases: list | None, grid: dict | None,
                 description: str = "", overrides="") -> tuple[dict, list[tuple[Any, dict]], list[dict]]:
    """A chapter's sweep from its parameters cell: ``(spec, [(config, overrides)], docs)``,
    the stored runs reused and the missing ones computed (:func:`load_runs`).

    ``overrides``: the notebook's ``set`` parameter, ``KEY=VALUE`` items separated by spaces
    applied to the sweep's base exactly as ``flcore sweep --set`` (see :func:`with_overrides`);
    a mistake raises one :class:`flcore.errors.ConfigError` naming it."""
    from flcore.errors import ConfigError

    spec, source = resolve_spec(name, profile, experiment, base, cases, grid, description)
    try:
        items = override_items(overrides)
        spec = with_overrides(spec, items)
    except ConfigError as e:
        raise ConfigError(f"set = {overrides!r}: {e}") from None  # one message, not expand's call stack
    labelled = expand_labelled(spec)
    print(f"{len(labelled)} runs ({source}, profile {spec['profile']}"
          + (f"; set {' '.join(items)}" if items else "") + ")")
    return spec, labelled, load_runs([c for c, _ in labelled])


def run_label(cfg) -> str:
    """A short name of a run for progress lines: dataset, aggregator, client defense, attack,
    schedule, seed and hash."""
    return (f"{cfg.dataset}/{cfg.aggregator}/{cfg.client_defense}/{cfg.attack}, {cfg.schedule} schedule, "
            f"seed {cfg.seed} ({cfg.hash})")


def load_runs(cfgs: Iterable, progress: bool = True, log=print) -> list[dict]:
    """The stored document of every configuration (through :func:`flcore.runs.run`: stored
    runs are reused, missing ones computed and stored).

    Each computed run prints a line on stderr as it starts and as it finishes (with its wall
    time), so that a terminal (``papermill --log-output`` included) shows progress per run;
    ``progress`` also shows the rounds of the run in progress."""
    import sys
    import time

    from flcore import runs

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
    from flcore import store

    docs = (store.find(c)[1] for c in cfgs)
    return [d for d in docs if d is not None]


# --------------------------------------------------------------------------- configuration access


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def get(cfg: dict, dotted: str, default=None):
    node = cfg
    for p in dotted.split("."):
        if not isinstance(node, dict) or p not in node:
            return default
        node = node[p]
    return node


def diff(a: dict, b: dict, ignore: Iterable[str] = ("experiment",)) -> dict:
    """Flattened keys whose value in ``a`` differs from ``b`` (keys absent from ``b`` included)."""
    fa, fb = flatten(a), flatten(b)
    ign = tuple(ignore)
    return {k: v for k, v in fa.items()
            if fb.get(k, object()) != v and not any(k == i or k.startswith(i + ".") for i in ign)}


def fmt_overrides(over: dict) -> str:
    def one(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {one(x)}" for k, x in v.items()) + "}"
        return str(v)

    return ", ".join(f"{k}={one(v)}" for k, v in over.items()) or "base"


def override_label(over: dict, empty: str = "plain") -> str:
    """Overrides as readable text for legends and tables: ``lr_decay={kind: exponential,
    gamma: 0.99}`` reads "lr decay ×0.99 per round", ``poisonedfl.noise_gamma=0.5`` reads
    "noise scale γ = 0.5"; names from :data:`OVERRIDE_NAMES` and :data:`KEY_NAMES`, other
    keys as ``key = value``. ``empty`` when there is no override."""
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


# --------------------------------------------------------------------------- labels


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


def server_name(name: str) -> str:
    return SERVER_NAMES.get(name, name)


def client_name(name: str) -> str:
    return CLIENT_NAMES.get(name, name)


def schedule_name(name: str) -> str:
    return SCHEDULE_NAMES.get(name, name)


def order_key(values: Iterable[str], order: list[str]) -> list[str]:
    vals = list(dict.fromkeys(values))
    return sorted(vals, key=lambda v: (order.index(v) if v in order else len(order), str(v)))


# --------------------------------------------------------------------------- per-round data


def rounds_frame(docs: list[dict], keys: Iterable[str] = ()):
    """One row per (run, round): run hash, round, main/backdoor accuracy (%), malicious and
    selected counts, fake clients, lr, wall time, plus the configuration values ``keys``
    (dotted), e.g. ``client_defense`` or ``leadfl.alpha``. Rounds without evaluation have NaN
    accuracies. The per-round values are those of :func:`flcore.export.round_record` (the
    rows of ``flcore export``), accuracies in percent."""
    import pandas as pd

    from flcore.export import round_record

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


def shade_rounds(ax, rounds: Iterable[int], color: str = "0.5", alpha: float = 0.25, label: str | None = None,
                 **kw) -> None:
    """Shade each block of ``rounds`` (round r covers [r - 0.5, r + 0.5]); label the first only."""
    for i, (a, b) in enumerate(blocks(rounds)):
        ax.axvspan(a - 0.5, b + 0.5, color=color, alpha=alpha, lw=0, zorder=0, label=label if i == 0 else None,
                   **kw)


def malicious_bars(ax, doc: dict, color: str = "tab:red", ymax: float | None = None):
    """Number of malicious clients per round as bars on a twin y axis (right); returns that axis."""
    counts = malicious_counts(doc)
    tw = ax.twinx()
    tw.bar([r["round"] for r in doc["rounds"]], counts, width=0.8, color=color, alpha=0.25, zorder=0)
    n = max(len(r.get("selected") or []) for r in doc["rounds"]) if doc["rounds"] else 10
    tw.set_ylim(0, ymax or 2.5 * max(n, 1))
    tw.set_yticks(range(0, n + 1, max(1, n // 5)))
    tw.set_ylabel("malicious / round", color=color)
    tw.tick_params(axis="y", colors=color)
    ax.set_zorder(tw.get_zorder() + 1)  # the curves above the bars
    ax.patch.set_visible(False)
    return tw


# --------------------------------------------------------------------------- seeds and tables


def mean_spread(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one value) and count of the finite values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan"), 0
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else float("nan")
    return m, sd, n


def fmt_cell(mean: float, spread: float, n: int, digits: int = 1, show_n: bool = False) -> str:
    """``87.9 ± 0.4`` (several seeds), ``87.9`` (one), ``—`` (none); ``show_n`` appends ``(n=3)``."""
    if n == 0 or not math.isfinite(mean):
        return DASH
    s = f"{mean:.{digits}f}"
    if n > 1 and math.isfinite(spread):
        s += f" ± {spread:.{digits}f}"
    if show_n:
        s += f" (n={n})"
    return s


def fmt_num(v, digits: int = 1) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return DASH
    return DASH if not math.isfinite(v) else f"{v:.{digits}f}"


def summary_value(doc: dict, metric: str) -> float:
    v = doc.get("summary", {}).get(metric)
    return float("nan") if v is None else 100.0 * float(v)


def seed_groups(docs: list[dict], keys: Iterable[str]) -> dict[tuple, list[dict]]:
    """Runs grouped by the configuration values ``keys`` (the seeds of one cell together)."""
    out: dict[tuple, list[dict]] = {}
    for d in docs:
        out.setdefault(tuple(get(d["config"], k) for k in keys), []).append(d)
    return out


def cell_stats(docs: list[dict], metric: str) -> tuple[float, float, int]:
    return mean_spread(summary_value(d, metric) for d in docs)


def published_tables(pub: dict, dataset: str) -> dict:
    """``{server: {client: {metric: value}}}`` of the published LeadFL table of ``dataset``."""
    return ((pub.get("leadfl") or {}).get("tables") or {}).get(dataset, {}).get("cells", {})


IDENTITY_IGNORE = ("seed", "experiment", "profile")


def cell_variants(docs: list[dict], fixed: tuple = ("aggregator", "client_defense")) -> list[str]:
    """For each run, the settings that tell it apart from the other runs with the same
    ``fixed`` values other than the seed (e.g. ``alpha=0.15`` when LeadFL runs with two
    alphas); ``""`` when only seeds differ."""
    groups: dict[tuple, list[int]] = {}
    for i, d in enumerate(docs):
        groups.setdefault(tuple(get(d["config"], k) for k in fixed), []).append(i)
    out = [""] * len(docs)
    for idx in groups.values():
        flat = [flatten(docs[i]["config"]) for i in idx]
        keys = sorted({k for f in flat for k in f} - set(IDENTITY_IGNORE))
        varying = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
        for i, f in zip(idx, flat):
            out[i] = ", ".join(f"{k.split('.')[-1]}={f.get(k)}" for k in varying)
    return out


def defense_table(docs: list[dict], published: dict | None = None, digits: int = 1):
    """The layout of the seed's Tables I/II for one dataset: rows (server defense, metric),
    columns (client defense, ours | published). Cells: mean ± sample std over seeds, ``—``
    where there is no run or no published number, ``†`` where a run diverged (its numbers are
    those of its last evaluated round); a row per server gives the number of seeds (runs)
    behind each cell. Client defenses run with several settings (e.g. two
    LeadFL alphas) get one column per setting. Servers of the published table without a
    run of ours get a row of ``—`` beside the published numbers."""
    import pandas as pd

    published = published or {}
    variants = cell_variants(docs)
    cells: dict[tuple, list[dict]] = {}
    for d, v in zip(docs, variants):
        cells.setdefault((d["config"]["aggregator"], d["config"]["client_defense"], v), []).append(d)
    # servers with runs of ours, and those of the published table (shown even without a run)
    servers = order_key([k[0] for k in cells] + list(published), SERVER_ORDER)
    cols = sorted({(k[1], k[2]) for k in cells},
                  key=lambda cv: (CLIENT_ORDER.index(cv[0]) if cv[0] in CLIENT_ORDER else 99, cv[0], cv[1]))
    for c in CLIENT_ORDER:  # the four columns of the published tables are always shown
        if not any(cv[0] == c for cv in cols):
            cols.append((c, ""))
    cols.sort(key=lambda cv: (CLIENT_ORDER.index(cv[0]) if cv[0] in CLIENT_ORDER else 99, cv[0], cv[1]))
    rows, index = [], []
    for s in servers:
        for metric, mname in METRICS.items():
            row = []
            for c, v in cols:
                runs = cells.get((s, c, v), [])
                mark = " †" if any(d.get("status") == "diverged" for d in runs) else ""
                row.append(fmt_cell(*cell_stats(runs, metric), digits) + mark)
                p = (published.get(s) or {}).get(c, {}).get(metric)
                row.append(DASH if p is None else f"{float(p):.{digits}f}")
            rows.append(row)
            index.append((server_name(s), mname))
        row = []
        for c, v in cols:
            n = len(cells.get((s, c, v), []))
            row.append(str(n) if n else DASH)
            row.append("1" if (published.get(s) or {}).get(c) else DASH)
        rows.append(row)
        index.append((server_name(s), "seeds (runs)"))
    names = [client_name(c) + (f" ({v})" if v else "") for c, v in cols]
    columns = pd.MultiIndex.from_tuples([(n, w) for n in names for w in ("ours", "published")])
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["server defense", "metric"]),
                        columns=columns)


# --------------------------------------------------------------------------- Multi-Krum selections


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


# --------------------------------------------------------------------------- bursts and recovery


def burst_set(doc: dict, cycle: int | None = None, burst: int | None = None, threshold: int = 5) -> list[int]:
    """Burst rounds of a run: the first ``burst`` rounds of each ``cycle`` for the periodic
    schedule; otherwise the rounds with at least ``threshold`` malicious clients."""
    if doc["config"].get("schedule") == "periodic":
        cycle = cycle or get(doc["config"], "periodic.cycle", 10)
        burst = burst if burst is not None else get(doc["config"], "periodic.burst", 2)
        return [r["round"] for r in doc["rounds"] if r["round"] % cycle < burst]
    return burst_rounds(doc, threshold)


def mitigation_rounds(backdoor: dict[int, float], bursts: list[int], level: float = 50.0,
                      last_round: int | None = None) -> list[dict]:
    """For each block of burst rounds: how many rounds after its last round the backdoor
    accuracy (%, by round; missing rounds skipped) first falls below ``level``.

    ``rounds = 0`` means already below in the block's last round; ``None`` means not below
    before the next burst starts (or the run ends: ``censored``)."""
    out = []
    bl = blocks(bursts)
    last_round = last_round if last_round is not None else (max(backdoor) if backdoor else -1)
    for i, (a, b) in enumerate(bl):
        stop = bl[i + 1][0] - 1 if i + 1 < len(bl) else last_round
        found = None
        for r in range(b, stop + 1):
            v = backdoor.get(r)
            if v is not None and math.isfinite(v) and v < level:
                found = r - b
                break
        out.append({"burst_start": a, "burst_end": b, "rounds": found, "window": stop - b,
                    "peak": max((backdoor[r] for r in range(a, b + 1) if r in backdoor
                                 and math.isfinite(backdoor[r])), default=float("nan"))})
    return out


def phase_means(frame, bursts: dict | None = None, value: str = "backdoor_acc"):
    """Mean of ``value`` over burst rounds and over the other rounds of each run
    (``bursts``: run hash -> burst rounds). Returns a DataFrame run -> burst, benign."""
    import pandas as pd

    rows = []
    for run, g in frame.groupby("run", sort=False):
        b = set((bursts or {}).get(run, []))
        inb = g["round"].isin(b)
        rows.append({"run": run, "burst": g.loc[inb, value].mean(), "benign": g.loc[~inb, value].mean()})
    return pd.DataFrame(rows, columns=["run", "burst", "benign"]).set_index("run")


def cycle_profile(frame, cycle: int, value: str = "backdoor_acc"):
    """Mean of ``value`` by position in the cycle (round mod ``cycle``), per run."""
    f = frame.assign(phase=frame["round"] % cycle)
    return f.groupby(["run", "phase"])[value].mean().unstack("phase")


# --------------------------------------------------------------------------- trade-offs


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points when minimising x and maximising y
    (x: average backdoor accuracy, y: main-task accuracy), sorted by x."""
    idx = [i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y)]
    front = []
    for i in idx:
        xi, yi = points[i]
        dominated = any((points[j][0] <= xi and points[j][1] >= yi) and (points[j][0] < xi or points[j][1] > yi)
                        for j in idx if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def pick_constrained(points: list[tuple[float, float]], reference_y: float, max_loss: float = 1.0) -> tuple[int, str]:
    """The point with the lowest x among those whose y is at most ``max_loss`` below
    ``reference_y`` (ties: higher y); if none qualifies, the point with the highest y.
    Returns (index, "constraint" | "fallback"). A point chosen by the constraint is on the
    Pareto front."""
    ok = [i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y) and y >= reference_y - max_loss]
    if ok:
        return min(ok, key=lambda i: (points[i][0], -points[i][1])), "constraint"
    fin = [i for i, (x, y) in enumerate(points) if math.isfinite(y)]
    return max(fin, key=lambda i: (points[i][1], -points[i][0])), "fallback"


def published() -> dict:
    """``book/data/published.yaml``: published numbers and official settings, with their sources."""
    return read_params(PUBLISHED)


# --------------------------------------------------------------------------- plotting


def plot_lines(ax, frame, by: str, value: str, order: list | None = None, names: dict | None = None,
               styles: dict | None = None) -> None:
    """One line per value of column ``by``: the mean of ``value`` per round over the runs
    (seeds) of that value, with a min-max band when there are several runs. NaN rounds
    (not evaluated) are skipped."""
    import numpy as np

    groups = order or order_key(frame[by].dropna().unique(), CLIENT_ORDER)
    for key in groups:
        g = frame[frame[by] == key].dropna(subset=[value])
        if g.empty:
            continue
        per = g.groupby("round")[value]
        m = per.mean()
        label = (names or {}).get(key, str(key))
        ax.plot(m.index, m.values, label=label, **(styles or {}).get(key, {}))
        if g["run"].nunique() > 1:
            ax.fill_between(m.index, per.min().values, per.max().values, alpha=0.15,
                            color=ax.lines[-1].get_color())
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)


# --------------------------------------------------------------------------- notebook output


def fmt_seeds(counts: Iterable[int]) -> str:
    """Runs per cell as prose: ``3`` when every cell has three, ``1-3`` when they differ."""
    counts = [int(c) for c in counts]
    if not counts:
        return DASH
    lo, hi = min(counts), max(counts)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def glue_text(key: str, value, digits: int = 1) -> None:
    """Glue ``value`` for ``{glue:text}`` in prose, formatted (numbers with ``digits``
    decimals, missing numbers as ``—``)."""
    from myst_nb import glue

    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = str(value)
    elif isinstance(value, int):
        text = str(value)
    else:
        text = fmt_num(value, digits)
    glue(key, text, display=False)


def glue_value(key: str, value) -> None:
    """Glue ``value`` unformatted for ``{glue:text}`key:.2f``` in prose: numpy numbers as plain
    Python numbers (booleans as text), strings as they are."""
    import numpy as np
    from myst_nb import glue

    if isinstance(value, (bool, np.bool_)):
        value = str(bool(value))
    elif isinstance(value, (int, np.integer)):
        value = int(value)
    elif isinstance(value, (float, np.floating)):
        value = float(value)
    glue(key, value, display=False)


# --------------------------------------------------------------------------- the chapters' helpers

#: LeadFL's alpha in the paper, per dataset (the protocol spec): the prose compares the
#: published LeadFL cell with our runs at this alpha (the tables show every alpha run).
PAPER_ALPHA = {"fmnist": 0.4, "cifar10": 0.25}


def multikrum_cells(docs: list[dict], dataset: str) -> dict[str, list[dict]]:
    """The Multi-Krum runs of ``dataset`` per client defense (LeadFL: those at the paper's alpha)."""
    return {c: [d for d in docs if d["config"]["dataset"] == dataset and d["config"]["aggregator"] == "multikrum"
                and d["config"]["client_defense"] == c
                and (c != "leadfl" or get(d["config"], "leadfl.alpha") == PAPER_ALPHA.get(dataset))]
            for c in CLIENT_ORDER}


def defense_label(doc: dict) -> str:
    """A run of the alpha sweep as read: "no defense", "LeadFL, α = 0.4", or the defense's name."""
    c = doc["config"]
    if c["client_defense"] == "leadfl":
        return f"LeadFL, α = {get(c, 'leadfl.alpha'):g}"
    return "no defense" if c["client_defense"] == "none" else client_name(c["client_defense"])


def case_label(cfg) -> str:
    """A measured case of the attack-effect chapter: its client defense (and LeadFL's variant and
    alpha when they are not the code's at 0.4)."""
    if cfg.client_defense == "leadfl":
        o = cfg.options("leadfl")
        return "LeadFL" if (o.variant, o.alpha) == ("code", 0.4) else f"LeadFL ({o.variant}, alpha {o.alpha:g})"
    return "no client defense" if cfg.client_defense == "none" else client_name(cfg.client_defense)


def half_selected(doc: dict) -> int:
    """Half the clients selected per round, rounded up (at least 1): the burst threshold."""
    return max(1, math.ceil(doc["config"]["clients_per_round"] / 2))


def cell_mean(docs: list[dict], table, column: str, **config) -> float | None:
    """Mean of ``table[column]`` (indexed by run hash) over the runs whose configuration has the
    given values; ``None`` when no run matches."""
    runs = [d["hash"] for d in docs if all(d["config"].get(k) == v for k, v in config.items())]
    return float(table.loc[runs, column].mean()) if runs else None


def kept_share(kept, state: str, lo: int, hi: int) -> float:
    """Mean share (%) of malicious clients among those Multi-Krum kept, over the rounds with
    ``lo`` to ``hi`` malicious clients selected, for the aggregated ``state`` (``kept``: one row
    per run and round with ``state``, ``malicious_selected`` and ``malicious_share_kept``)."""
    if kept.empty:
        return float("nan")
    g = kept[(kept["state"] == state) & kept["malicious_selected"].between(lo, hi)]
    return 100 * g["malicious_share_kept"].mean() if len(g) else float("nan")


def symlog_label(v: float, linthresh: float) -> str:
    """A symlog axis tick: powers of ten as 10^k (with sign), 0 at zero, nothing at
    +-``linthresh`` or between decades."""
    if v == 0:
        return "0"
    e = math.log10(abs(v))
    if abs(v) <= 1.01 * linthresh or abs(e - round(e)) > 1e-6:
        return ""
    return f"${'-' if v < 0 else ''}10^{{{round(e)}}}$"


def fmt_pct(v, digits: int = 1) -> str:
    """``12.3 %`` (``— %`` for a missing number)."""
    return f"{fmt_num(v, digits)} %"


def pfl_variant(over: dict) -> str:
    """What a PoisonedFL-chapter run changes besides the attack and the aggregator, as
    ``key=value`` overrides ("" for the plain setting)."""
    return fmt_overrides({k: v for k, v in over.items() if k not in ("attack", "aggregator")}).replace("base", "")


def round_errors(doc: dict) -> list[float]:
    """Test error (%) of each evaluated round of a run, in order (rounds without a finite
    main-task accuracy skipped)."""
    return [100 - 100 * r["main_acc"] for r in doc["rounds"]
            if r.get("main_acc") is not None and math.isfinite(r["main_acc"])]


def error_last_quarter(doc: dict, share: float = 0.25) -> float:
    """Mean test error (%) over the last ``share`` of a run's evaluated rounds (at least one);
    NaN when no round was evaluated."""
    err = round_errors(doc)
    if not err:
        return float("nan")
    tail = err[-max(1, int(len(err) * share)):]
    return sum(tail) / len(tail)


def pfl_runs(labelled: list, docs: list[dict]):
    """One row per run of the PoisonedFL chapter (``labelled``: ``(cfg, overrides)`` per run,
    as :func:`expand_labelled`): rule, attack, variant, status, final / last-quarter / lowest
    test error (%), and ProDiGy-style weight on the fakes and their share, over the rounds
    with fakes."""
    import pandas as pd

    rows = []
    for (_, over), d in zip(labelled, docs):
        err = round_errors(d)
        fw = pd.DataFrame(fake_weight(d))
        with_fakes = fw[fw["fakes"] > 0] if len(fw) else fw
        rows.append({"doc": d, "hash": d["hash"], "aggregator": d["config"]["aggregator"],
                     "attack": d["config"]["attack"], "variant": pfl_variant(over), "status": d["status"],
                     "variant_label": override_label({k: v for k, v in over.items() if k not in ("attack", "aggregator")},
                                                     empty=""),
                     "error_final": 100 - summary_value(d, "main_acc_final"),
                     "error_last": error_last_quarter(d),
                     "error_min": min(err) if err else float("nan"),
                     "weight_on_fakes": with_fakes["weight_on_fakes"].mean() if len(fw) else float("nan"),
                     "fake_share": with_fakes["fake_share"].mean() if len(fw) else float("nan")})
    return pd.DataFrame(rows)


def pfl_find(runs, aggregator: str, attack: str, variant: str = ""):
    """The row of :func:`pfl_runs` with this rule, attack and variant, or ``None``."""
    m = runs[(runs["aggregator"] == aggregator) & (runs["attack"] == attack) & (runs["variant"] == variant)]
    return m.iloc[0] if len(m) else None


def pfl_variant_error(runs, aggregator: str, attack: str, needle: str) -> float | None:
    """Final test error of the first run of this rule and attack whose variant contains ``needle``."""
    m = runs[(runs["aggregator"] == aggregator) & (runs["attack"] == attack)
             & runs["variant"].str.contains(needle, regex=False)]
    return m.iloc[0]["error_final"] if len(m) else None


def pfl_sweep(labelled: list, docs: list[dict], runs, key: str):
    """ProDiGy under PoisonedFL along one option ``key`` (the plain attack and the runs that
    change only ``key``): value, final test error (%) and weight on the fakes (%), by value."""
    import pandas as pd

    out = []
    for (cfg, over), d in zip(labelled, docs):
        if cfg.aggregator != "prodigy" or cfg.attack != "poisonedfl":
            continue
        extra = {k: v for k, v in over.items() if k not in ("attack", "aggregator")}
        if extra and set(extra) != {key}:
            continue
        r = runs[runs["hash"] == d["hash"]].iloc[0]
        out.append({"value": float(get(d["config"], key)), "error": r["error_final"],
                    "weight": 100 * r["weight_on_fakes"]})
    return pd.DataFrame(out).sort_values("value") if out else pd.DataFrame(columns=["value", "error", "weight"])


# --------------------------------------------------------------------------- book pages: style, tables, figures, files

#: The book's content column at a 1280 px wide window is about 730 CSS px; figures are drawn
#: FIG_WIDTH_IN inches wide at FIG_DPI (so one figure pixel is one CSS pixel, and a 10 pt
#: font reads as 10 pt), and saved for download at twice that resolution.
FIG_DPI = 100
FIG_WIDTH_IN = 7.2
FIG_PAD_IN = 0.05  # white margin around a saved figure
BOOK_STYLE = {
    "figure.figsize": (FIG_WIDTH_IN, 3.6), "figure.dpi": FIG_DPI, "savefig.dpi": 2 * FIG_DPI,
    "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 10, "lines.linewidth": 1.5,
    "svg.hashsalt": "flcore-book",  # reproducible SVG files
}
#: Files offered for download: ``_build/extra`` is Sphinx's ``html_extra_path`` (set up by the
#: :mod:`flcore.book` extension), copied into the root of the HTML build, so the files of page
#: ``<page>`` end up at ``_build/html/downloads/<page>/``.
EXTRA = ROOT / "_build" / "extra"
DOWNLOADS = EXTRA / "downloads"
#: From a chapter page (``book/experiments/<page>.html``) to the downloads folder.
DOWNLOADS_URL = "../../downloads"
_PAGE: dict = {"name": None, "profile": "default", "names": set()}


def use_book_style() -> None:
    """The book's matplotlib defaults (:data:`BOOK_STYLE`)."""
    import matplotlib

    matplotlib.rcParams.update(BOOK_STYLE)


def start_page(name: str, profile: str = "default") -> None:
    """Begin the book page ``name`` (a chapter of ``book/experiments``): the book's matplotlib
    style, and an empty downloads folder for the tables and figures that :func:`show_table`
    and :func:`show_figure` offer on the page."""
    import shutil

    use_book_style()
    folder = DOWNLOADS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _PAGE.update(name=name, profile=profile, names=set())


def regenerate_command(page: str | None = None, profile: str | None = None) -> str:
    """The command that executes the page's notebook again (from the stored runs) and so
    rewrites its tables, figures and files."""
    page = page or _PAGE["name"]
    profile = profile or _PAGE["profile"]
    return f"python -m flcore.book notebooks --profile {profile} --only {page}"


def _file_name(stem: str | None, kind: str) -> str:
    """A unique file stem on the current page: ``stem`` made file-safe, else ``<kind>-<n>``."""
    import re

    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") if stem else ""
    base = base or f"{kind}-{sum(1 for n in _PAGE['names'] if n.startswith(kind + '-')) + 1}"
    name, i = base, 2
    while name in _PAGE["names"]:
        name, i = f"{base}-{i}", i + 1
    _PAGE["names"].add(name)
    return name


def download_links(files: list[tuple[str, str]]):
    """HTML: links to ``(label, file name)`` in the page's downloads folder and the command
    that regenerates them."""
    import html

    from IPython.display import HTML

    page = _PAGE["name"]
    links = " · ".join(f'<a href="{DOWNLOADS_URL}/{page}/{html.escape(f)}" download>{html.escape(label)}</a>'
                       for label, f in files)
    return HTML(f'<p class="flcore-downloads">Download: {links}. Regenerate: '
                f"<code>{html.escape(regenerate_command())}</code></p>")


def show_table(df, caption: str, index: bool = True, name: str | None = None, data=None,
               docs: list[dict] | None = None) -> None:
    """Display a caption (bold, as Markdown) and the table (a DataFrame or a pandas Styler);
    on a page begun with :func:`start_page`, also write the table as CSV (``data`` instead,
    when given: the numbers behind formatted cells), with ``docs`` the per-run summary of those
    runs (:func:`flcore.export.tables`), and show links to the files."""
    import pandas as pd
    from IPython.display import Markdown, display
    from pandas.io.formats.style import Styler

    frame = df.data if isinstance(df, Styler) else df
    display(Markdown(f"**{caption}**"))
    with pd.option_context("display.max_colwidth", None, "display.max_rows", 500):
        if isinstance(df, Styler):
            display(df if index else df.hide(axis="index"))
        else:
            display(df if index else df.style.hide(axis="index"))
    if _PAGE["name"] is None:
        return
    stem = _file_name(name, "table")
    folder = DOWNLOADS / _PAGE["name"]
    (data if data is not None else frame).to_csv(folder / f"{stem}.csv", index=index if data is None else True)
    files = [("table (CSV)", f"{stem}.csv")]
    if docs:
        from flcore.export import tables

        tables(docs)[1].to_csv(folder / f"{stem}-runs.csv", index=False)
        files.append(("its runs (CSV)", f"{stem}-runs.csv"))
    display(download_links(files))


def fit_width(fig, width_in: float = FIG_WIDTH_IN) -> None:
    """Resize ``fig`` so that, drawn with a tight bounding box (legends and labels outside the
    axes included), it is ``width_in`` inches wide; its height scales with its width."""
    w, h = fig.get_size_inches()
    fig.set_size_inches(width_in, h * width_in / w)
    for _ in range(4):
        _tight_layout(fig)
        bbox = fig.get_tightbbox(fig.canvas.get_renderer())
        extra = bbox.width - width_in
        if abs(extra) < 0.02:
            break
        cw, ch = fig.get_size_inches()
        fig.set_size_inches(max(cw - extra, 0.5 * width_in), ch)


def _tight_layout(fig) -> None:
    import warnings

    if fig.get_layout_engine() is not None and type(fig.get_layout_engine()).__name__ != "TightLayoutEngine":
        fig.canvas.draw()  # constrained layout: drawn once
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not compatible with tight_layout": the axes stay as they are
        fig.tight_layout()


def show_figure(fig, name: str | None = None) -> None:
    """Show ``fig`` at the width of the book's column (:func:`fit_width`); on a page begun with
    :func:`start_page`, also save it as PNG and SVG with links to the files. Closes ``fig``
    (instead of ``plt.show()``)."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    for text in [getattr(fig, "_suptitle", None)] + [ax.title for ax in fig.axes]:
        if text is not None and text.get_text():
            text.set_wrap(True)  # a long title wraps instead of widening the figure
    fit_width(fig, FIG_WIDTH_IN - 2 * FIG_PAD_IN)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=2 * FIG_DPI, bbox_inches="tight", pad_inches=FIG_PAD_IN)
    png = buf.getvalue()
    width_px = int.from_bytes(png[16:20], "big") // 2  # the PNG header's width, at FIG_DPI
    display(Image(data=png, format="png", width=width_px))
    if _PAGE["name"] is not None:
        stem = _file_name(name, "figure")
        folder = DOWNLOADS / _PAGE["name"]
        (folder / f"{stem}.png").write_bytes(png)
        fig.savefig(folder / f"{stem}.svg", format="svg", bbox_inches="tight", pad_inches=FIG_PAD_IN,
                    metadata={"Date": None})
        display(download_links([("figure (PNG)", f"{stem}.png"), ("(SVG)", f"{stem}.svg")]))
    plt.close(fig)


def legend_outside(ax, where: str = "right", ncol: int | None = None, handles=None, labels=None, **kw):
    """A legend outside the axes' data area: to the ``right`` of ``ax`` (one column; beyond a
    twin axis' ticks) or ``below`` it (beyond its tick labels and x label; a few columns).
    Empty axes get none."""
    from matplotlib.transforms import ScaledTranslation

    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    twins = [a for a in fig.axes if a.bbox.bounds == ax.bbox.bounds]
    if where == "below":
        gap = (ax.bbox.y0 - min(a.get_tightbbox(renderer).y0 for a in twins)) / fig.dpi + 0.05
        at = ax.transAxes + ScaledTranslation(0, -gap, fig.dpi_scale_trans)
        return ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=at,
                         ncol=ncol or min(3, len(labels)), frameon=False, **kw)
    gap = (max(a.get_tightbbox(renderer).x1 for a in twins) - ax.bbox.x1) / fig.dpi + 0.05
    at = ax.transAxes + ScaledTranslation(gap, 0, fig.dpi_scale_trans)
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1, 1), bbox_transform=at,
                     ncol=ncol or 1, frameon=False, **kw)


def integer_rounds(ax) -> None:
    """Integer ticks on the x axis (rounds)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# ----------------------------------------------------------------------------- the authors' code, run here

#: Per-round records of the LeadFL authors' code run unchanged on a machine like ours
#: (``book/data/authors_code/README.md``): an external anchor, never one of our runs.
AUTHORS_CODE = ROOT / "book" / "data" / "authors_code"
AUTHORS_CODE_LABEL = "authors' code, run here (chaoyitud/LeadFL 06ecc98)"


def authors_code_runs() -> dict[str, "Any"]:
    """The authors'-code runs as per-round frames keyed by client defense (``none``,
    ``leadfl``): columns ``round``, ``n_malicious``, ``main_acc``, ``backdoor_acc`` (%),
    ``krum_kept_malicious``, ``seconds``."""
    import pandas as pd

    out = {}
    for path in sorted(AUTHORS_CODE.glob("authors_code_*_multikrum_*rounds.csv")):
        defense = path.name.split("_")[2]
        out[defense] = pd.read_csv(path)[["round", "n_malicious", "main_acc", "backdoor_acc",
                                          "krum_kept_malicious", "seconds"]]
    return out


def target_retention(backdoor_acc: float, nontarget_acc: float, n_all: int, n_target: int) -> float:
    """Share of the triggered *target-class* test images that the model still puts in the
    target class, from the two stored backdoor metrics: ``backdoor_acc`` counts all
    ``n_all`` triggered images, ``nontarget_acc`` the ``n_all - n_target`` others, so
    ``n_all * backdoor_acc = (n_all - n_target) * nontarget_acc + n_target * retention``.
    A backdoor accuracy below the target class's share ``n_target / n_all`` means the
    trigger itself moves target-class images out of their class (retention < 1)."""
    return (n_all * backdoor_acc - (n_all - n_target) * nontarget_acc) / n_target


def kept_in_tie_rounds(docs: list[dict], authors: dict | None = None, malicious: int = 5,
                       by_setting: bool = False):
    """Malicious models Multi-Krum kept in each round with exactly ``malicious`` malicious
    clients selected: one row per run of ours (client defense, seed; with ``by_setting`` its
    :func:`undefended_cell_setting` first) and per authors'-code run (``authors``:
    :func:`authors_code_runs`), one column per such round."""
    import pandas as pd

    rows = {}
    for d in sorted(docs, key=lambda d: (undefended_cell_setting(d["config"]) if by_setting else "",
                                         CLIENT_ORDER.index(d["config"]["client_defense"]), d["config"]["seed"])):
        label = (f"ours: {undefended_cell_setting(d['config']) + ', ' if by_setting else ''}"
                 f"{client_name(d['config']['client_defense'])}, seed {d['config']['seed']}")
        rows[label] = {k["round"]: k["malicious_kept"] for k in kept_clients(d) if k["malicious_selected"] == malicious}
    for defense, frame in (authors or {}).items():
        f = frame[frame["n_malicious"] == malicious]
        rows[f"authors' code: {client_name(defense)}"] = dict(zip(f["round"], f["krum_kept_malicious"]))
    table = pd.DataFrame(rows).T
    table = table[sorted(table.columns)] if len(table.columns) else table
    table.columns = [f"round {c}" for c in table.columns]
    return table.astype("Int64")


#: Images per class in the full test sets (both are balanced).
TEST_PER_CLASS = {"fmnist": 1000, "cifar10": 1000}


def final_retention(doc: dict) -> float:
    """:func:`target_retention` at the last evaluated round of a run evaluated on the full
    test set (NaN otherwise)."""
    cfg = doc["config"]
    n_all = get(cfg, "eval.test_samples")
    per_class = TEST_PER_CLASS.get(cfg["dataset"])
    last = [r for r in doc["rounds"] if r.get("backdoor_nontarget_acc") is not None]
    if not last or per_class is None or n_all is None or n_all < 10 * per_class:
        return float("nan")
    r = last[-1]
    return target_retention(r["backdoor_acc"], r["backdoor_nontarget_acc"], 10 * per_class, per_class)




def local_steps(cfg: dict) -> tuple[int, int]:
    """(SGD steps per round of a client, steps on which a client defense acts: all but the
    first batch of each epoch) for the protocol's even split."""
    from flcore.data import TRAIN_SIZE

    per_epoch = math.ceil(TRAIN_SIZE[cfg["dataset"]] / cfg["clients"] / cfg["batch_size"])
    return cfg["local_epochs"] * per_epoch, cfg["local_epochs"] * (per_epoch - 1)


def undefended_cell_setting(cfg: dict) -> str:
    """The undefended-cell experiment a run belongs to, as words: its schedule and which part
    of the state Multi-Krum compares."""
    state = "trainable parameters only" if cfg.get("aggregate_state") == "trainable" else "whole state"
    return f"{schedule_name(cfg.get('schedule'))}, {state}"


def undefended_cell_table(docs: list[dict], malicious: int = 5):
    """One row per (setting, client defense): seeds, the three Table I numbers (mean ± sd over
    seeds), round 0's malicious clients selected and kept by Multi-Krum (one number per seed),
    and the mean number kept in the rounds with ``malicious`` malicious clients selected."""
    import pandas as pd

    rows = []
    groups = seed_groups(docs, ["schedule", "aggregate_state", "client_defense"])
    for key, group in sorted(groups.items(), key=lambda kv: (kv[0][0] != "paper", kv[0][1] != "full",
                                                            CLIENT_ORDER.index(kv[0][2]))):
        group = sorted(group, key=lambda d: d["config"]["seed"])
        kept = [kept_clients(d) for d in group]
        r0 = [next((k for k in ks if k["round"] == 0), None) for ks in kept]
        ties = [k["malicious_kept"] for ks in kept for k in ks if k["malicious_selected"] == malicious]
        rows.append({"setting": undefended_cell_setting(group[0]["config"]), "client defense": client_name(key[2]),
                     "seeds": ", ".join(str(d["config"]["seed"]) for d in group),
                     **{name: fmt_cell(*cell_stats(group, metric)) for metric, name in (
                         ("main_acc_final", "main-task acc"), ("backdoor_acc_avg", "backdoor acc avg"),
                         ("backdoor_acc_final", "backdoor acc final"))},
                     "round 0: malicious kept / selected": ", ".join(
                         DASH if k is None else f"{k['malicious_kept']}/{k['malicious_selected']}" for k in r0),
                     f"malicious kept of {malicious} (mean)": fmt_num(sum(ties) / len(ties) if ties else None, 2)})
    return pd.DataFrame(rows)


def lower_from(docs: list[dict], metric: str, defense: str = "leadfl", baseline: str = "none",
               axis: str = "local_epochs") -> tuple[dict, object]:
    """Where ``defense`` lowers ``metric`` below ``baseline`` along ``axis``.

    Returns ``({value: mean(defense) - mean(baseline)}`` for every value of ``axis`` at which
    both have stored runs (means over seeds, in %), the smallest value from which the
    difference is negative at that value and every larger one, or ``None``)."""
    groups = seed_groups(docs, ["client_defense", axis])
    diff = {}
    for (cd, v), group in groups.items():
        if cd == defense and (baseline, v) in groups:
            diff[v] = cell_stats(group, metric)[0] - cell_stats(groups[(baseline, v)], metric)[0]
    start = None
    for v in sorted(diff, reverse=True):
        if not diff[v] < 0:
            break
        start = v
    return dict(sorted(diff.items())), start


def local_steps_table(docs: list[dict], malicious: int = 5):
    """One row per (client defense, local epochs): seeds, steps, the three Table I numbers
    (mean ± sd over seeds) and the mean number of malicious models Multi-Krum kept in the
    rounds with ``malicious`` malicious clients selected."""
    import pandas as pd

    rows = []
    for key, group in sorted(seed_groups(docs, ["client_defense", "local_epochs"]).items(),
                             key=lambda kv: (CLIENT_ORDER.index(kv[0][0]), kv[0][1])):
        steps, acting = local_steps(group[0]["config"])
        kept = [k["malicious_kept"] for d in group for k in kept_clients(d) if k["malicious_selected"] == malicious]
        rows.append({"client defense": client_name(key[0]), "local epochs": key[1], "steps per round": steps,
                     "defense acts on": acting if key[0] != "none" else 0,
                     "seeds": len(group),
                     **{name: fmt_cell(*cell_stats(group, metric)) for metric, name in (
                         ("main_acc_final", "main-task acc"), ("backdoor_acc_avg", "backdoor acc avg"),
                         ("backdoor_acc_final", "backdoor acc final"))},
                     f"malicious kept of {malicious} (mean)": fmt_num(sum(kept) / len(kept) if kept else None, 2)})
    return pd.DataFrame(rows)
