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
# # Periodic bursts against random selection
#
# LeadFL is designed for bursts: rounds in which the attackers briefly hold a large share
# of the selected clients, followed by benign rounds in which the backdoor should fade
# {cite:p}`zhu2023leadfl`. The seminar report compared two selection patterns for every
# client-side defense {cite:p}`guthmann2026seed`: a *periodic* schedule (cycles of rounds
# whose first rounds select a majority of malicious clients and whose other rounds select
# benign clients only) and uniform *random* selection, in which the malicious share varies
# freely. This chapter repeats both and adds two summaries the figures only suggest: the
# mean accuracies in the burst rounds and in the rounds that follow, and the number of
# rounds each defense needs after a burst to bring the backdoor accuracy back under a fixed
# level (the parameter `mitigation_level`).
#
# The parameters below are those of `params/selection.yaml`.

# %% tags=["parameters"]
profile = 'default'
experiment = 'selection'
description = 'periodic vs random client selection x client defenses, Bulyan (reference)'
base = {'profile': 'default',
 'dataset': 'fmnist',
 'rounds': 40,
 'local_epochs': 1,
 'attack': 'backdoor',
 'aggregator': 'bulyan_reference',
 'eval': {'test_samples': 2000},
 'leadfl': {'alpha': 0.4}}
cases = None
grid = {'schedule': ['periodic', 'random'],
 'client_defense': ['none', 'ldp', 'flwbc', 'leadfl'],
 'seed': [0, 1, 2]}
# overrides of the base as flcore's --set: KEY=VALUE items separated by spaces, e.g. 'seed=5 leadfl.alpha=0.1'
set = ''

# backdoor accuracy (%) under which a burst counts as mitigated
mitigation_level = 50.0

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from flcore.analysis import configs, formats, labels, params, rounds, stats, tables
from flcore.core.names import CLIENT_NAMES, CLIENT_ORDER, DATASET_NAMES, SCHEDULE_NAMES, client_name
from flcore.experiments import load
from flcore.experiments.sweep import expand
from flcore.present import figures, glue, page

overrides = globals().pop("set", "")  # the parameter `set`; popping it gives Python's set() back
spec, labelled = params.chapter_sweep("selection", profile, experiment, base, cases, grid, description,
                                      overrides)
docs = load.load_runs(cfg for cfg, _ in labelled)
page.start_page("selection", profile)
frame = rounds.rounds_frame(docs, keys=["schedule", "client_defense"])
schedules = tables.order_key([d["config"]["schedule"] for d in docs], ["periodic", "random", "paper", "legacy"])
clients = tables.order_key([d["config"]["client_defense"] for d in docs], CLIENT_ORDER)

# burst rounds of every run: periodic bursts; under random selection the rounds in which at
# least half of the selected clients are malicious
bursts = {d["hash"]: rounds.burst_set(d, threshold=rounds.half_selected(d)) for d in docs}
SCHED = SCHEDULE_NAMES

# %% [markdown]
# ## Per-round accuracy
#
# Main-task (left) and backdoor accuracy (right) per round, one row per schedule, one
# line per client-side defense (the seminar report's Figures 5 to 8). Grey bands mark the
# burst rounds: the burst phase of each periodic cycle, and under random selection the
# rounds in which at least half of the selected clients are malicious. Red bars give the
# number of malicious clients selected per round. Both schedules pick clients from the
# round number alone, not from the run's seed (the reference's seeding, see
# {ref}`impl-switches`), so the seeds of a cell see the same bursts and differ only in
# their training randomness: lines are means over the seeds, bands span them.

# %% tags=["hide-input"]
if docs:
    page.show_figure(figures.schedule_rounds_figure(docs, frame, bursts, labels.describe(docs)), "accuracy-per-round")

