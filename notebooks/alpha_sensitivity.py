# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sensitivity to the regularisation strength
#
# LeadFL's regulariser is weighted by $\alpha$, and the paper gives no rule for choosing it
# {cite:p}`zhu2023leadfl`. The seminar report varied it under the periodic burst schedule
# with the reference "Bulyan" on the server and found that a weaker regulariser recovers
# more slowly from a burst and a stronger one costs main-task accuracy now and then
# {cite:p}`guthmann2026seed`. This chapter repeats that sweep on a wider grid that includes
# $\alpha = 0$ (the released code's doubled, clipped cross-entropy step without the
# regulariser, {ref}`deriv-leadfl-code`), and replaces the choice by eye with a stated rule
# applied to the trade-off between average backdoor accuracy and final main-task accuracy.
#
# The parameters below are those of `params/alpha_sensitivity.yaml`; `max_main_loss` is
# the main-task accuracy (in points) that the chosen $\alpha$ may lose against no defense.

# %% tags=["parameters"]
profile = 'default'
experiment = 'alpha_sensitivity'
description = 'LeadFL alpha in {0, 0.2, 0.4, 0.6, 0.8} and no defense, periodic bursts, Bulyan (reference)'
base = {'profile': 'default',
 'dataset': 'fmnist',
 'rounds': 40,
 'local_epochs': 1,
 'schedule': 'periodic',
 'attack': 'backdoor',
 'aggregator': 'bulyan_reference',
 'eval': {'test_samples': 2000}}
cases = [{'client_defense': 'none'}, {'client_defense': 'leadfl'}]
grid = {'leadfl.alpha': [0.0, 0.2, 0.4, 0.6, 0.8], 'seed': [0, 1, 2]}
# overrides of the base as flcore's --set: KEY=VALUE items separated by spaces, e.g. 'seed=5 leadfl.alpha=0.1'
set = ''

# selection rule: lowest average backdoor accuracy among the settings whose final main-task
# accuracy is at most this many points below no defense's
max_main_loss = 1.0

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from flcore.analysis import formats, labels, params, rounds, stats, tables
from flcore.core.names import DASH
from flcore.experiments import load
from flcore.experiments.sweep import expand
from flcore.methods.defenses import LeadFLOptions
from flcore.present import figures, glue, page

overrides = globals().pop("set", "")  # the parameter `set`; popping it gives Python's set() back
spec, labelled = params.chapter_sweep("alpha_sensitivity", profile, experiment, base, cases, grid, description,
                                      overrides)
docs = load.load_runs(cfg for cfg, _ in labelled)
page.start_page("alpha_sensitivity", profile)

for d in docs:
    d["_setting"] = labels.defense_label(d)
order = labels.defense_label_order(d["_setting"] for d in docs)
frame = rounds.rounds_frame(docs)
frame["setting"] = frame["run"].map({d["hash"]: d["_setting"] for d in docs})

# %% [markdown]
# ## Per-round accuracy
#
# Backdoor accuracy (top) and main-task accuracy (bottom) per round for each $\alpha$ and
# for no client defense, as in the seminar report's Figures 3 and 4. Grey bands mark the
# burst rounds of the periodic schedule. With several seeds, lines are means and the
# shaded band spans the seeds.

# %% tags=["hide-input"]
cmap = plt.get_cmap("viridis")
leads = [o for o in order if o.startswith("LeadFL")]
styles = {"no defense": {"color": "k", "ls": "--"}}
styles.update({o: {"color": cmap(i / max(1, len(leads) - 1) * 0.9)} for i, o in enumerate(leads)})
if docs:
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 5.4), sharex=True)
    bursts = rounds.burst_set(docs[0])
    for ax, (value, name) in zip(axes, [("backdoor_acc", "backdoor accuracy (%)"), ("main_acc", "main-task accuracy (%)")]):
        figures.shade_rounds(ax, bursts, label="burst rounds")
        figures.plot_lines(ax, frame, "setting", value, order=order, styles=styles)
        ax.set_ylabel(name)
    axes[1].set_ylim(max(0, np.nanmin(frame["main_acc"]) - 5) if frame["main_acc"].notna().any() else 0, 100)
    figures.legend_outside(axes[0])
    fig.suptitle(labels.describe(docs))
    page.show_figure(fig, "accuracy-per-round")

