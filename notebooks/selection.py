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
# freely. This chapter repeats both at the paper protocol (ten local epochs per round, the
# whole test set in every round, 40 rounds as the seminar report ran them, seeds 0 to 2, the
# reference "Bulyan" on the server) and adds two summaries the figures only suggest: the mean
# accuracies in the burst rounds and in the rounds that follow, and the number of rounds each
# defense needs after a burst to bring the backdoor accuracy back under a fixed level (the
# parameter `mitigation_level`).
#
# The paper-protocol runs are those of `params/selection.paper.yaml`, which adds the seminar
# report's Fig. 2 (CIFAR-10 under periodic bursts, LeadFL at $\alpha$ = 0.25). The book shows
# the stored ones and never computes them: `python -m flcore sweep params/selection.paper.yaml`
# does (one cell, e.g. `--case 1 --set seed=0 --set client_defense=none`: case 1 is periodic
# bursts, 2 random selection, 3 CIFAR-10). The parameters below define the same grid at one
# local epoch per round (`params/selection.yaml`), which the book computes and shows only as an
# ablation at the end of the chapter ({ref}`sel-one-epoch`).

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
from flcore.analysis import formats, labels, params, stats, tables
from flcore.core.names import CLIENT_ORDER, DATASET_NAMES, SCHEDULE_NAMES, client_name
from flcore.experiments import load
from flcore.experiments.sweep import expand
from flcore.present import figures, glue, page

overrides = globals().pop("set", "")  # the parameter `set`; popping it gives Python's set() back
spec, labelled = params.chapter_sweep("selection", profile, experiment, base, cases, grid, description,
                                      overrides)
docs = load.load_runs(cfg for cfg, _ in labelled)
page.start_page("selection", profile)
SCHED = SCHEDULE_NAMES

paper_path = params.params_path("selection", "paper")
paper_cfgs = expand(params.spec_from_file(paper_path))
paper_docs = load.stored_runs(paper_cfgs)
print(f"paper protocol: {len(paper_docs)} of {len(paper_cfgs)} runs of params/{paper_path.name} stored")


# %% [markdown]
# (sel-paper)=
# ## Per-round accuracy
#
# Main-task (left) and backdoor accuracy (right) per round, one row per schedule, one
# line per client-side defense (the seminar report's Figures 5 to 8; on CIFAR-10 its Fig. 2).
# Grey bands mark the burst rounds: the burst phase of each periodic cycle, and under random
# selection the rounds in which at least half of the selected clients are malicious. Red bars
# give the number of malicious clients selected per round. Both schedules pick clients from the
# round number alone, not from the run's seed (the reference's seeding, see
# {ref}`impl-switches`), so the seeds of a cell see the same bursts and differ only in their
# training randomness: lines are means over the seeds, bands span them. Below each figure, the
# mean accuracy over the burst rounds and over the other rounds of each run (in %; mean ± sample
# standard deviation over the seeds).