# %% [markdown]
# ## Per-phase means
#
# Mean accuracy over the burst rounds and over the other rounds of each run (in %; mean ±
# sample standard deviation over seeds where there are several). For the periodic schedule
# the second figure shows the backdoor accuracy by position in the cycle, averaged over the
# cycles: the burst positions come first, and the slope afterwards is the recovery.

# %% tags=["hide-input"]
pb = stats.phase_means(frame, bursts, "backdoor_acc")
pm = stats.phase_means(frame, bursts, "main_acc")
phase = tables.phase_table(docs, pb, pm)
if len(phase):
    page.show_table(phase.set_index(["schedule", "client defense"]),
                    f"Mean accuracy (%) in burst rounds and in the other rounds, {labels.describe(docs)}", name="phase-means",
                    data=pb.add_prefix("backdoor ").join(pm.add_prefix("main-task ")), docs=docs)

per = [d for d in docs if d["config"]["schedule"] == "periodic"]
if per:
    cycle = configs.get(per[0]["config"], "periodic.cycle", 10)
    burst = configs.get(per[0]["config"], "periodic.burst", 2)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.axvspan(-0.5, burst - 0.5, color="0.85", lw=0, label="burst positions")
    prof = stats.cycle_profile(frame[frame["schedule"] == "periodic"], cycle)
    for c in clients:
        runs = [d["hash"] for d in per if d["config"]["client_defense"] == c]
        if runs:
            ax.plot(prof.columns, prof.loc[runs].mean(axis=0).values, marker="o", label=client_name(c))
    ax.set_xlabel("position in the cycle (round mod cycle length)")
    ax.set_ylabel("backdoor accuracy (%)")
    ax.set_xticks(range(cycle))
    ax.grid(alpha=0.3)
    figures.legend_outside(ax)
    ax.set_title(labels.describe(per))
    page.show_figure(fig, "cycle-profile")

# %% [markdown]
# ## Mitigation rounds
#
# After each burst (a block of consecutive burst rounds) we count the rounds until the
# backdoor accuracy first falls under `mitigation_level` (0: already under it in the last
# burst round). A burst is *not mitigated* if that does not happen before the next burst
# starts or the run ends. The table gives the mean number of rounds over the mitigated
# bursts and how many bursts were not mitigated.

# %% tags=["hide-input"]
rows, mit_all = [], []
for s in schedules:
    for c in clients:
        sel = [d for d in docs if d["config"]["schedule"] == s and d["config"]["client_defense"] == c]
        if not sel:
            continue
        res = []
        for d in sel:
            f = frame[frame["run"] == d["hash"]].dropna(subset=["backdoor_acc"])
            bd = dict(zip(f["round"], f["backdoor_acc"]))
            res += stats.mitigation_rounds(bd, bursts[d["hash"]], mitigation_level, last_round=d["rounds"][-1]["round"])
        got = [r["rounds"] for r in res if r["rounds"] is not None]
        mit_all.append({"schedule": s, "client": c, "mean": np.mean(got) if got else float("nan"),
                        "not": len(res) - len(got), "bursts": len(res)})
        rows.append({"schedule": SCHED.get(s, s), "client defense": client_name(c), "bursts": len(res),
                     "mean rounds to mitigate": formats.fmt_num(np.mean(got) if got else None),
                     "median": formats.fmt_num(np.median(got) if got else None, 0),
                     "not mitigated": len(res) - len(got),
                     "mean peak backdoor in burst (%)": formats.fmt_num(np.nanmean([r["peak"] for r in res]) if res else None)})
mit_table = pd.DataFrame(rows)
if len(mit_table):
    page.show_table(mit_table.set_index(["schedule", "client defense"]),
                    f"Rounds until the backdoor accuracy falls under {mitigation_level:g} % after a burst, {labels.describe(docs)}",
                    name="mitigation-rounds", docs=docs)

