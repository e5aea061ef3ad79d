"""The attack-effect chapter's figures (``notebooks/attack_effect.py``), drawn the same way for
each protocol it shows: the attack effect and the backdoor accuracy per round
(:func:`effect_rounds_figure`), the attack effect per layer (:func:`effect_layers_figure`), its
one-round decay in benign rounds (:func:`decay_figure`), each a mean over the seeds with a band
from the lowest to the highest seed, and LeadFL's Hessian estimates against the exact diagonal
(:func:`hessian_figure`). The numbers come from :mod:`flcore.analysis.effect`; a figure is shown
by :func:`flcore.present.page.show_figure`; ``show_*`` shows one part of a protocol's section
(its tables and figures, captioned with the protocol and saved for download under its name).
"""
from __future__ import annotations

from flcore.present.figures import integer_rounds, legend_outside, shade_rounds, symlog_formatter


def _cycle_colors() -> list[str]:
    import matplotlib.pyplot as plt

    return plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _seeds_label(ms) -> str:
    """A measured case and its seeds: ``LeadFL (seeds 0, 1)``."""
    from flcore.analysis.labels import case_label

    seeds = sorted({c.seed for c, _ in ms})
    return f"{case_label(ms[0][0])} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"


def _band(ax, ys: list, color: str, label: str | None = None, style: str = "o-") -> None:
    """The mean over the seeds' series ``ys`` per round, with a min-max band when there are
    several."""
    import numpy as np

    from flcore.analysis.effect import seed_band

    m, lo, hi = seed_band(ys)
    x = np.arange(len(m))
    ax.plot(x, m, style, ms=3, color=color, label=label)
    if len(ys) > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)


def effect_rounds_figure(measured, title: str):
    """The attack effect ‖W_t - W_t^shadow‖ (top, log scale) and the backdoor accuracy (bottom)
    per round, one line per client defense (``measured``: ``[(config, document)]``): the mean
    over its seeds with a band from the lowest to the highest seed; burst rounds shaded."""
    import matplotlib.pyplot as plt

    from flcore.analysis import effect

    colors = _cycle_colors()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    if measured:
        for ax in (ax1, ax2):
            shade_rounds(ax, effect.burst_rounds(measured[0][1]), color="tab:red", alpha=0.12,
                         label="burst round" if ax is ax1 else None)
    for k, ms in enumerate(effect.by_case(measured).values()):
        col = colors[k % len(colors)]
        _band(ax1, [effect.round_values(d, "delta_norm") for _, d in ms], col, _seeds_label(ms))
        _band(ax2, [effect.round_values(d, "backdoor_acc") for _, d in ms], col)
    ax1.set_yscale("log")
    ax1.set_ylabel(r"$\|W_t - W_t^{\mathrm{shadow}}\|_2$")
    ax1.set_title(title)
    legend_outside(ax1)
    ax2.set_ylabel("backdoor accuracy")
    ax2.set_xlabel("round")
    ax2.set_ylim(-0.02, 1.02)
    integer_rounds(ax2)
    return fig


def effect_layers_figure(measured, groups: dict[str, list[str]], title: str):
    """Per client defense (one panel each), the attack effect per layer and round (log scale;
    ``groups``: :func:`flcore.experiments.attack_effect.layer_groups`), the mean over the seeds
    with a min-max band; burst rounds shaded."""
    import matplotlib.pyplot as plt

    from flcore.analysis import effect

    colors = _cycle_colors()
    cases = list(effect.by_case(measured).values())
    fig, axes = plt.subplots(1, max(1, len(cases)), figsize=(4 * max(1, len(cases)), 3.4), sharey=True,
                             squeeze=False)
    for ax, ms in zip(axes[0], cases):
        shade_rounds(ax, effect.burst_rounds(ms[0][1]), color="tab:red", alpha=0.12)
        norms = [effect.group_norms(d, groups) for _, d in ms]
        for k, g in enumerate(groups):
            _band(ax, [n[g] for n in norms], colors[k % len(colors)], g, style="-")
        ax.set_yscale("log")
        ax.set_title(_seeds_label(ms), fontsize=10)
        ax.set_xlabel("round")
        integer_rounds(ax)
    axes[0][0].set_ylabel(r"$\|\delta_t\|$ per layer")
    legend_outside(axes[0][-1])
    fig.suptitle(title)
    return fig