# %% tags=["hide-input"]
paper_frame, paper_bursts, ppb, ppm = tables.schedule_phases(paper_docs)
fm_docs = [d for d in paper_docs if d["config"]["dataset"] == "fmnist"]
for ds in ("fmnist", "cifar10"):  # one figure and table per dataset
    dd = [d for d in paper_docs if d["config"]["dataset"] == ds]
    if not dd:
        continue
    runs = [d["hash"] for d in dd]
    page.show_figure(figures.schedule_rounds_figure(dd, paper_frame[paper_frame["run"].isin(runs)], paper_bursts,
                                                    labels.describe(dd)),
                     f"paper-{ds}-accuracy-per-round")
    page.show_table(tables.phase_table(dd, ppb, ppm).set_index(["schedule", "client defense"]),
                    f"Mean accuracy (%) in burst rounds and in the other rounds, {labels.describe(dd)}",
                    name=f"paper-{ds}-phase-means",
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

# %% [markdown]
# Stored at the paper protocol: {glue:text}`sel_paper_n` of {glue:text}`sel_paper_total` runs.
# {glue:text}`sel_paper_cells` Settings without a stored run: {glue:text}`sel_paper_missing`.
#
# Under periodic bursts on Fashion-MNIST the mean backdoor accuracy of the benign rounds is
# {glue:text}`sel_paper_periodic_none_bd_benign` without a client defense,
# {glue:text}`sel_paper_periodic_leadfl_bd_benign` with LeadFL,
# {glue:text}`sel_paper_periodic_ldp_bd_benign` with LDP and
# {glue:text}`sel_paper_periodic_flwbc_bd_benign` with FL-WBC; in the burst rounds
# {glue:text}`sel_paper_periodic_none_bd_burst` without a client defense and
# {glue:text}`sel_paper_periodic_leadfl_bd_burst` with LeadFL. Under random selection the benign
# rounds give {glue:text}`sel_paper_random_none_bd_benign` without a client defense,
# {glue:text}`sel_paper_random_leadfl_bd_benign` with LeadFL,
# {glue:text}`sel_paper_random_ldp_bd_benign` with LDP and
# {glue:text}`sel_paper_random_flwbc_bd_benign` with FL-WBC. On CIFAR-10 under periodic bursts
# (the seminar report's Fig. 2) the benign rounds give
# {glue:text}`sel_paper_cifar_periodic_none_bd_benign` without a client defense and
# {glue:text}`sel_paper_cifar_periodic_leadfl_bd_benign` with LeadFL. Each value is the mean ± sd
# over the seeds named beside it (one seed: no spread).

# %% [markdown]
# ## Recovery within the cycle and mitigation rounds
#
# The figure shows the backdoor accuracy by position in the periodic cycle, averaged over the
# cycles and seeds of the Fashion-MNIST runs: the burst positions come first, and the slope
# afterwards is the recovery. The table counts, after each burst (a block of consecutive burst
# rounds), the rounds until the backdoor accuracy first falls under `mitigation_level` (0:
# already under it in the last burst round). A burst is *not mitigated* if that does not happen
# before the next burst starts or the run ends; the table gives the mean number of rounds over
# the mitigated bursts and how many were not mitigated.

# %% tags=["hide-input"]
fm_frame = paper_frame[paper_frame["run"].isin([d["hash"] for d in fm_docs])]
if fm_docs:
    page.show_figure(figures.cycle_profile_figure(fm_docs, fm_frame, labels.describe(fm_docs)),
                     "paper-cycle-profile")
paper_mit_table, paper_mit = tables.mitigation_table(fm_docs, fm_frame, paper_bursts, mitigation_level)
if len(paper_mit_table):
    page.show_table(paper_mit_table.set_index(["schedule", "client defense"]),
                    f"Rounds until the backdoor accuracy falls under {mitigation_level:g} % after a "
                    f"burst, {labels.describe(fm_docs)}", name="paper-mitigation-rounds", docs=fm_docs)
glue.glue_text("sel_level", float(mitigation_level), 0)
for key, value in tables.selection_cells(fm_docs, paper_mit, ppb, ppm).items():
    if key.endswith(("_mit", "_notmit", "_bursts", "_main_benign")):  # the phase cells are glued with their seeds above
        glue.glue_text(f"sel_paper_{key}", value)

# %% [markdown]
# Under periodic bursts the undefended model needs {glue:text}`sel_paper_periodic_none_mit`
# rounds on average to bring the backdoor accuracy under {glue:text}`sel_level` % after a burst
# ({glue:text}`sel_paper_periodic_none_notmit` of {glue:text}`sel_paper_periodic_none_bursts`
# bursts not mitigated before the next one), LeadFL {glue:text}`sel_paper_periodic_leadfl_mit`
# rounds ({glue:text}`sel_paper_periodic_leadfl_notmit` of
# {glue:text}`sel_paper_periodic_leadfl_bursts` not mitigated), LDP
# {glue:text}`sel_paper_periodic_ldp_mit` ({glue:text}`sel_paper_periodic_ldp_notmit` of
# {glue:text}`sel_paper_periodic_ldp_bursts`) and FL-WBC {glue:text}`sel_paper_periodic_flwbc_mit`
# ({glue:text}`sel_paper_periodic_flwbc_notmit` of {glue:text}`sel_paper_periodic_flwbc_bursts`).
# The main-task accuracy of the benign rounds is {glue:text}`sel_paper_periodic_none_main_benign` %
# without a client defense and {glue:text}`sel_paper_periodic_leadfl_main_benign` % with LeadFL.
# Under random selection LeadFL needs {glue:text}`sel_paper_random_leadfl_mit` rounds after a
# burst, no client defense {glue:text}`sel_paper_random_none_mit` ("—": no burst was mitigated, or
# no such run).

# %% [markdown]
# ## Do client defenses help under random selection?
#
# At one local epoch every client defense raised the backdoor accuracy of the benign rounds
# under random selection above that of no client defense ({ref}`sel-one-epoch`). The mean
# backdoor accuracy of the benign rounds under random selection at the paper protocol, each
# client defense against no client defense over the seeds both have (so that a difference is not
# one of seeds), and, by way of mechanism, the models the reference Bulyan keeps.

# %% tags=["hide-input"]
glue.glue_text("sel_paper_random_vs_none", tables.random_vs_none_sentence(paper_docs, ppb, {"dataset": "fmnist"}))
glue.glue_text("sel_paper_periodic_leadfl_vs_none", formats.relation(
    stats.cell_mean(paper_docs, ppb, "benign", dataset="fmnist", schedule="periodic", client_defense="leadfl"),
    stats.cell_mean(paper_docs, ppb, "benign", dataset="fmnist", schedule="periodic", client_defense="none")))
# the malicious models the reference Bulyan kept in the rounds with malicious clients, per schedule
for s in ("periodic", "random"):
    kept_stats = tables.kept_in_malicious_rounds([d for d in fm_docs if d["config"]["schedule"] == s])
    glue.glue_text(f"sel_paper_{s}_kept", tables.kept_sentence(kept_stats))
    glue.glue_text(f"sel_paper_{s}_kept_vs_none", "; ".join(
        f"with {client_name(c)} {formats.relation(kept_stats[c]['share'], kept_stats['none']['share'])} without"
        for c in CLIENT_ORDER[1:] if c in kept_stats) if "none" in kept_stats else "not stored")
# the random-selection cells at the paper protocol, each with its own seeds
glue.glue_text("sel_paper_random_cells", "; ".join(
    f"{'without a client defense' if c == 'none' else 'with ' + client_name(c)} "
    f"{paper_cells['fmnist', 'random', c, 'benign']}" for c in CLIENT_ORDER))

# %% [markdown]
# Under random selection at the paper protocol: {glue:text}`sel_paper_random_vs_none` (per cell,
# with its seeds: {glue:text}`sel_paper_random_cells`). Under periodic bursts LeadFL's is
# {glue:text}`sel_paper_periodic_leadfl_vs_none` no client defense's.
# {glue:text}`sel_verdict`
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

# %% [markdown]
# (sel-one-epoch)=
# ## Ablation: one local epoch per round
#
# The same grid with one local epoch per round (38 SGD steps per client instead of 380) and
# 2,000 test images per evaluation, the parameters of this notebook. It is an ablation of the
# number of local steps: at one local epoch LeadFL does not lower the backdoor accuracy under
# Multi-Krum ({ref}`ot-local-steps`). The figure, the per-phase table and the mitigation table
# repeat those above for these runs.

# %% tags=["hide-input"]
frame, bursts, pb, pm = tables.schedule_phases(docs)
if docs:
    page.show_figure(figures.schedule_rounds_figure(docs, frame, bursts, f"One local epoch: {labels.describe(docs)}"),
                     "accuracy-per-round")
    page.show_table(tables.phase_table(docs, pb, pm).set_index(["schedule", "client defense"]),
                    f"One local epoch: mean accuracy (%) in burst rounds and in the other rounds, {labels.describe(docs)}",
                    name="phase-means", data=pb.add_prefix("backdoor ").join(pm.add_prefix("main-task ")), docs=docs)
mit_table, mit = tables.mitigation_table(docs, frame, bursts, mitigation_level)
if len(mit_table):
    page.show_table(mit_table.set_index(["schedule", "client defense"]),
                    f"One local epoch: rounds until the backdoor accuracy falls under {mitigation_level:g} % after a "
                    f"burst, {labels.describe(docs)}", name="mitigation-rounds", docs=docs)
for key, value in tables.selection_cells(docs, mit, pb, pm).items():
    glue.glue_text(f"sel_{key}", value)
glue.glue_text("sel_random_vs_none", tables.random_vs_none_sentence(docs, pb))
# the one-epoch finding (a client defense raises the benign-round backdoor accuracy under random
# selection above no client defense's) read against the paper protocol, defense by defense
held, failed, open_ = [], [], []
for c in CLIENT_ORDER[1:]:
    cells = [({"schedule": "random", "client_defense": "none", **m}, {"schedule": "random", "client_defense": c, **m})
             for m in ({}, {"dataset": "fmnist"})]
    (v1, b1, s1), (v10, b10, s10) = (stats.paired_cell_means(dd, t, "benign", *cell)
                                     for dd, t, cell in ((docs, pb, cells[0]), (paper_docs, ppb, cells[1])))
    if not s1 or not s10:
        open_.append(client_name(c))
    elif v1 > b1 and v10 > b10:
        held.append(client_name(c))
    elif v1 > b1:
        failed.append(client_name(c))
glue.glue_text("sel_verdict", " ".join(t for t in (
    f"The one-epoch finding that a client defense raises the backdoor accuracy of the benign rounds under random "
    f"selection holds at the paper protocol for {' and '.join(held)}." if held else "",
    f"It does not hold there for {', '.join(failed)}." if failed else "",
    f"Not yet comparable (no seed stored with and without a client defense): {', '.join(open_)}." if open_ else "")
    if t) or "—")

# %% [markdown]
# At one local epoch, under periodic bursts, the benign rounds' mean backdoor accuracy is
# {glue:text}`sel_periodic_none_bd_benign` % without a client defense,
# {glue:text}`sel_periodic_leadfl_bd_benign` % with LeadFL, {glue:text}`sel_periodic_ldp_bd_benign` %
# with LDP and {glue:text}`sel_periodic_flwbc_bd_benign` % with FL-WBC; the undefended model needs
# {glue:text}`sel_periodic_none_mit` rounds to get under {glue:text}`sel_level` % after a burst,
# LeadFL {glue:text}`sel_periodic_leadfl_mit`. Under random selection, each client defense
# against no client defense over the seeds both have: {glue:text}`sel_random_vs_none`. That
# finding is the one the paper protocol above tests.
