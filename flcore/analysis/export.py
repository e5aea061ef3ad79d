"""Stored runs as two tables: ``flcore export [--experiment E] [--format csv|parquet] [--out DIR]``.

``rounds`` (tidy): one row per run x round. Columns: the run's identity (``hash``,
``experiment``, ``seed``, ``status``), its configuration flattened with dotted names under
``config.`` (``config.aggregator``, ``config.leadfl.alpha``, ``config.eval.test_samples``),
then ``round`` and the per-round metrics: ``main_acc``, ``backdoor_acc``,
``backdoor_nontarget_acc`` (fractions in [0, 1] as stored; empty where the round was not
evaluated), ``n_selected``, ``n_malicious``, ``fake_clients``, ``lr``, ``wall_s`` and any
further number an experiment records per round (e.g. ``update_norm``).

``runs`` (summary): one row per run. The identity and configuration columns, the numbers of
the run's summary (``main_acc_final``, ``backdoor_acc_avg``, ``backdoor_acc_final``, ...)
and a few provenance fields under ``provenance.`` (device, torch, threads, data label,
commit, wall time).

The functions here are pure (stored documents in, rows out) except :func:`export` and
:func:`write_tables`; :func:`flcore.analysis.rounds.rounds_frame` builds on :func:`round_record`.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

from flcore.core.errors import UserError

FORMATS = ("csv", "parquet")
IDENTITY = ("hash", "experiment", "seed", "status")
ROUND_METRICS = ("main_acc", "backdoor_acc", "backdoor_nontarget_acc", "n_selected", "n_malicious",
                 "fake_clients", "lr", "wall_s")
ACCURACIES = ("main_acc", "backdoor_acc", "backdoor_nontarget_acc")
PROVENANCE = ("data_label", "device", "gpu", "torch", "threads", "git_commit", "wall_s")
CONFIG_PREFIX = "config."
PROVENANCE_PREFIX = "provenance."


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _cell(v):
    """A value as a table cell: scalars as they are, lists and dicts as JSON text."""
    return v if _is_scalar(v) else json.dumps(v, sort_keys=True)


def flatten_config(cfg: dict, prefix: str = CONFIG_PREFIX) -> dict:
    """``{"leadfl": {"alpha": 0.2}, "seed": 1}`` -> ``{"config.leadfl.alpha": 0.2}``.

    Nested sections become dotted names under ``prefix``; ``experiment`` and ``seed`` are
    left out (they are identity columns of their own).
    """
    out = {}

    def walk(d: dict, path: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{path}{k}.")
            elif not (path == "" and k in ("experiment", "seed")):
                out[f"{prefix}{path}{k}"] = _cell(v)

    walk(cfg, "")
    return out


def identity(doc: dict) -> dict:
    """``hash``, ``experiment``, ``seed``, ``status`` of a stored run."""
    cfg = doc.get("config", {})
    return {"hash": doc.get("hash"), "experiment": cfg.get("experiment"), "seed": cfg.get("seed", 0),
            "status": doc.get("status") or doc.get("summary", {}).get("status")}


def round_record(r: dict) -> dict:
    """The metrics of one stored round: accuracies as stored (NaN where not evaluated), the
    numbers of selected and malicious clients, and every other scalar the round records."""
    out = {"round": r["round"]}
    for k in ACCURACIES:
        v = r.get(k)
        out[k] = math.nan if v is None else float(v)
    out.update({"n_selected": len(r.get("selected") or []), "n_malicious": len(r.get("malicious") or []),
                "fake_clients": r.get("fake_clients") or 0, "lr": r.get("lr"), "wall_s": r.get("wall_s")})
    for k, v in r.items():  # further per-round numbers of some experiments (update_norm, ...)
        if k not in out and k not in ("selected", "malicious") and _is_scalar(v):
            out[k] = v
    return out


def run_rows(doc: dict) -> list[dict]:
    """The rows of one run in the tidy table: identity, configuration, one row per round."""
    head = {**identity(doc), **flatten_config(doc.get("config", {}))}
    return [{**head, **round_record(r)} for r in doc.get("rounds", [])]


def summary_row(doc: dict) -> dict:
    """The row of one run in the summary table: identity, configuration, the summary's numbers
    (its nested, experiment-specific sections stay in the stored document), provenance."""
    summary = {k: v for k, v in doc.get("summary", {}).items() if _is_scalar(v) and k != "status"}
    prov = doc.get("provenance", {})
    provenance = {f"{PROVENANCE_PREFIX}{k}": _cell(prov[k]) for k in PROVENANCE if k in prov}
    return {**identity(doc), **flatten_config(doc.get("config", {})), **summary, **provenance}


def _columns(rows: list[dict], first: tuple, middle: tuple = ()) -> list[str]:
    """``first``, then the configuration columns (sorted), then ``middle``, then the rest in
    order of appearance."""
    seen = list(dict.fromkeys(k for r in rows for k in r))
    config = sorted(k for k in seen if k.startswith(CONFIG_PREFIX))
    fixed = [*first, *config, *middle]
    return fixed + [k for k in seen if k not in fixed]


def tables(docs: list[dict]):
    """``(rounds, runs)``: the tidy per-round table and the per-run summary, as DataFrames."""
    import pandas as pd

    rounds = [row for d in docs for row in run_rows(d)]
    runs = [summary_row(d) for d in docs]
    return (pd.DataFrame(rounds, columns=_columns(rounds, IDENTITY, ("round", *ROUND_METRICS))),
            pd.DataFrame(runs, columns=_columns(runs, IDENTITY)))


def check_format(fmt: str) -> None:
    """An unknown format, or parquet without an engine, is a user error (exit 2)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet" and not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
        raise UserError("--format parquet needs pyarrow, which is not installed "
                        "(pip install pyarrow); or use --format csv")


def write_tables(rounds, runs, out: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``rounds.<fmt>`` and ``runs.<fmt>`` into the folder ``out`` (created)."""
    check_format(fmt)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in (("rounds", rounds), ("runs", runs)):
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        paths.append(path)
    return paths


def stored_docs(experiment: str | None = None) -> list[dict]:
    """Every valid stored run (of one experiment), in store order."""
    from flcore.storage import store

    docs = [doc for _, doc in store.iter_runs(experiment)]
    if not docs:
        known = sorted({str(d["config"].get("experiment")) for _, d in store.iter_runs()}) if experiment else []
        what = f"of experiment {experiment!r} " if experiment else ""
        raise UserError(f"no stored runs {what}in {store.results_dir()}"
                        + (f"; experiments with stored runs: {', '.join(known)}" if known else ""))
    return docs


def export(experiment: str | None = None, fmt: str = "csv", out: str | Path = "export") -> tuple[list[Path], int, int]:
    """Write the two tables of the stored runs (of one experiment); returns the paths written,
    the number of runs and the number of rows of the tidy table."""
    check_format(fmt)  # before reading the store
    docs = stored_docs(experiment)
    rounds, runs = tables(docs)
    return write_tables(rounds, runs, out, fmt), len(runs), len(rounds)