# %% tags=["hide-input"]
mit_by = {(r["schedule"], r["client"]): r for r in mit_all}
glue.glue_text("sel_level", float(mitigation_level), 0)
for s in ("periodic", "random"):
    for c in ("none", "leadfl", "ldp", "flwbc"):
        glue.glue_text(f"sel_{s}_{c}_mit", mit_by.get((s, c), {}).get("mean"))
        glue.glue_text(f"sel_{s}_{c}_notmit", mit_by.get((s, c), {}).get("not"))
        glue.glue_text(f"sel_{s}_{c}_bursts", mit_by.get((s, c), {}).get("bursts"))
        glue.glue_text(f"sel_{s}_{c}_bd_benign", stats.cell_mean(docs, pb, "benign", schedule=s, client_defense=c))
        glue.glue_text(f"sel_{s}_{c}_bd_burst", stats.cell_mean(docs, pb, "burst", schedule=s, client_defense=c))
        glue.glue_text(f"sel_{s}_{c}_main_benign", stats.cell_mean(docs, pm, "benign", schedule=s, client_defense=c))

# %% [markdown]
# Under periodic bursts the undefended model needs {glue:text}`sel_periodic_none_mit` rounds on
# average to bring the backdoor accuracy under {glue:text}`sel_level` % after a burst
# ({glue:text}`sel_periodic_none_notmit` of {glue:text}`sel_periodic_none_bursts` bursts not
# mitigated before the next one), LeadFL {glue:text}`sel_periodic_leadfl_mit` rounds
# ({glue:text}`sel_periodic_leadfl_notmit` of {glue:text}`sel_periodic_leadfl_bursts` not
# mitigated). In the benign rounds the mean backdoor accuracy is
# {glue:text}`sel_periodic_none_bd_benign` % without a client defense and
# {glue:text}`sel_periodic_leadfl_bd_benign` % with LeadFL, at a main-task accuracy of
# {glue:text}`sel_periodic_none_main_benign` % and {glue:text}`sel_periodic_leadfl_main_benign` %.
# LDP and FL-WBC reach {glue:text}`sel_periodic_ldp_bd_benign` % and
# {glue:text}`sel_periodic_flwbc_bd_benign` % in the benign rounds.
#
# Under random selection the malicious share varies from round to round and the bursts are
# shorter and irregular: the undefended model's backdoor accuracy averages
# {glue:text}`sel_random_none_bd_benign` % outside the burst rounds, LeadFL's
# {glue:text}`sel_random_leadfl_bd_benign` %; after a burst LeadFL needs
# {glue:text}`sel_random_leadfl_mit` rounds to get under the level, no client defense
# {glue:text}`sel_random_none_mit` ("—": no burst was mitigated, or no such run).

# %% [markdown]
# (sel-paper)=
# ## At the paper protocol
#
# Everything above trains one local epoch per round (the profile this book was built with, see
# {ref}`impl-deviations`). At the paper protocol each client trains ten local epochs (380 SGD
# steps instead of 38) and every round is evaluated on the whole test set;
# `params/selection.paper.yaml` defines this chapter's grid there (40 rounds as the seminar report
# ran it, seeds 0 to 2), and adds the seminar report's Fig. 2: CIFAR-10 under periodic bursts,
# LeadFL at $\alpha$ = 0.25. The book shows the runs of that file that are stored and never
# computes them: `python -m flcore sweep params/selection.paper.yaml` does (one cell, e.g.
# `--case 1 --set seed=0 --set client_defense=none`: case 1 is periodic bursts, 2 random
# selection, 3 CIFAR-10).