# %% [markdown]
# ## Trade-off and a choice of $\alpha$
#
# Each point is one setting: its backdoor accuracy averaged over all rounds (lower is
# better) against its final main-task accuracy (higher is better), averaged over seeds.
# The line joins the Pareto front, the settings that no other setting beats on both.
# **Rule.** Among the settings whose final main-task accuracy is at most `max_main_loss`
# points below that of no defense, pick the one with the lowest average backdoor
# accuracy; if none qualifies, pick the one with the highest main-task accuracy. A setting
# picked by the constraint is always on the Pareto front.

# %% tags=["hide-input"]
trade = tables.trade_frame(docs)
points = list(zip(trade["backdoor avg"], trade["main final"]))
front = stats.pareto_front(points)
choice = tables.alpha_choice(trade, max_main_loss)
pick, how, reference_main, reference_name = (choice[k] for k in ("pick", "how", "reference_main", "reference_name"))
trade["on front"] = ["yes" if i in front else "" for i in range(len(trade))]
trade["picked"] = ["<-" if i == pick else "" for i in range(len(trade))]

if len(trade):
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for i, r in trade.iterrows():
        st = styles.get(r["setting"], {})
        ax.errorbar(r["backdoor avg"], r["main final"], xerr=r["backdoor avg sd"] if r["seeds"] > 1 else None,
                    yerr=r["main final sd"] if r["seeds"] > 1 else None, fmt="o", color=st.get("color", "C0"),
                    ms=8 if i == pick else 6, mec="r" if i == pick else None, mew=2 if i == pick else 0)
        ax.annotate(r["setting"].replace("LeadFL, ", ""), (r["backdoor avg"], r["main final"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    fx = [points[i][0] for i in front]
    fy = [points[i][1] for i in front]
    ax.step(fx, fy, where="post", color="0.4", lw=1, label="Pareto front")
    ax.axhline(reference_main - max_main_loss, color="r", ls=":", lw=1,
               label=f"main-task floor of the rule ({reference_name.split(',')[0]} - {max_main_loss:g})")
    ax.set_xlabel("backdoor accuracy, average over rounds (%)")
    ax.set_ylabel("main-task accuracy, final (%)")
    ax.grid(alpha=0.3)
    figures.legend_outside(ax, "below", ncol=1)
    ax.set_title(labels.describe(docs))
    page.show_figure(fig, "trade-off")
    shown = tables.trade_text(trade)
    page.show_table(shown.set_index("setting"), f"Trade-off, {labels.describe(docs)}; accuracies in %", name="trade-off",
                    data=trade.set_index("setting"), docs=docs)

# %% tags=["hide-input"]
glue.glue_text("as_rule_loss", float(max_main_loss))
glue.glue_text("as_none_main", reference_main)
glue.glue_text("as_reference", reference_name)
glue.glue_text("as_paper_alpha", f"{LeadFLOptions().alpha:g}")
if pick is not None:
    p = trade.iloc[pick]
    glue.glue_text("as_pick", p["setting"])
    glue.glue_text("as_pick_bd", p["backdoor avg"])
    glue.glue_text("as_pick_main", p["main final"])
    glue.glue_text("as_pick_how", "the constraint" if how == "constraint" else
                   "the fallback (no setting met the constraint)")
else:
    for k in ("as_pick", "as_pick_bd", "as_pick_main", "as_pick_how"):
        glue.glue_text(k, DASH)
none_bd = trade.loc[trade["setting"] == "no defense", "backdoor avg"]
glue.glue_text("as_none_bd", float(none_bd.iloc[0]) if len(none_bd) else None)
paper_row = trade[trade["setting"] == f"LeadFL, α = {LeadFLOptions().alpha:g}"]
glue.glue_text("as_paperalpha_bd", float(paper_row["backdoor avg"].iloc[0]) if len(paper_row) else None)
glue.glue_text("as_paperalpha_main", float(paper_row["main final"].iloc[0]) if len(paper_row) else None)
glue.glue_text("as_front_n", len(front))
glue.glue_text("as_n", len(trade))
a0 = trade[trade["setting"] == "LeadFL, α = 0"]
glue.glue_text("as_alpha0_bd", float(a0["backdoor avg"].iloc[0]) if len(a0) else None)
# round-to-round variation of the main-task accuracy: standard deviation over the last
# ten evaluated rounds of each run, averaged over the runs
jitter = rounds.tail_jitter(frame, "main_acc", last=10)
glue.glue_text("as_main_jitter", jitter)
# LeadFL's settings against the seed-to-seed spread of the same metric
lead = trade[trade["setting"].str.startswith("LeadFL")]
glue.glue_text("as_seeds", formats.fmt_seeds(trade["seeds"]))
glue.glue_text("as_leadfl_bd_lo", float(lead["backdoor avg"].min()) if len(lead) else None)
glue.glue_text("as_leadfl_bd_hi", float(lead["backdoor avg"].max()) if len(lead) else None)
seed_sd = float(np.nanmean(trade["backdoor avg sd"])) if trade["seeds"].max() > 1 else float("nan")
glue.glue_text("as_bd_seed_sd", seed_sd if np.isfinite(seed_sd) else None)
spread = float(lead["backdoor avg"].max() - lead["backdoor avg"].min()) if len(lead) else float("nan")
glue.glue_text("as_alpha_verdict",
               "no more than" if np.isfinite(seed_sd) and spread <= 2 * seed_sd else "more than")

# %% [markdown]
# With a main-task budget of {glue:text}`as_rule_loss` point(s) below {glue:text}`as_reference`
# at {glue:text}`as_none_main` % final main-task accuracy, the rule picks **{glue:text}`as_pick`**
# (by {glue:text}`as_pick_how`):
# {glue:text}`as_pick_bd` % average backdoor accuracy at {glue:text}`as_pick_main` % main-task
# accuracy. Without a client defense the average backdoor accuracy is {glue:text}`as_none_bd` %.
# {glue:text}`as_front_n` of the {glue:text}`as_n` settings lie on the Pareto front.
# The paper's value for Fashion-MNIST, $\alpha$ = {glue:text}`as_paper_alpha`, gives
# {glue:text}`as_paperalpha_bd` % and {glue:text}`as_paperalpha_main` %; with the regulariser
# switched off ($\alpha = 0$) the average backdoor accuracy is {glue:text}`as_alpha0_bd` %.
# Final main-task accuracy is a single round's value: over the last ten rounds of a run it
# varies with a standard deviation of {glue:text}`as_main_jitter` points (mean over the runs),
# so differences of that size between settings are within the noise of a single run.
#
# Seeds per setting: {glue:text}`as_seeds`. The LeadFL settings' mean average backdoor
# accuracies range from {glue:text}`as_leadfl_bd_lo` % to {glue:text}`as_leadfl_bd_hi` %, while
# the seed-to-seed standard deviation of that metric is {glue:text}`as_bd_seed_sd` points
# (mean over the settings): the differences between values of $\alpha$ are
# {glue:text}`as_alpha_verdict` twice the noise between seeds. Without a client defense the
# average is {glue:text}`as_none_bd` %; $\alpha = 0$ runs the released code's LeadFL step
# without the regulariser, so its row separates the step from the regulariser.

# %% [markdown]
# (as-paper)=
# ## At the paper protocol
#
# The sweep above trains one local epoch per round (the profile this book was built with, see
# {ref}`impl-deviations`). At the paper protocol each client trains ten local epochs (380 SGD
# steps instead of 38) and every round is evaluated on the whole test set;
# `params/alpha_sensitivity.paper.yaml` defines the same sweep there (40 rounds, seeds 0 to 2).
# The book shows its stored runs and never computes them: `python -m flcore sweep
# params/alpha_sensitivity.paper.yaml` does (one cell, e.g. `--case 2 --set seed=0 --set
# leadfl.alpha=0.4`). The selection chapter's periodic runs without a client defense and with
# LeadFL at $\alpha$ = 0.4 are the same configurations, stored once ({ref}`sel-paper`).

# %% tags=["hide-input"]
paper_path = params.params_path("alpha_sensitivity", "paper")
paper_spec = params.spec_from_file(paper_path)
paper_cfgs = expand(paper_spec)
paper_docs = load.stored_runs(paper_cfgs)
print(f"paper protocol: {len(paper_docs)} of {len(paper_cfgs)} runs of params/{paper_path.name} stored")
paper_trade = tables.trade_frame(paper_docs)
if len(paper_trade):
    page.show_table(tables.trade_text(paper_trade).set_index("setting"),
                    f"Paper protocol: trade-off, {labels.describe(paper_docs)}; accuracies in %",
                    name="paper-trade-off", data=paper_trade.set_index("setting"), docs=paper_docs)
paper_settings = {"no defense": {"client_defense": "none"},
                  **{f"LeadFL, α = {a:g}": {"client_defense": "leadfl", "leadfl.alpha": a}
                     for a in paper_spec["grid"]["leadfl.alpha"]}}
for key, value in tables.stored_summary(paper_docs, paper_cfgs, paper_settings).items():
    glue.glue_text(f"as_paper_{key}", value)
# the rule of the one-local-epoch sweep, applied once every setting has a stored run
paper_choice = tables.alpha_choice(paper_trade, max_main_loss)
paper_none = paper_trade[paper_trade["setting"] == "no defense"]
if len(paper_trade) == len(paper_settings):
    paper_pick = paper_trade.iloc[paper_choice["pick"]]
    glue.glue_text("as_paper_rule",
                   f"Applied to these runs (seeds per setting: {formats.fmt_seeds(paper_trade['seeds'])}), the rule "
                   f"picks {paper_pick['setting']} (by "
                   f"{'the constraint' if paper_choice['how'] == 'constraint' else 'the fallback: no setting met the constraint'}): "
                   f"{formats.fmt_num(paper_pick['backdoor avg'])} % average backdoor accuracy at "
                   f"{formats.fmt_num(paper_pick['main final'])} % final main-task accuracy, against "
                   f"{formats.fmt_num(paper_none['backdoor avg'].iloc[0])} % and "
                   f"{formats.fmt_num(paper_none['main final'].iloc[0])} % without a client defense.")
else:
    glue.glue_text("as_paper_rule", "The rule needs a stored run of every setting of the grid and is not "
                   "applied at the paper protocol before.")
# the strongest LeadFL setting at the paper protocol and what it costs the main task
paper_lead = paper_trade[paper_trade["setting"].str.startswith("LeadFL")] if len(paper_trade) else paper_trade
if len(paper_lead) and len(paper_none):
    low = paper_lead.loc[paper_lead["backdoor avg"].idxmin()]
    low_loss = float(paper_none["main final"].iloc[0]) - float(low["main final"])
    glue.glue_text("as_paper_lowest",
                   f"The lowest average backdoor accuracy at the paper protocol is that of {low['setting']}: "
                   f"{formats.fmt_num(low['backdoor avg'])} % average and {formats.fmt_num(low['backdoor final'])} % "
                   f"final, at {formats.fmt_num(low['main final'])} % final main-task accuracy, "
                   f"{formats.fmt_num(low_loss)} points below no defense, a cost "
                   f"{formats.relation(low_loss, max_main_loss)} the rule's budget of {max_main_loss:g} point(s).")
else:
    glue.glue_text("as_paper_lowest", "")

# %% [markdown]
# Stored at the paper protocol: {glue:text}`as_paper_n` of {glue:text}`as_paper_total` runs.
# {glue:text}`as_paper_cells` Settings without a stored run: {glue:text}`as_paper_missing`.
# {glue:text}`as_paper_rule` At one local epoch the same rule picks {glue:text}`as_pick`.
# {glue:text}`as_paper_lowest`
