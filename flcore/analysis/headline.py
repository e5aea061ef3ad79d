"""The headline metrics of stored runs as a small text table: what ``flcore run`` and
``flcore sweep`` print.

One line per run: a short label of what varies between the runs (the configuration keys
with more than one value, e.g. ``schedule=random client_defense=leadfl``; a run's hash when
nothing varies), its status and, in percent rounded to one decimal, the final main-task
accuracy, the average and final backdoor accuracy (runs with the backdoor attack) and the
final test error, 100 - main-task accuracy (runs with the PoisonedFL attack, whose papers
report it). A value a run does not have is ``—``.
"""
from __future__ import annotations

from typing import Callable

IGNORED = ("experiment", "profile")
DASH = "—"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def pct(value) -> str:
    """A fraction in [0, 1] as a percentage with one decimal, ``—`` for none."""
    return DASH if value is None else f"{100 * value:.1f}"


def varying_keys(docs: list[dict]) -> list[str]:
    """Dotted configuration keys with more than one value among the runs (a key a run lacks,
    such as the options of a method it does not use, counts as no value), in first-seen order."""
    flats = [_flat(d.get("config") or {}) for d in docs]
    keys = list(dict.fromkeys(k for f in flats for k in f if k.split(".")[0] not in IGNORED))
    return [k for k in keys if len({repr(f[k]) for f in flats if k in f}) > 1]


def label(doc: dict, keys: list[str]) -> str:
    """``key=value`` of ``keys`` that the run has, separated by spaces; its hash when none."""
    flat = _flat(doc.get("config") or {})
    return " ".join(f"{k}={flat[k]}" for k in keys if k in flat) or str(doc.get("hash", "run"))


def columns(docs: list[dict]) -> list[tuple[str, Callable[[dict], str]]]:
    """(header, value of a run) of the columns the runs need."""
    attacks = {(d.get("config") or {}).get("attack") for d in docs}

    def summary(d):
        return d.get("summary") or {}

    cols = [("status", lambda d: str(d.get("status") or summary(d).get("status") or DASH)),
            ("main acc final %", lambda d: pct(summary(d).get("main_acc_final")))]
    if "backdoor" in attacks or not attacks - {None}:  # a document without a configuration: every column
        cols += [("backdoor acc avg %", lambda d: pct(summary(d).get("backdoor_acc_avg"))),
                 ("backdoor acc final %", lambda d: pct(summary(d).get("backdoor_acc_final")))]
    if "poisonedfl" in attacks:
        def error(d):
            acc = summary(d).get("main_acc_final")
            return pct(None if acc is None else 1 - acc)

        cols.append(("test error final %", error))
    return cols


def table(docs: list[dict]) -> str:
    """The runs' headline metrics, one line per run under a header line, columns aligned."""
    keys = varying_keys(docs)
    cols = columns(docs)
    rows = [["run"] + [h for h, _ in cols]]
    rows += [[label(d, keys)] + [f(d) for _, f in cols] for d in docs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:  # labels and status left-aligned, numbers right-aligned
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])] + [c.rjust(w) for c, w in zip(r[2:], widths[2:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