# %% tags=["hide-input"]
paper_path = params.params_path("selection", "paper")
paper_cfgs = expand(params.spec_from_file(paper_path))
paper_docs = load.stored_runs(paper_cfgs)
print(f"paper protocol: {len(paper_docs)} of {len(paper_cfgs)} runs of params/{paper_path.name} stored")
paper_frame = rounds.rounds_frame(paper_docs, keys=["schedule", "client_defense"])
paper_bursts = {d["hash"]: rounds.burst_set(d, threshold=rounds.half_selected(d)) for d in paper_docs}
ppb = stats.phase_means(paper_frame, paper_bursts, "backdoor_acc")
ppm = stats.phase_means(paper_frame, paper_bursts, "main_acc")
for ds in ("fmnist", "cifar10"):  # one figure and table per dataset
    dd = [d for d in paper_docs if d["config"]["dataset"] == ds]
    if not dd:
        continue
    f = paper_frame[paper_frame["run"].isin([d["hash"] for d in dd])]
    page.show_figure(figures.schedule_rounds_figure(dd, f, paper_bursts, f"Paper protocol: {labels.describe(dd)}"),
                     f"paper-accuracy-per-round-{ds}")
    runs = [d["hash"] for d in dd]
    page.show_table(tables.phase_table(dd, ppb, ppm).set_index(["schedule", "client defense"]),
                    f"Paper protocol: mean accuracy (%) in burst rounds and in the other rounds, {labels.describe(dd)}",
                    name=f"paper-phase-means-{ds}",
                    data=ppb.loc[runs].add_prefix("backdoor ").join(ppm.loc[runs].add_prefix("main-task ")), docs=dd)
paper_settings = {f"{DATASET_NAMES[ds]}, {SCHED[s]}, {'no client defense' if c == 'none' else client_name(c)}":
                  {"dataset": ds, "schedule": s, "client_defense": c}
                  for ds, s in (("fmnist", "periodic"), ("fmnist", "random"), ("cifar10", "periodic")) for c in CLIENT_ORDER}
for key, value in tables.stored_summary(paper_docs, paper_cfgs, paper_settings).items():
    glue.glue_text(f"sel_paper_{key}", value)
# each paper-protocol cell as "mean ± sd % (seeds ...)", or "not stored"
paper_cells = {(ds, s, c, col): tables.phase_cell(paper_docs, ppb, col, {"dataset": ds, "schedule": s, "client_defense": c})
               for ds, s in (("fmnist", "periodic"), ("fmnist", "random"), ("cifar10", "periodic"))
               for c in CLIENT_ORDER for col in ("benign", "burst")}
for (ds, s, c, col), text in paper_cells.items():
    glue.glue_text(f"sel_paper_{'cifar_' if ds == 'cifar10' else ''}{s}_{c}_bd_{col}", text)
# each client defense's benign-round backdoor accuracy under random selection against no client
# defense's over the seeds both cells have (seed-matched), as one sentence per protocol
for key, pdocs, table, match in (("sel_random_vs_none", docs, pb, {}),
                                 ("sel_paper_random_vs_none", paper_docs, ppb, {"dataset": "fmnist"})):
    pairs = {client_name(c): stats.paired_cell_means(pdocs, table, "benign", {"schedule": "random",
                                                                              "client_defense": "none", **match},
                                                     {"schedule": "random", "client_defense": c, **match})
             for c in CLIENT_ORDER[1:]}
    glue.glue_text(key, "; ".join(
        f"with {name} {formats.fmt_num(v)} % against {formats.fmt_num(b)} % without a client defense "
        f"(seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}), {formats.relation(v, b)} that"
        if seeds else f"{name}: no seed stored both with and without a client defense"
        for name, (v, b, seeds) in pairs.items()))
glue.glue_text("sel_paper_periodic_leadfl_vs_none", formats.relation(
    stats.cell_mean(paper_docs, ppb, "benign", dataset="fmnist", schedule="periodic", client_defense="leadfl"),
    stats.cell_mean(paper_docs, ppb, "benign", dataset="fmnist", schedule="periodic", client_defense="none")))