def decay_figure(measured, title: str):
    """The one-round factor ‖δ_t‖ / ‖δ_{t-1}‖ of every benign round (left, per round, every
    seed) and its histogram (right, pooled over the seeds), one colour per client defense."""
    import matplotlib.pyplot as plt
    import numpy as np

    from flcore.analysis import effect

    colors = _cycle_colors()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    cases = list(effect.by_case(measured).values())
    pooled = [np.concatenate([effect.round_values(d, "decay") for _, d in ms]) for ms in cases]
    finite = np.concatenate(pooled) if pooled else np.zeros(0)
    finite = finite[np.isfinite(finite)]
    if len(finite):
        lo, hi = float(finite.min()), float(finite.max())
        bins = np.linspace(lo - 0.05 * (hi - lo) - 1e-3, hi + 0.05 * (hi - lo) + 1e-3, 25)
    if measured:
        shade_rounds(ax1, effect.burst_rounds(measured[0][1]), color="tab:red", alpha=0.12)
    markers = "os^Dv"
    for k, (ms, values) in enumerate(zip(cases, pooled)):
        col = colors[k % len(colors)]
        for j, (c, d) in enumerate(ms):
            dec = effect.round_values(d, "decay")
            ok = np.isfinite(dec)
            ax1.plot(np.arange(len(dec))[ok], dec[ok], markers[j % len(markers)], ms=4, color=col, alpha=0.7,
                     label=_seeds_label(ms) if j == 0 else None)
        values = values[np.isfinite(values)]
        if len(values):
            ax2.hist(values, bins=bins, histtype="step", color=col, lw=1.5, label=_seeds_label(ms))
    ax1.axhline(1, color="k", lw=0.8)
    ax2.axvline(1, color="k", lw=0.8)
    ax1.set_xlabel("round")
    integer_rounds(ax1)
    ax1.set_ylabel(r"$\|\delta_t\| / \|\delta_{t-1}\|$ (benign rounds)")
    ax2.set_xlabel("one-round decay factor")
    ax2.set_ylabel("benign rounds")
    legend_outside(ax2)
    fig.suptitle(title)
    return fig


def hessian_figure(hdoc: dict, title: str):
    """Each estimate of a Hessian comparison against the exact diagonal, and the diagonal part
    H_jj ΔW_j against the exact (H ΔW)_j, pooled over the points (symmetric log axes, one
    colour per round of the points)."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import SymmetricalLogLocator

    from flcore.experiments.attack_effect import APPROXIMATIONS, ESTIMATE_NAMES

    colors = _cycle_colors()
    pts = hdoc["points"]
    exact = np.concatenate([np.asarray(p["exact"], dtype=float) for p in pts])
    rounds_of = np.concatenate([[p["round"]] * len(p["exact"]) for p in pts])
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
    for ax, name in zip(axes.flat, list(APPROXIMATIONS) + ["diag_dw"]):
        if name == "diag_dw":
            x = np.concatenate([np.asarray(p["hdw"], dtype=float) for p in pts])
            y = np.concatenate([np.asarray(p["diag_dw"], dtype=float) for p in pts])
            xl, yl = r"exact $(H\Delta W_i)_j$", r"diagonal part $H_{jj}\Delta W_{i,j}$"
        else:
            x, y = exact, np.concatenate([np.asarray(p[name], dtype=float) for p in pts])
            xl, yl = r"exact $H_{jj}$", ESTIMATE_NAMES[name]
        ok = np.isfinite(x) & np.isfinite(y)
        for k, r in enumerate(sorted(set(rounds_of.tolist()))):
            sel = ok & (rounds_of == r)
            ax.scatter(x[sel], y[sel], s=5, alpha=0.5, color=colors[k % len(colors)], label=f"after round {r}")
        lx = float(np.quantile(np.abs(x[ok][x[ok] != 0]), 0.1)) if (x[ok] != 0).any() else 1.0
        ly = float(np.quantile(np.abs(y[ok][y[ok] != 0]), 0.1)) if (y[ok] != 0).any() else 1.0
        ax.set_xscale("symlog", linthresh=lx)
        ax.set_yscale("symlog", linthresh=ly)
        for axis, lt in ((ax.xaxis, lx), (ax.yaxis, ly)):  # no labels at +-linthresh, next to 0
            axis.set_major_formatter(symlog_formatter(lt))
        # every other decade on the x axis, whose labels would otherwise overlap
        ax.xaxis.set_major_locator(SymmetricalLogLocator(base=100, linthresh=lx))
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel(xl, fontsize=9)
        ax.set_ylabel(yl, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", labelrotation=90)
    legend_outside(axes.flat[2], markerscale=2)
    fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- one protocol's part of the page


def _fmt3(t):
    return t.style.format(precision=3)


def show_cases(measured, protocol: str, name: str) -> None:
    """The table of the measured cases (:func:`flcore.analysis.effect.cases_table`), captioned
    with ``protocol`` and saved as ``<name>-cases``, with the runs' summary."""
    from flcore.analysis import effect
    from flcore.present import page

    t = effect.cases_table(measured)
    page.show_table(_fmt3(t), f"{protocol}: the measured cases per seed, accuracies (%), the attack effect ‖δ‖ "
                    "and its one-round decay in benign rounds", name=f"{name}-cases", data=t,
                    docs=[d for _, d in measured])


