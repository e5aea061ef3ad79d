"""Numbers as text for table cells and prose: ``mean ± sd`` over seeds (:func:`fmt_cell`), a number
or ``—`` (:func:`fmt_num`), a percentage (:func:`fmt_pct`), a percentage cell with its seeds (:func:`fmt_measure`), the runs per cell (:func:`fmt_seeds`), the seeds of a cell (:func:`fmt_seed_list`), a count
(:func:`fmt_count`), how one number stands to another in prose (:func:`relation`).
"""
from __future__ import annotations

import math
from typing import Iterable

from flcore.core.names import DASH


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


def fmt_pct(v, digits: int = 1, missing: str | None = None) -> str:
    """``12.3 %``; for a missing number ``— %``, or ``missing`` where given (e.g. ``not stored``)."""
    text = fmt_num(v, digits)
    return missing if text == DASH and missing is not None else f"{text} %"


def seeds_prose(seeds: Iterable[int]) -> str:
    """Seeds in prose, ascending: ``seed 0``, ``seeds 0, 1, 2`` (empty for none)."""
    seeds = sorted(seeds)
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds else ""


def fmt_measure(mean: float, spread: float, n: int, seeds: Iterable[int] = (), digits: int = 1,
                unit: str = " %") -> str:
    """A cell in prose with its seeds: ``96.4 ± 0.3 % (seeds 0, 1)``, ``80.9 % (seed 0)``, or
    ``not stored`` where no run gives a value (never a bare ``— %``); ``unit=""`` for a plain
    number (``1.234 ± 0.100 (seeds 0, 1)``)."""
    text = fmt_cell(mean, spread, n, digits)
    if text == DASH:
        return "not stored"
    seeds = seeds_prose(seeds)
    return f"{text}{unit} ({seeds})" if seeds else text + unit


def fmt_seeds(counts: Iterable[int]) -> str:
    """Runs per cell as prose: ``3`` when every cell has three, ``1-3`` when they differ."""
    counts = [int(c) for c in counts]
    if not counts:
        return DASH
    lo, hi = min(counts), max(counts)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def fmt_seed_list(docs: Iterable[dict]) -> str:
    """The seeds of stored runs, ascending: ``0, 1, 2`` (``—`` for none)."""
    return ", ".join(str(s) for s in sorted(d["config"]["seed"] for d in docs)) or DASH


def fmt_count(v) -> str:
    """A whole number, or ``—`` where it is missing (``None`` or NaN)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return DASH
    return DASH if not math.isfinite(v) else str(int(v))


def relation(a, b) -> str:
    """How ``a`` stands to ``b`` in prose: ``lower than``, ``higher than`` or ``equal to`` (after
    rounding both to the one decimal they are shown with), ``—`` when either is missing."""
    try:
        a, b = round(float(a), 1), round(float(b), 1)
    except (TypeError, ValueError):
        return DASH
    if not (math.isfinite(a) and math.isfinite(b)):
        return DASH
    return "lower than" if a < b else "higher than" if a > b else "equal to"