# the malicious models the reference Bulyan kept in the rounds with malicious clients, per schedule
for s in ("periodic", "random"):
    kept_stats = tables.kept_in_malicious_rounds(
        [d for d in paper_docs if d["config"]["dataset"] == "fmnist" and d["config"]["schedule"] == s])
    glue.glue_text(f"sel_paper_{s}_kept", tables.kept_sentence(kept_stats))
    glue.glue_text(f"sel_paper_{s}_kept_vs_none", "; ".join(
        f"with {client_name(c)} {formats.relation(kept_stats[c]['share'], kept_stats['none']['share'])} without"
        for c in CLIENT_ORDER[1:] if c in kept_stats) if "none" in kept_stats else "not stored")
# the random-selection cells at the paper protocol, each with its own seeds
glue.glue_text("sel_paper_random_cells", "; ".join(
    f"{'without a client defense' if c == 'none' else 'with ' + client_name(c)} "
    f"{paper_cells['fmnist', 'random', c, 'benign']}" for c in CLIENT_ORDER))

# %% [markdown]
# Stored at the paper protocol: {glue:text}`sel_paper_n` of {glue:text}`sel_paper_total` runs.
# {glue:text}`sel_paper_cells` Settings without a stored run: {glue:text}`sel_paper_missing`.
#
# Under periodic bursts the mean backdoor accuracy of the benign rounds is
# {glue:text}`sel_paper_periodic_none_bd_benign` without a client defense and
# {glue:text}`sel_paper_periodic_leadfl_bd_benign` with LeadFL at the paper protocol (one local
# epoch: {glue:text}`sel_periodic_none_bd_benign` % and {glue:text}`sel_periodic_leadfl_bd_benign` %);
# in the burst rounds {glue:text}`sel_paper_periodic_none_bd_burst` and
# {glue:text}`sel_paper_periodic_leadfl_bd_burst`. Under random selection the benign rounds give
# {glue:text}`sel_paper_random_none_bd_benign` without a client defense and
# {glue:text}`sel_paper_random_leadfl_bd_benign` with LeadFL,
# {glue:text}`sel_paper_random_ldp_bd_benign` with LDP and {glue:text}`sel_paper_random_flwbc_bd_benign`
# with FL-WBC (one local epoch: {glue:text}`sel_random_none_bd_benign` %,
# {glue:text}`sel_random_leadfl_bd_benign` %, {glue:text}`sel_random_ldp_bd_benign` % and
# {glue:text}`sel_random_flwbc_bd_benign` %). On CIFAR-10 under periodic bursts (the seminar
# report's Fig. 2) the benign rounds give {glue:text}`sel_paper_cifar_periodic_none_bd_benign`
# without a client defense and {glue:text}`sel_paper_cifar_periodic_leadfl_bd_benign` with
# LeadFL. Each value is the mean ± sd over the seeds named beside it (one seed: no spread).
#
# The finding of one local epoch under random selection, read against these runs. The mean
# backdoor accuracy of the benign rounds under random selection, each client defense against no
# client defense over the seeds both have (so that a difference is not one of seeds), at one
# local epoch:
# {glue:text}`sel_random_vs_none`. At the paper protocol: {glue:text}`sel_paper_random_vs_none`
# (per cell, with its seeds: {glue:text}`sel_paper_random_cells`). Under periodic bursts at
# the paper protocol LeadFL's is {glue:text}`sel_paper_periodic_leadfl_vs_none` no client
# defense's.
#
# **Why, at the server.** The reference Bulyan keeps three of the ten models. Over the rounds
# with at least one malicious client, under random selection it kept:
# {glue:text}`sel_paper_random_kept`. Under periodic bursts (six malicious clients of ten):
# {glue:text}`sel_paper_periodic_kept`. The kept share of the malicious models under random
# selection, against no client defense: {glue:text}`sel_paper_random_kept_vs_none`. The Laplace
# noise that LDP and FL-WBC add to the benign models (never to the malicious ones, which train
# without a client defense) spreads the benign models apart, so that the noise-free malicious
# models can score as the tighter group: the mechanism of {ref}`ot-ties`, which a higher kept
# share with LDP and FL-WBC shows at work in the rounds with one to four malicious clients.