def show_rounds(measured, protocol: str, name: str) -> None:
    """:func:`effect_rounds_figure`, saved as ``<name>-attack-effect-per-round``."""
    from flcore.present import page

    page.show_figure(effect_rounds_figure(measured, f"{protocol}: attack effect on the trainable parameters "
                                                    "(log scale; mean over the seeds, band: lowest to highest)"),
                     f"{name}-attack-effect-per-round")


def show_layers(measured, groups: dict[str, list[str]], protocol: str, name: str) -> None:
    """:func:`effect_layers_figure` and each layer's share of ‖δ‖² in the last round
    (:func:`flcore.analysis.effect.layer_share_table`), saved as ``<name>-attack-effect-per-layer``
    and ``<name>-layer-share``."""
    from flcore.analysis import effect
    from flcore.present import page

    page.show_figure(effect_layers_figure(measured, groups, f"{protocol}: attack effect per layer (mean over the "
                                                            "seeds)"), f"{name}-attack-effect-per-layer")
    share = effect.layer_share_table(measured, groups)
    page.show_table(share.style.format("{:.1%}"), f"{protocol}: share of ‖δ‖² per layer in the last round "
                    "(mean over the seeds)", name=f"{name}-layer-share", data=share)


def show_decay(measured, protocol: str, name: str) -> None:
    """:func:`decay_figure` and the benign stretches after each burst
    (:func:`flcore.analysis.effect.stretch_table`), saved as ``<name>-decay-factors`` and
    ``<name>-stretches``."""
    from flcore.analysis import effect
    from flcore.present import page

    page.show_figure(decay_figure(measured, f"{protocol}: one-round factor of the attack effect in benign "
                                            "rounds"), f"{name}-decay-factors")
    t = effect.stretch_table(measured)
    if len(t):
        page.show_table(_fmt3(t), f"{protocol}: benign stretches after each burst", name=f"{name}-stretches", data=t)


def show_hessian(hdoc: dict, protocol: str, name: str) -> None:
    """A Hessian comparison: the estimates against the exact diagonal and the gradient
    differences against the exact H ΔW (pooled over the points), :func:`hessian_figure`, and
    the Spearman correlation per point; saved as ``<name>-vs-exact-diagonal``,
    ``<name>-vs-exact-hdw``, ``<name>-estimates-vs-exact`` and ``<name>-spearman-per-point``."""
    from flcore.analysis import effect
    from flcore.experiments.attack_effect import metrics_table
    from flcore.present import page

    hs = hdoc["summary"]["hessian"]
    for block, caption, stem in (("vs_exact", "the estimates against the exact Hessian diagonal (pooled over the "
                                              "points and coordinates)", "vs-exact-diagonal"),
                                 ("vs_hdw", "gradient differences against the exact H ΔW (what a gradient "
                                            "difference estimates)", "vs-exact-hdw")):
        t = metrics_table(hs[block])
        page.show_table(t.style.format({c: "{:.3g}" for c in t.columns if c != "n"}), f"{protocol}: {caption}",
                        name=f"{name}-{stem}", data=t)
    page.show_figure(hessian_figure(hdoc, f"{protocol}: estimates against the exact values (symmetric log axes), "
                                          "pooled over the points"), f"{name}-estimates-vs-exact")
    pp = effect.per_point_table(hdoc)
    page.show_table(pp.style.format("{:.3f}"), f"{protocol}: Spearman correlation with the exact diagonal, per "
                    "point", name=f"{name}-spearman-per-point", data=pp)
