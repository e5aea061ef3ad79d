"""Matplotlib for the book: its style and figure width (:data:`BOOK_STYLE`, :func:`use_book_style`,
:func:`fit_width`), legends outside the axes, integer round ticks and symlog tick labels, and
the chapters' drawings: mean lines over seeds with their band (:func:`plot_lines`), shaded
burst rounds, the malicious clients per round as bars. A figure is shown (and saved for
download) by :func:`flcore.present.page.show_figure`.
"""
from __future__ import annotations

import math
from typing import Iterable

from flcore.analysis.rounds import blocks, malicious_counts
from flcore.analysis.tables import order_key
from flcore.core.names import CLIENT_ORDER


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


def use_book_style() -> None:
    """The book's matplotlib defaults (:data:`BOOK_STYLE`)."""
    import matplotlib

    matplotlib.rcParams.update(BOOK_STYLE)


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


def symlog_label(v: float, linthresh: float) -> str:
    """A symlog axis tick: powers of ten as 10^k (with sign), 0 at zero, nothing at
    +-``linthresh`` or between decades."""
    if v == 0:
        return "0"
    e = math.log10(abs(v))
    if abs(v) <= 1.01 * linthresh or abs(e - round(e)) > 1e-6:
        return ""
    return f"${'-' if v < 0 else ''}10^{{{round(e)}}}$"


def symlog_formatter(linthresh: float):
    """A matplotlib tick formatter that labels a symlog axis of ``linthresh`` with
    :func:`symlog_label`."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: symlog_label(v, linthresh))


def round_ticks(window: int, rounds: int) -> list[int]:
    """Ticks of a round axis that is linear up to ``window`` and logarithmic after it: 0, the
    window, the powers of ten between the window and the last round, and the last round
    (``rounds - 1``); a power of ten within a factor 3 of the window or the last round is
    left out (its label would overlap theirs)."""
    last = rounds - 1
    ticks = [0] + ([window] if 0 < window < last else [])
    k = 10
    while k < last:
        if k > 3 * window and 3 * k < last:
            ticks.append(k)
        k *= 10
    return ticks + [last]


def symlog_rounds(ax, window: int, rounds: int) -> None:
    """A round axis linear over the first ``window`` rounds and logarithmic after them, with
    the ticks of :func:`round_ticks` labelled as plain round numbers."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ax.set_xscale("symlog", linthresh=window)
    ax.set_xlim(0, rounds - 1)
    ax.xaxis.set_major_locator(FixedLocator(round_ticks(window, rounds)))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.xaxis.set_major_formatter(FuncFormatter(_round_label))


def _round_label(v: float, _pos) -> str:
    return f"{int(round(v)):,}"


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


def schedule_rounds_figure(docs: list[dict], frame, bursts: dict, title: str):
    """The selection chapter's figure: main-task (left) and backdoor accuracy (right) per round,
    one row per schedule, one line per client defense (mean over seeds, band over them), the
    burst rounds shaded (``bursts``: run hash -> rounds) and the malicious clients as bars."""
    import matplotlib.pyplot as plt

    from flcore.core.names import CLIENT_NAMES, SCHEDULE_NAMES

    scheds = order_key([d["config"]["schedule"] for d in docs], ["periodic", "random", "paper", "legacy"])
    fig, axes = plt.subplots(len(scheds), 2, figsize=(7.2, 2.8 * len(scheds)), squeeze=False, sharex=True)
    for i, s in enumerate(scheds):
        f = frame[frame["schedule"] == s]
        first = next(d for d in docs if d["config"]["schedule"] == s)
        for j, (value, label) in enumerate([("main_acc", "main-task accuracy (%)"),
                                            ("backdoor_acc", "backdoor accuracy (%)")]):
            ax = axes[i, j]
            shade_rounds(ax, bursts[first["hash"]])
            plot_lines(ax, f, "client_defense", value, names=CLIENT_NAMES)
            ax.set_ylabel(label)
            ax.set_title(f"{SCHEDULE_NAMES.get(s, s)}: {label.split(' (')[0]}")
            if value == "backdoor_acc":
                malicious_bars(ax, first)
    legend_outside(axes[-1, 0], "below", ncol=4)
    fig.suptitle(title)
    return fig


