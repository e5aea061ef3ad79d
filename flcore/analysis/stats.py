"""Statistics of stored runs: a metric's mean and sample spread over the seeds of a cell
(:func:`seed_groups`, :func:`cell_stats`, :func:`mean_spread`), means over the rows of a table
(:func:`cell_mean`, :func:`kept_share`), the rounds a backdoor takes to be mitigated after a
burst, per-phase and per-cycle means, Pareto fronts and constrained picks, the test error over
the last rounds, where a defense lowers a metric along a setting, the backdoor's retention of
target-class images, a client's SGD steps per round, and how far a setting's cells lie from the
published ones (:func:`distance_to_published`, :func:`reproduction_verdict`). Accuracies are fractions in [0, 1] in
the documents and percentages (x100) here.
"""
from __future__ import annotations

import math
from typing import Iterable

from flcore.analysis.configs import get
from flcore.analysis.rounds import blocks, round_errors


def mean_spread(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one value) and count of the finite values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan"), 0
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else float("nan")
    return m, sd, n


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


def cell_mean(docs: list[dict], table, column: str, **config) -> float | None:
    """Mean of ``table[column]`` (indexed by run hash) over the runs whose configuration has the
    given values; ``None`` when no run matches."""
    runs = [d["hash"] for d in docs if all(d["config"].get(k) == v for k, v in config.items())]
    return float(table.loc[runs, column].mean()) if runs else None


def paired_cell_means(docs: list[dict], table, column: str, base: dict, other: dict) -> tuple[float | None, float | None, list[int]]:
    """Means of ``table[column]`` (indexed by run hash) over the seeds that both cells have: the
    runs whose configuration has the ``other`` values and those with the ``base`` values,
    restricted to their common seeds (so a difference is not a difference of seeds). Returns
    ``(other mean, base mean, common seeds)``; ``(None, None, [])`` without a common seed. A
    cell with two runs of one seed is ambiguous: ``ValueError``."""
    def by_seed(values):
        runs = [(d["config"]["seed"], d["hash"]) for d in docs
                if all(d["config"].get(k) == v for k, v in values.items())]
        if len({s for s, _ in runs}) < len(runs):
            raise ValueError(f"the cell {values} has several runs of one seed; name more of its settings")
        return dict(runs)

    a, b = by_seed(other), by_seed(base)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None, None, []
    return (float(table.loc[[a[s] for s in seeds], column].mean()),
            float(table.loc[[b[s] for s in seeds], column].mean()), seeds)


def kept_share(kept, state: str, lo: int, hi: int) -> float:
    """Mean share (%) of malicious clients among those Multi-Krum kept, over the rounds with
    ``lo`` to ``hi`` malicious clients selected, for the aggregated ``state`` (``kept``: one row
    per run and round with ``state``, ``malicious_selected`` and ``malicious_share_kept``)."""
    if kept.empty:
        return float("nan")
    g = kept[(kept["state"] == state) & kept["malicious_selected"].between(lo, hi)]
    return 100 * g["malicious_share_kept"].mean() if len(g) else float("nan")


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


def error_last_quarter(doc: dict, share: float = 0.25) -> float:
    """Mean test error (%) over the last ``share`` of a run's evaluated rounds (at least one);
    NaN when no round was evaluated."""
    err = round_errors(doc)
    if not err:
        return float("nan")
    tail = err[-max(1, int(len(err) * share)):]
    return sum(tail) / len(tail)


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


def target_retention(backdoor_acc: float, nontarget_acc: float, n_all: int, n_target: int) -> float:
    """Share of the triggered *target-class* test images that the model still puts in the
    target class, from the two stored backdoor metrics: ``backdoor_acc`` counts all
    ``n_all`` triggered images, ``nontarget_acc`` the ``n_all - n_target`` others, so
    ``n_all * backdoor_acc = (n_all - n_target) * nontarget_acc + n_target * retention``.
    A backdoor accuracy below the target class's share ``n_target / n_all`` means the
    trigger itself moves target-class images out of their class (retention < 1)."""
    return (n_all * backdoor_acc - (n_all - n_target) * nontarget_acc) / n_target


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
    from flcore.sim.data import TRAIN_SIZE

    per_epoch = math.ceil(TRAIN_SIZE[cfg["dataset"]] / cfg["clients"] / cfg["batch_size"])
    return cfg["local_epochs"] * per_epoch, cfg["local_epochs"] * (per_epoch - 1)


BACKDOOR_METRICS = ("backdoor_acc_avg", "backdoor_acc_final")


def distance_to_published(ours: dict[str, float], published: dict[str, float],
                          metrics: Iterable[str] = BACKDOOR_METRICS) -> float:
    """Mean absolute difference, in points, between our numbers and the published ones over
    ``metrics`` (both in %); NaN where a number is missing on either side."""
    diffs = [abs(float(ours[m]) - float(published[m])) if ours.get(m) is not None and published.get(m) is not None
             else float("nan") for m in metrics]
    return float(sum(diffs) / len(diffs)) if diffs and all(math.isfinite(d) for d in diffs) else float("nan")


def reproduction_verdict(distances: dict[str, tuple[float, float]], tolerance: float = 10.0,
                         names: tuple[str, str] = ("the undefended cell", "LeadFL's cell")) -> str:
    """Whether any setting reproduces a pair of published cells: ``distances`` maps a setting's
    name to the :func:`distance_to_published` of its two cells (first the undefended one, then
    LeadFL's). A setting reproduces the pair when both lie within ``tolerance`` points; if none
    does, the sentence names the setting closest to each cell and how far the other cell then lies."""
    complete = {k: v for k, v in distances.items() if all(math.isfinite(x) for x in v)}
    if not complete:
        return "No setting has both cells stored."
    within = [k for k, (a, b) in complete.items() if a <= tolerance and b <= tolerance]
    if within:
        best = min(within, key=lambda k: sum(complete[k]))
        a, b = complete[best]
        return (f"{best} reproduces both published cells to within {tolerance:g} points "
                f"({names[0]} {a:.1f}, {names[1]} {b:.1f} points from them on average).")
    near_a = min(complete, key=lambda k: complete[k][0])
    near_b = min(complete, key=lambda k: complete[k][1])
    a, b = complete[near_a]
    text = (f"No setting reproduces both published cells to within {tolerance:g} points: {names[0]} comes "
            f"closest with {near_a} ({a:.1f} points from the published one on average, {names[1]} then "
            f"{b:.1f} points away)")
    if near_b != near_a:
        a2, b2 = complete[near_b]
        text += f", {names[1]} with {near_b} ({b2:.1f} points, {names[0]} then {a2:.1f})"
    return text + "."


def late_range(docs: list[dict], metric: str = "main_acc", start: float = 0.5) -> tuple[float, float] | None:
    """Lowest and highest ``metric`` (%) over the evaluated rounds from the fraction ``start`` of
    each run on (``0.5``: rounds 40-79 of an 80-round run), pooled over the runs ``docs``: how far
    a run swings once it should have settled. ``None`` without such a round."""
    values = []
    for d in docs:
        n = len(d["rounds"])
        values += [100 * r[metric] for r in d["rounds"][int(start * n):] if r.get(metric) is not None]
    return (min(values), max(values)) if values else None