def setting_styles(order: list[str]) -> dict[str, dict]:
    """The alpha chapter's line styles: no defense dashed black, LeadFL's settings (in ``order``)
    along the viridis colour map."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    leads = [o for o in order if o.startswith("LeadFL")]
    styles = {"no defense": {"color": "k", "ls": "--"}}
    styles.update({o: {"color": cmap(i / max(1, len(leads) - 1) * 0.9)} for i, o in enumerate(leads)})
    return styles


def setting_rounds_figure(docs: list[dict], frame, title: str):
    """The alpha chapter's figure: backdoor (top) and main-task accuracy (bottom) per round, one
    line per setting (``frame["setting"]``; mean over seeds, band over them), the burst rounds of
    the first run shaded."""
    import matplotlib.pyplot as plt

    from flcore.analysis.labels import defense_label_order
    from flcore.analysis.rounds import burst_set

    order = defense_label_order(frame["setting"].unique())
    styles = setting_styles(order)
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 5.4), sharex=True)
    for ax, (value, ylabel) in zip(axes, [("backdoor_acc", "backdoor accuracy (%)"),
                                          ("main_acc", "main-task accuracy (%)")]):
        shade_rounds(ax, burst_set(docs[0]), label="burst rounds")
        plot_lines(ax, frame, "setting", value, order=order, styles=styles)
        ax.set_ylabel(ylabel)
    low = frame["main_acc"].min() if frame["main_acc"].notna().any() else float("nan")
    axes[1].set_ylim(max(0.0, low - 5) if math.isfinite(low) else 0.0, 100)
    legend_outside(axes[0])
    fig.suptitle(title)
    return fig


def trade_off_figure(trade, choice: dict, max_main_loss: float, title: str):
    """The alpha chapter's trade-off: per setting of a :func:`flcore.analysis.tables.trade_frame`
    its average backdoor accuracy against its final main-task accuracy (means over the seeds,
    bars one sd where there are several), the Pareto front, the rule's main-task floor
    (``choice``: :func:`flcore.analysis.tables.alpha_choice`) and its pick circled in red.
    Returns ``(figure, indices of the front)``."""
    import matplotlib.pyplot as plt

    from flcore.analysis.stats import pareto_front

    styles = setting_styles(list(trade["setting"]))
    points = list(zip(trade["backdoor avg"], trade["main final"]))
    front = pareto_front(points)
    pick = choice["pick"]
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for i, (_, r) in enumerate(trade.iterrows()):
        several = r["seeds"] > 1
        ax.errorbar(r["backdoor avg"], r["main final"], xerr=r["backdoor avg sd"] if several else None,
                    yerr=r["main final sd"] if several else None, fmt="o",
                    color=styles.get(r["setting"], {}).get("color", "C0"),
                    ms=8 if i == pick else 6, mec="r" if i == pick else None, mew=2 if i == pick else 0)
        ax.annotate(r["setting"].replace("LeadFL, ", ""), (r["backdoor avg"], r["main final"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post", color="0.4", lw=1,
            label="Pareto front")
    ax.axhline(choice["reference_main"] - max_main_loss, color="r", ls=":", lw=1,
               label=f"main-task floor of the rule ({choice['reference_name'].split(',')[0]} - {max_main_loss:g})")
    ax.set_xlabel("backdoor accuracy, average over rounds (%)")
    ax.set_ylabel("main-task accuracy, final (%)")
    ax.grid(alpha=0.3)
    legend_outside(ax, "below", ncol=1)
    ax.set_title(title)
    return fig, front


def cycle_profile_figure(docs: list[dict], frame, title: str):
    """The selection chapter's recovery figure: the backdoor accuracy of the periodic runs of
    ``docs`` by position in the cycle, averaged over the cycles and the runs of each client
    defense, the burst positions shaded; None without a periodic run."""
    import matplotlib.pyplot as plt

    from flcore.analysis.configs import get
    from flcore.analysis.stats import cycle_profile
    from flcore.core.names import client_name

    per = [d for d in docs if d["config"]["schedule"] == "periodic"]
    if not per:
        return None
    cycle = get(per[0]["config"], "periodic.cycle", 10)
    burst = get(per[0]["config"], "periodic.burst", 2)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.axvspan(-0.5, burst - 0.5, color="0.85", lw=0, label="burst positions")
    prof = cycle_profile(frame[frame["run"].isin([d["hash"] for d in per])], cycle)
    for c in order_key([d["config"]["client_defense"] for d in per], CLIENT_ORDER):
        runs = [d["hash"] for d in per if d["config"]["client_defense"] == c]
        ax.plot(prof.columns, prof.loc[runs].mean(axis=0).values, marker="o", label=client_name(c))
    ax.set_xlabel("position in the cycle (round mod cycle length)")
    ax.set_ylabel("backdoor accuracy (%)")
    ax.set_xticks(range(cycle))
    ax.grid(alpha=0.3)
    legend_outside(ax)
    ax.set_title(title)
    return fig
