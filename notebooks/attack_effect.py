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
# # Measuring the attack effect
#
# {ref}`deriv-attack-effect` explains the persistence of a backdoor planted in a
# burst by the attack effect $\delta_t = W_t - W^M_t$, the difference between the
# real global model and the one a *shadow* run would have produced had the
# malicious clients behaved honestly, and by the claim that benign rounds shrink
# it only slowly, because the product of the factors
# $\mathrm{I}_d - \eta H$ stays close to the identity. LeadFL is designed to make
# benign rounds shrink it faster, using a diagonal Hessian estimate built from
# consecutive iterates ({ref}`deriv-leadfl`). This chapter measures both things
# instead of deriving them:
#
# 1. $\delta_t$ itself, per round, from a real run and its shadow (the same
#    configuration with the attack switched off: same seed, same selection, same
#    data order; the malicious clients then train like benign clients, client
#    defense included), for each client defense of the parameter file;
# 2. the exact Hessian diagonal of a benign client's batch loss on a sample of
#    coordinates, against the secant (finite-difference) diagonal, the paper's
#    printed formula, the seminar report's correction and the quantity the
#    reference code actually minimises.
#
# Everything below is read from the results store (`results/attack_effect/`);
# a missing measurement is computed first (`flcore.experiments.attack_effect.measure` and
# `compare_hessian`).

# %% tags=["parameters"]
profile = "default"
experiment = "attack_effect"
description = "attack effect vs a shadow run and Hessian-diagonal approximations"
base = {
    "dataset": "fmnist",
    "rounds": 40,
    "local_epochs": 1,
    "schedule": "periodic",
    "attack": "backdoor",
    "aggregator": "bulyan_reference",
    "eval": {"test_samples": 2000},
    "leadfl": {"alpha": 0.4},
}
cases = [{"client_defense": "none"}, {"client_defense": "leadfl"}]
hessian = {"rounds": [0, 19], "steps": [5, 20, 35], "coordinates": 300, "seed": 0}
# overrides of the base as flcore's --set: KEY=VALUE items separated by spaces, e.g. 'seed=5 leadfl.alpha=0.1'
set = ""

# %% tags=["hide-input"]
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from flcore.analysis import formats, labels, params, rounds, stats, tables
from flcore.experiments import attack_effect as ae
from flcore.present import figures, glue, page
from flcore.storage import store

torch.set_num_threads(1)
spec = {"experiment": experiment, "profile": profile, "description": description, "base": base,
        "cases": cases, "hessian": hessian}
overrides = globals().pop("set", "")  # the parameter `set`; popping it gives Python's set() back
cfgs, hopts, _ = ae.read_params(spec, params.override_items(overrides))
docs = [ae.measure(c)[1] for c in cfgs]
hpath, hdoc = ae.compare_hessian(cfgs[0], hopts)
page.start_page("attack_effect", profile)
g = glue.glue_value  # numbers unformatted: the prose's text role formats them
label = labels.case_label


# a run that stopped before its first round (status "diverged") has nothing to plot
skipped = [f"{label(c)} ({d['status']} in round {d['summary'].get('diverged_round')})"
           for c, d in zip(cfgs, docs) if not d["rounds"]]
cfgs, docs = [c for c, d in zip(cfgs, docs) if d["rounds"]], [d for d in docs if d["rounds"]]
g("skipped_note", ("Not shown, because the run stopped early: " + "; ".join(skipped) + ".") if skipped else "")
cfg0 = cfgs[0]
case_labels = [label(c) for c in cfgs]
by_defense = {c.client_defense: d for c, d in zip(cfgs, docs)}
per = cfg0.options("periodic")
steps_per_round = stats.local_steps(cfg0.to_dict())[0]  # mini-batch steps per client and round
g("rounds", cfg0.rounds)
g("local_epochs", cfg0.local_epochs)
g("steps_per_round", steps_per_round)
g("lr", cfg0.lr)
g("momentum", cfg0.momentum)
g("test_samples", cfg0.eval.test_samples)
g("clients_per_round", cfg0.clients_per_round)
g("alpha", cfgs[[c.client_defense for c in cfgs].index("leadfl")].options("leadfl").alpha
  if "leadfl" in by_defense else float("nan"))
if per is not None:
    g("cycle", per.cycle)
    g("burst", per.burst)
    g("mal_per_burst", per.malicious_per_round)
    g("benign_per_cycle", per.cycle - per.burst)
print(f"{len(docs)} measurements: " + ", ".join(f"{lab} ({d['hash']})" for lab, d in zip(case_labels, docs)))
print(f"Hessian comparison: {hpath.name}")

# %% [markdown]
# ## Setting
#
# Fashion-MNIST, the default profile: {glue:text}`rounds:d` rounds of
# {glue:text}`clients_per_round:d` clients, {glue:text}`local_epochs:d` local
# epoch ({glue:text}`steps_per_round:d` mini-batch steps per client and round,
# learning rate {glue:text}`lr:.2f`, momentum {glue:text}`momentum:.1f`),
# evaluation on a fixed subset of {glue:text}`test_samples:d` test images. The
# selection is the seminar report's periodic burst schedule: in every cycle of
# {glue:text}`cycle:d` rounds, the first {glue:text}`burst:d` select
# {glue:text}`mal_per_burst:d` malicious clients, the other
# {glue:text}`benign_per_cycle:d` only benign ones. Every benign round therefore
# shows how benign training alone acts on the attack effect left by the
# preceding burst, which is exactly the quantity of
# {ref}`deriv-attack-effect` (the recursion after a burst).
#
# This one-epoch setting is an ablation of the paper protocol: {ref}`ae-paper` repeats the
# measurement at ten local epochs per round, the setting in which LeadFL lowers the backdoor
# accuracy ({ref}`ot-local-steps`).
#
# **Server rule: the reference "Bulyan".** We use the reference code's rule
# (the average of a middle band of the updates ranked by a Krum score), not
# Multi-Krum, for two reasons. It is the rule of the alpha-sensitivity and
# selection experiments, so each real run here is the same configuration (same
# hash) as a periodic cell of {doc}`selection`, and this chapter explains the
# curves shown there. And with {glue:text}`mal_per_burst:d` malicious clients
# of {glue:text}`clients_per_round:d` both rules are taken over in a burst
# round (the BatchNorm-counter argument of {ref}`deriv-bn-counter`), so the
# choice does not decide whether a burst injects an attack effect; it changes
# which benign clients are averaged afterwards. A selecting rule also breaks the
# linear recursion of the derivations: the real and the shadow run may pick
# different benign clients in the same round. We record how often they pick the
# same ones.

# %% tags=["hide-input"]
rows = []
for lab, c, d in zip(case_labels, cfgs, docs):
    s, a = d["summary"], d["summary"]["attack_effect"]
    rows.append({"case": lab, "hash": d["hash"], "main acc. final": s["main_acc_final"],
                 "backdoor acc. avg": s["backdoor_acc_avg"], "backdoor acc. final": s["backdoor_acc_final"],
                 "‖δ‖ final": a["delta_norm_final"], "‖δ‖ max": a["delta_norm_max"],
                 "decay median": a["decay_benign_median"], "decay geo. mean": a["decay_benign_geomean"],
                 "benign rounds with decay < 1": a["decay_benign_frac_below_1"],
                 "same aggregation (benign rounds)": a["same_aggregation_benign_frac"],
                 "wall s (real + shadow)": d["provenance"]["wall_s"] + d["provenance"].get("shadow_wall_s", 0)})
summary_table = pd.DataFrame(rows).set_index("case")
page.show_table(summary_table.style.format(precision=3), "Measured cases: accuracies (fractions), the attack "
                "effect ‖δ‖ and its one-round decay in benign rounds", name="cases", data=summary_table)

# cross-check: the real run is the selection experiment's periodic cell (same configuration hash)
checks = [rounds.same_rounds(d, store.load_valid(store.results_dir() / "selection" / f"{d['hash']}.json"),
                             keys=("selected", "main_acc", "backdoor_acc"))
          for d in docs]
if all(x is None for x in checks):
    cross = "The selection experiment has not stored these configurations yet, so the cross-check is pending."
elif all(x for x in checks if x is not None):
    cross = ("Where the selection experiment has stored the same configuration, its per-round selection, "
             "main-task and backdoor accuracies are identical to the real runs here.")
else:
    cross = ("Some stored selection-experiment runs of the same configuration differ from the real runs here "
             "(thread count, CPU kernels or code version); see the provenance of both.")
g("selection_crosscheck", cross)
g("case_list", "; ".join(case_labels))

# %% [markdown]
# Measured cases: {glue:text}`case_list`. {glue:text}`skipped_note` The table lists, for each, the real
# run's accuracies, the size of
# the attack effect, and the per-round decay factor
# $\lVert\delta_t\rVert / \lVert\delta_{t-1}\rVert$ in rounds without a
# malicious client. {glue:text}`selection_crosscheck`

# %% [markdown]
# ## The attack effect over the rounds

# %% tags=["hide-input"]
colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
burst_rounds = [r["round"] for r in docs[0]["rounds"] if r["malicious"]]
for ax in (ax1, ax2):
    for i, r in enumerate(burst_rounds):
        ax.axvspan(r - 0.5, r + 0.5, color="tab:red", alpha=0.12, lw=0, label="burst round" if i == 0 else None)
for k, (lab, d) in enumerate(zip(case_labels, docs)):
    rs = [r["round"] for r in d["rounds"]]
    ax1.plot(rs, [r["delta_norm"] for r in d["rounds"]], "o-", ms=3, color=colors[k], label=lab)
    ax2.plot(rs, [r["backdoor_acc"] for r in d["rounds"]], "o-", ms=3, color=colors[k], label=lab)
ax1.set_yscale("log")
ax1.set_ylabel(r"$\|W_t - W_t^{\mathrm{shadow}}\|_2$")
figures.legend_outside(ax1)
ax1.set_title("Attack effect on the trainable parameters (log scale)")
ax2.set_ylabel("backdoor accuracy")
ax2.set_xlabel("round")
ax2.set_ylim(-0.02, 1.02)
page.show_figure(fig, "attack-effect-per-round")

none_doc = by_defense.get("none", docs[0])
lead_doc = by_defense.get("leadfl", docs[-1])
for key, d in (("none", none_doc), ("leadfl", lead_doc)):
    a = d["summary"]["attack_effect"]
    g(f"delta_final_{key}", a["delta_norm_final"])
    g(f"delta_max_{key}", a["delta_norm_max"])
    g(f"decay_median_{key}", a["decay_benign_median"])
    g(f"decay_geomean_{key}", a["decay_benign_geomean"])
    g(f"decay_below1_{key}", 100 * a["decay_benign_frac_below_1"])
    g(f"decay_n_{key}", a["decay_benign_n"])
    g(f"retained_{key}", a["retained_geomean"] if a["retained_geomean"] is not None else float("nan"))
    g(f"same_agg_{key}", 100 * (a["same_aggregation_benign_frac"] or 0.0))
    g(f"bd_final_{key}", 100 * d["summary"]["backdoor_acc_final"])
    g(f"bd_avg_{key}", 100 * d["summary"]["backdoor_acc_avg"])
    upd = [r["shadow_update_norm"] for r in d["rounds"] if r["shadow_update_norm"] is not None]
    g(f"update_median_{key}", float(np.median(upd)) if upd else float("nan"))
    first = d["rounds"][0]
    g(f"delta_round0_{key}", first["delta_norm"])
    st = a["stretches"][0] if a["stretches"] else None
    g(f"first_end_{key}", st["last_benign_round"] if st else -1)
    g(f"first_retained_{key}", st["retained"] if st else float("nan"))
    g(f"bd_first_end_{key}", 100 * d["rounds"][st["last_benign_round"]]["backdoor_acc"] if st else float("nan"))
ratio = lead_doc["summary"]["attack_effect"]["delta_norm_final"] / none_doc["summary"]["attack_effect"]["delta_norm_final"]
g("delta_final_ratio", ratio)

# %% [markdown]
# The first burst round already leaves an attack effect of norm
# {glue:text}`delta_round0_none:.3f` without a client defense
# ({glue:text}`delta_round0_leadfl:.3f` with LeadFL), of the order of a whole
# round's progress of the shadow run (median update norm per round
# {glue:text}`update_median_none:.3f`). Without a client defense the attack
# effect ends the run at {glue:text}`delta_final_none:.3f` (maximum
# {glue:text}`delta_max_none:.3f`); with LeadFL at
# {glue:text}`delta_final_leadfl:.3f` (maximum
# {glue:text}`delta_max_leadfl:.3f`), a ratio of
# {glue:text}`delta_final_ratio:.2f`. The backdoor accuracy ends at
# {glue:text}`bd_final_none:.1f`% without and {glue:text}`bd_final_leadfl:.1f`%
# with LeadFL (averages over the rounds {glue:text}`bd_avg_none:.1f`% and
# {glue:text}`bd_avg_leadfl:.1f`%).
#
# At the end of the first benign stretch (round {glue:text}`first_end_none:d`)
# the backdoor accuracy is {glue:text}`bd_first_end_none:.1f`% without and
# {glue:text}`bd_first_end_leadfl:.1f`% with LeadFL, while the norm of the
# attack effect at that round, relative to its value after the burst, is
# {glue:text}`first_retained_none:.2f` and {glue:text}`first_retained_leadfl:.2f`.
# Note what the norm does and does not say: $\delta_t$ is the *whole*
# difference between the two trajectories, the backdoor direction and
# everything that training has since built on top of the difference. A run
# that has recovered its backdoor accuracy can still be far from its shadow in
# parameter space.

# %% [markdown]
# ## Where the attack effect sits: per layer

# %% tags=["hide-input"]
LAYERS = ae.layer_names(cfg0)  # conv1, BN1, ... of the network the runs train

fig, axes = plt.subplots(1, len(docs), figsize=(4 * len(docs), 3.4), sharey=True, squeeze=False)
for ax, lab, d in zip(axes[0], case_labels, docs):
    groups = ae.layer_groups(d, LAYERS)
    rs = [r["round"] for r in d["rounds"]]
    for i, r in enumerate(burst_rounds):
        ax.axvspan(r - 0.5, r + 0.5, color="tab:red", alpha=0.12, lw=0)
    for k, (grp, names) in enumerate(groups.items()):
        ys = [math.sqrt(sum(r["delta_layers"][n] ** 2 for n in names)) for r in d["rounds"]]
        ax.plot(rs, ys, "-", color=colors[k], label=grp)
    ax.set_yscale("log")
    ax.set_title(lab, fontsize=10)
    ax.set_xlabel("round")
axes[0][0].set_ylabel(r"$\|\delta_t\|$ per layer")
figures.legend_outside(axes[0][-1])
page.show_figure(fig, "attack-effect-per-layer")

share_rows = []
for lab, d in zip(case_labels, docs):
    last = d["rounds"][-1]
    tot = sum(v ** 2 for v in last["delta_layers"].values())
    share_rows.append({"case": lab, **{grp: sum(last["delta_layers"][n] ** 2 for n in names) / tot if tot else np.nan
                                       for grp, names in ae.layer_groups(d, LAYERS).items()}})
share = pd.DataFrame(share_rows).set_index("case")
page.show_table(share.style.format("{:.1%}"), "Share of ‖δ‖² per layer in the last round", name="layer-share",
                data=share)
for key, d in (("none", none_doc), ("leadfl", lead_doc)):
    lab = case_labels[docs.index(d)]
    g(f"share_fc_{key}", 100 * share.loc[lab, "fc"] if "fc" in share.columns else float("nan"))
    g(f"share_conv2_{key}", 100 * share.loc[lab, "conv2"] if "conv2" in share.columns else float("nan"))

# %% [markdown]
# The fully connected layer and the second convolution hold almost all
# parameters, and almost all of the attack effect: in the last round
# {glue:text}`share_fc_none:.1f`% of $\lVert\delta\rVert^2$ lies in the
# fully connected layer and {glue:text}`share_conv2_none:.1f`% in the second
# convolution without a client defense ({glue:text}`share_fc_leadfl:.1f`% and
# {glue:text}`share_conv2_leadfl:.1f`% with LeadFL).

# %% [markdown]
# ## Does benign training shrink the attack effect?

# %% tags=["hide-input"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 2]})
all_dec = [r["decay"] for d in docs for r in d["rounds"] if r["decay"] is not None]
if all_dec:
    lo, hi = min(all_dec), max(all_dec)
    bins = np.linspace(lo - 0.05 * (hi - lo) - 1e-3, hi + 0.05 * (hi - lo) + 1e-3, 25)
for k, (lab, d) in enumerate(zip(case_labels, docs)):
    dec = [(r["round"], r["decay"]) for r in d["rounds"] if r["decay"] is not None]
    if dec:
        ax1.plot(*zip(*dec), "o", ms=4, color=colors[k], label=lab)
        ax2.hist([v for _, v in dec], bins=bins, histtype="step", color=colors[k], lw=1.5, label=lab)
for ax in (ax1,):
    for i, r in enumerate(burst_rounds):
        ax.axvspan(r - 0.5, r + 0.5, color="tab:red", alpha=0.12, lw=0)
ax1.axhline(1, color="k", lw=0.8)
ax2.axvline(1, color="k", lw=0.8)
ax1.set_xlabel("round")
ax1.set_ylabel(r"$\|\delta_t\| / \|\delta_{t-1}\|$ (benign rounds)")
ax2.set_xlabel("one-round decay factor")
ax2.set_ylabel("benign rounds")
figures.legend_outside(ax2)
page.show_figure(fig, "decay-factors")

stretch_rows = []
for lab, d in zip(case_labels, docs):
    for s in d["summary"]["attack_effect"]["stretches"]:
        stretch_rows.append({"case": lab, "burst round": s["burst_round"], "benign rounds": s["benign_rounds"],
                             "‖δ‖ after burst": s["delta_after_burst"], "‖δ‖ at end": s["delta_end"],
                             "retained": s["retained"], "per round": s["per_round"]})
if stretch_rows:
    stretches = pd.DataFrame(stretch_rows).set_index(["case", "burst round"])
    page.show_table(stretches.style.format(precision=3), "Benign stretches after each burst", name="stretches",
                    data=stretches)

# %% [markdown]
# Over the {glue:text}`decay_n_none:d` benign rounds, the one-round factor
# $\lVert\delta_t\rVert/\lVert\delta_{t-1}\rVert$ has median
# {glue:text}`decay_median_none:.3f` (geometric mean
# {glue:text}`decay_geomean_none:.3f`) without a client defense, and the attack
# effect shrank in {glue:text}`decay_below1_none:.0f`% of them; with LeadFL the
# median is {glue:text}`decay_median_leadfl:.3f` (geometric mean
# {glue:text}`decay_geomean_leadfl:.3f`, shrinking in
# {glue:text}`decay_below1_leadfl:.0f`%). Over a whole benign stretch after a
# burst, the fraction of the attack effect that survives is, in geometric mean
# over the stretches, {glue:text}`retained_none:.2f` without and
# {glue:text}`retained_leadfl:.2f` with LeadFL. {glue:text}`decay_verdict`
# {glue:text}`other_cases`
#
# The measured factor is not only $\lVert A_t\rVert$ of
# {ref}`deriv-attack-effect`: the aggregator chose the same benign clients in
# both runs in only {glue:text}`same_agg_none:.0f`% of the benign rounds
# without a client defense ({glue:text}`same_agg_leadfl:.0f`% with LeadFL), and
# every other choice adds its own difference to $\delta_t$. A growing norm
# means that the two trajectories drift further apart in that round, as the
# training of a non-convex model does from any perturbation.

# %% tags=["hide-input"]
dn, dl = (none_doc["summary"]["attack_effect"]["decay_benign_median"],
          lead_doc["summary"]["attack_effect"]["decay_benign_median"])
if dn >= 0.95:
    verdict = ("Without a client defense the attack effect does not decay: benign rounds leave it "
               "essentially unchanged or larger, as the derivations predict for a product of factors "
               "close to the identity.")
else:
    verdict = ("Benign rounds do shrink the attack effect without a client defense, faster than a "
               "product of factors close to the identity would.")
if dl < dn - 0.02:
    verdict += " LeadFL lowers the typical factor."
elif dl > dn + 0.02:
    verdict += " LeadFL does not lower the typical factor; it raises it."
else:
    verdict += " LeadFL leaves the typical factor about where it is."
g("decay_verdict", verdict)
others = []
for c, d in zip(cfgs, docs):
    if c.client_defense not in ("none", "leadfl"):
        a = d["summary"]["attack_effect"]
        others.append(f"With {label(c)} the median factor is {a['decay_benign_median']:.3f} and the final norm "
                      f"{a['delta_norm_final']:.3f}.")
g("other_cases", " ".join(others))

# %% [markdown]
# ## LeadFL's Hessian estimates against the exact diagonal
#
# The comparison points are the global models after rounds
# {glue:text}`h_rounds` of the benign run (no attack, no client defense); from
# each, a benign client takes plain momentum-SGD steps on its own data, and at
# its local steps {glue:text}`h_steps` we compute, on
# {glue:text}`h_coords:d` coordinates spread over all parameter tensors,
# the exact diagonal $H_{jj}$ of the mini-batch loss at $W_i$ (one
# Hessian-vector product per coordinate, by double backward, BatchNorm in train
# mode as in training) and the estimates below. With momentum $\mu$ the steps are
# $v_i = \mu v_{i-1} + g_i$, $W_{i+1} = W_i - \eta v_i$, so
# $\Delta W_i = W_i - W_{i-1} = -\eta v_{i-1}$ and
# $\tilde W_{i+1} = W_i - \eta v_i$:
#
# | estimate | formula | what it equals here |
# |---|---|---|
# | secant | $(g_i - g_{i-1}) / \Delta W_i$ | the finite-difference diagonal of {ref}`deriv-obd`; momentum only changes the step it divides by |
# | secant, same batch | $(\nabla L(W_i;B_i) - \nabla L(W_{i-1};B_i)) / \Delta W_i$ | diagnostic: the secant without mini-batch noise |
# | paper | $(\tilde W_{i+1} - W_i - \Delta W_i)/\eta$ | $-(v_i - v_{i-1}) = -\sum_k \mu^k (g_{i-k} - g_{i-k-1})$ |
# | corrected | $(W_i - \tilde W_{i+1} + \Delta W_i)/\eta$ | $+(v_i - v_{i-1})$, exactly minus the paper's |
# | code | $(D + \eta)/\eta^2$, $D = \tilde W_{i+1} - W_i - g_{i-1} - \eta$ | $-(\eta v_i + g_{i-1})/\eta^2$: reading $-D$ as $\eta(1 - \eta\tilde H)$ |
#
# The paper's and the corrected estimate are gradient differences, not
# curvatures: they are not divided by the step, so they estimate
# $(H\Delta W_i)_j$, a curvature times a step of size $\eta\lvert v\rvert$. For
# them the sign of the estimate follows the sign of the step as much as the
# sign of the curvature. The code's $D$ uses the previous raw gradient
# $g_{i-1}$ as the code stores it after an epoch's first mini-batch (later ones
# store the clipped sum of the gradient and the regulariser term); any decreasing
# affine reading of $D$ as a curvature has the same rank and Pearson
# correlations, only the sign agreement depends on the reading.

# %% tags=["hide-input"]
hs = hdoc["summary"]["hessian"]
NICE = ae.ESTIMATE_NAMES  # readable names of the estimates (their formulas: the derivations chapter)

tab_exact = ae.metrics_table(hs["vs_exact"])
page.show_table(tab_exact.style.format({c: "{:.3g}" for c in tab_exact.columns if c != "n"}),
                "Against the exact Hessian diagonal (pooled over all points and coordinates)", name="vs-exact-diagonal",
                data=tab_exact)
tab_hdw = ae.metrics_table(hs["vs_hdw"])
page.show_table(tab_hdw.style.format({c: "{:.3g}" for c in tab_hdw.columns if c != "n"}),
                "Gradient differences against the exact H ΔW (what a gradient difference estimates)",
                name="vs-exact-hdw", data=tab_hdw)

g("h_rounds", ", ".join(str(r) for r in hopts.rounds))
g("h_steps", ", ".join(str(s) for s in hopts.steps))
g("h_coords", hopts.coordinates)
g("h_points", len(hdoc["points"]))
for k, v in hs["vs_exact"].items():
    for m in ("sign_agreement", "spearman", "pearson", "median_rel_err", "fit_rel_err"):
        g(f"h_{k}_{m}", v[m] if v[m] is not None else float("nan"))
    g(f"h_{k}_sign_pct", 100 * v["sign_agreement"] if v["sign_agreement"] is not None else float("nan"))
for k, v in hs["vs_hdw"].items():
    for m in ("pearson", "spearman", "median_rel_err", "fit_rel_err"):
        g(f"hdw_{k}_{m}", v[m] if v[m] is not None else float("nan"))
g("h_frac_positive", 100 * hs["exact"]["frac_positive"])
g("h_median_abs", hs["exact"]["median_abs"])
g("h_frac_clip", 100 * float(np.mean([p["frac_prev_grad_above_q"] for p in hdoc["points"]])))
_dd = np.concatenate([p["diag_dw"] for p in hdoc["points"]])
_hd = np.concatenate([p["hdw"] for p in hdoc["points"]])
g("h_diag_share_median", 100 * float(np.median(np.abs(_dd[_hd != 0]) / np.abs(_hd[_hd != 0]))))
_sec, _pos = hs["vs_exact"]["secant"]["sign_agreement"], hs["exact"]["frac_positive"]
g("secant_vs_const", "fewer than the constant guess “positive” would" if _sec < _pos
  else "more than the constant guess “positive” would")

# %% tags=["hide-input"]
pts = hdoc["points"]
exact = np.concatenate([p["exact"] for p in pts])
rounds_of = np.concatenate([[p["round"]] * len(p["exact"]) for p in pts])
panels = list(ae.APPROXIMATIONS) + ["diag_dw"]


fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
for ax, name in zip(axes.flat, panels):
    if name == "diag_dw":
        x, y = np.concatenate([p["hdw"] for p in pts]), np.concatenate([p["diag_dw"] for p in pts])
        xl, yl = r"exact $(H\Delta W_i)_j$", r"diagonal part $H_{jj}\Delta W_{i,j}$"
    else:
        x, y = exact, np.concatenate([p[name] for p in pts])
        xl, yl = r"exact $H_{jj}$", NICE[name]
    ok = np.isfinite(x) & np.isfinite(y)
    for k, r in enumerate(sorted(set(rounds_of.tolist()))):
        sel = ok & (rounds_of == r)
        ax.scatter(x[sel], y[sel], s=5, alpha=0.5, color=colors[k], label=f"after round {r}")
    lx = np.quantile(np.abs(x[ok][x[ok] != 0]), 0.1) if (x[ok] != 0).any() else 1.0
    ly = np.quantile(np.abs(y[ok][y[ok] != 0]), 0.1) if (y[ok] != 0).any() else 1.0
    ax.set_xscale("symlog", linthresh=lx)
    ax.set_yscale("symlog", linthresh=ly)
    for axis, lt in ((ax.xaxis, lx), (ax.yaxis, ly)):  # no labels at +-linthresh, next to 0
        axis.set_major_formatter(figures.symlog_formatter(lt))
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel(xl, fontsize=9)
    ax.set_ylabel(yl, fontsize=9)
    ax.tick_params(labelsize=7)
figures.legend_outside(axes.flat[2], markerscale=2)
fig.suptitle("Estimates against the exact values (symmetric log axes), pooled over the points")
page.show_figure(fig, "estimates-vs-exact")

# per-point Spearman correlation with the exact diagonal
pp = pd.DataFrame([{"round": p["round"], "step": p["step"], **{NICE[k]: p[k]["spearman"] for k in ae.APPROXIMATIONS}}
                   for p in hs["per_point"]]).set_index(["round", "step"])
page.show_table(pp.style.format("{:.3f}"), "Spearman correlation with the exact diagonal, per point",
                name="spearman-per-point", data=pp)

# the diagonal picture of the derivations: (1 - lr H_jj)^K per coordinate, K local steps per round
factor = ae.diagonal_factors(exact, cfg0.lr, steps_per_round)
g("h_factor_median", float(np.median(factor)))
g("h_factor_below_099", 100 * float(np.mean(factor < 0.99)))
g("h_factor_below_09", 100 * float(np.mean(factor < 0.9)))
g("thr_small", 1)
g("thr_large", 10)
g("h_eta_h_median", float(np.median(cfg0.lr * np.abs(exact))))

# %% [markdown]
# Pooled over the {glue:text}`h_points:d` points, the exact diagonal is
# positive in {glue:text}`h_frac_positive:.0f`% of the coordinates, with median
# magnitude {glue:text}`h_median_abs:.3g`. Against it:
#
# - the **secant** agrees in sign in {glue:text}`h_secant_sign_pct:.0f`% of the
#   coordinates, {glue:text}`secant_vs_const`, with Spearman correlation
#   {glue:text}`h_secant_spearman:.2f` and median relative error
#   {glue:text}`h_secant_median_rel_err:.3g`; removing the mini-batch noise
#   (same batch) gives {glue:text}`h_secant_same_batch_sign_pct:.0f`%,
#   {glue:text}`h_secant_same_batch_spearman:.2f` and
#   {glue:text}`h_secant_same_batch_median_rel_err:.3g`. The second table shows
#   why. The same-batch gradient difference is the Hessian applied to the step
#   (Pearson {glue:text}`hdw_grad_diff_same_batch_pearson:.2f` with the exact
#   $H\Delta W_i$), but the diagonal part $H_{jj}\Delta W_{i,j}$ is in median
#   only {glue:text}`h_diag_share_median:.2g`% of $(H\Delta W_i)_j$: a step
#   moves all coordinates at once, and the off-diagonal terms make up almost
#   all of every coordinate's gradient change. Dividing by the step cannot
#   isolate $H_{jj}$. Between consecutive mini-batches the sampling noise comes
#   on top (Pearson {glue:text}`hdw_grad_diff_pearson:.2f` of
#   $g_i - g_{i-1}$ with $H\Delta W_i$);
# - the **paper's** formula agrees in sign in
#   {glue:text}`h_paper_sign_pct:.0f`% (Spearman
#   {glue:text}`h_paper_spearman:.2f`), the **corrected** one in
#   {glue:text}`h_corrected_sign_pct:.0f`% (Spearman
#   {glue:text}`h_corrected_spearman:.2f`). Being exact negatives, their
#   correlations are opposite, and neither is a curvature estimate per
#   coordinate: both omit the division by the step, and even with it they would
#   inherit the secant's problem. What the corrected formula does track is the
#   quantity it is built from, a momentum-smoothed gradient difference: Pearson
#   {glue:text}`hdw_corrected_pearson:.2f` with $H\Delta W_i$, close to the
#   value for $g_i - g_{i-1}$ itself. The sign error of the paper's formula
#   ({ref}`deriv-leadfl-paper`) is real, but per coordinate it hardly matters,
#   because neither sign carries the curvature;
# - the **code's** $D$ agrees in sign in {glue:text}`h_code_sign_pct:.0f`%
#   (Spearman {glue:text}`h_code_spearman:.2f`, Pearson
#   {glue:text}`h_code_pearson:.2f`): it is dominated by the previous gradient
#   and carries no curvature information, as {ref}`deriv-leadfl-code` derives.
#   (Clipping the stored gradient at $q$, as the code does after the first
#   mini-batch, would change it in {glue:text}`h_frac_clip:.1f`% of these
#   coordinates.)
#
# **The product near the identity.** With learning rate {glue:text}`lr:.2f`
# the median of $\eta\lvert H_{jj}\rvert$ is {glue:text}`h_eta_h_median:.2g`, so
# the diagonal picture of {ref}`deriv-attack-effect` gives a one-round factor
# $(1 - \eta H_{jj})^K$ over the {glue:text}`steps_per_round:d` local steps of
# median {glue:text}`h_factor_median:.4f`; only
# {glue:text}`h_factor_below_099:.1f`% of the coordinates would shrink by more
# than {glue:text}`thr_small:d`% per round and {glue:text}`h_factor_below_09:.1f`%
# by more than {glue:text}`thr_large:d`%. The curvature alone therefore predicts
# factors close to the identity's, as the derivations claim. The measured one-round factors of the whole
# attack effect (median {glue:text}`decay_median_none:.3f` without a client
# defense) include what the diagonal picture leaves out: the off-diagonal
# curvature, the non-linearity, and the aggregator's different choices in the
# two runs. {glue:text}`growth_verdict`

# %% tags=["hide-input"]
growth = ("Measured, the attack effect grows in the typical benign round: the real and the shadow "
          "trajectories drift apart faster than the curvature pulls them together." if dn > 1 else
          "Measured, the attack effect shrinks in the typical benign round, but more slowly than a "
          "rate set by the whole curvature would make it.")
g("growth_verdict", growth)
lead_effect = ("comes with a larger attack effect, not a smaller one" if ratio > 1
               else "comes with a smaller attack effect")
g("lead_effect", lead_effect)
corr_max = max(abs(hs["vs_exact"][k]["spearman"] or 0) for k in ("paper", "corrected", "code"))
g("h_corr_max", corr_max)

# %% [markdown]
# (ae-paper)=
# ## At the paper protocol
#
# Everything above trains one local epoch per round. LeadFL's effect depends on the number of
# local steps ({ref}`ot-local-steps`: at one local epoch it does not lower the backdoor
# accuracy, at ten it does), so `params/attack_effect.paper.yaml` defines the same measurement
# at the paper protocol: ten local epochs ({glue:text}`ae_paper_steps` local steps per client
# and round), the whole test set in every round, 40 rounds of the same periodic bursts under
# the reference Bulyan, seeds 0 to 2, and the Hessian comparison at local steps
# {glue:text}`ae_paper_h_steps` of a round. Each real run is the same configuration as a
# periodic cell of {ref}`sel-paper`. The book shows what is stored and never computes it:
# `python -m flcore.experiments.attack_effect params/attack_effect.paper.yaml` does (one
# measurement: `--case 1 --set seed=0`; case 1 is no client defense, case 2 LeadFL; a
# measurement is a real run and its shadow, about 40 minutes of one CPU core here).

# %% tags=["hide-input"]
paper = ae.stored(params.params_path("attack_effect", "paper"))
pm = paper["measured"]
glue.glue_text("ae_paper_n", len(pm))
glue.glue_text("ae_paper_total", len(pm) + len(paper["missing"]))
glue.glue_text("ae_paper_missing", "; ".join(f"{label(c)}, seed {c.seed}" for c in paper["missing"]) or "none")
glue.glue_text("ae_paper_h_steps", ", ".join(str(s) for s in paper["options"].steps))
glue.glue_text("ae_paper_h_rounds", ", ".join(str(r) for r in paper["options"].rounds))
glue.glue_text("ae_paper_steps", stats.local_steps(pm[0][0].to_dict())[0] if pm else
               stats.local_steps({**cfg0.to_dict(), "local_epochs": 10})[0])
print(f"paper protocol: {len(pm)} of {len(pm) + len(paper['missing'])} measurements stored; Hessian comparison "
      f"{'stored' if paper['hessian'] else 'not stored'}")
if pm:
    prow = []
    for c, d in pm:
        a = d["summary"]["attack_effect"]
        prow.append({"case": label(c), "seed": c.seed, "hash": d["hash"],
                     "backdoor acc. avg (%)": 100 * d["summary"]["backdoor_acc_avg"],
                     "backdoor acc. final (%)": 100 * d["summary"]["backdoor_acc_final"],
                     "main acc. final (%)": 100 * d["summary"]["main_acc_final"],
                     "‖δ‖ final": a["delta_norm_final"], "‖δ‖ max": a["delta_norm_max"],
                     "decay median": a["decay_benign_median"], "decay geo. mean": a["decay_benign_geomean"],
                     "benign rounds with decay < 1": a["decay_benign_frac_below_1"],
                     "retained per stretch (geo. mean)": a["retained_geomean"],
                     "same aggregation (benign rounds)": a["same_aggregation_benign_frac"]})
    ptab = pd.DataFrame(prow).set_index(["case", "seed"])
    page.show_table(ptab.style.format(precision=3), "Paper protocol: the measured cases per seed, accuracies "
                    "and the attack effect ‖δ‖ with its one-round decay in benign rounds", name="paper-cases",
                    data=ptab, docs=[d for _, d in pm])

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    pburst = [r["round"] for r in pm[0][1]["rounds"] if r["malicious"]]
    for ax in (ax1, ax2):
        for i, r in enumerate(pburst):
            ax.axvspan(r - 0.5, r + 0.5, color="tab:red", alpha=0.12, lw=0, label="burst round" if i == 0 else None)
    for c, d in pm:
        col = colors[["none", "leadfl", "ldp", "flwbc"].index(c.client_defense) % len(colors)]
        ls = ["-", "--", ":", "-."][c.seed % 4]
        rs = [r["round"] for r in d["rounds"]]
        ax1.plot(rs, [r["delta_norm"] for r in d["rounds"]], ls, marker="o", ms=2.5, color=col,
                 label=f"{label(c)}, seed {c.seed}")
        ax2.plot(rs, [r["backdoor_acc"] for r in d["rounds"]], ls, marker="o", ms=2.5, color=col)
    ax1.set_yscale("log")
    ax1.set_ylabel(r"$\|W_t - W_t^{\mathrm{shadow}}\|_2$")
    ax1.set_title("Paper protocol: attack effect on the trainable parameters (log scale)")
    figures.legend_outside(ax1)
    ax2.set_ylabel("backdoor accuracy")
    ax2.set_xlabel("round")
    ax2.set_ylim(-0.02, 1.02)
    page.show_figure(fig, "paper-attack-effect-per-round")

# per client defense, mean ± sd over the stored seeds (with the seeds), and LeadFL over none per seed
for key, (field, digits, scale, unit) in {"delta_final": ("delta_norm_final", 3, 1, ""),
                                          "delta_max": ("delta_norm_max", 3, 1, ""),
                                          "decay_median": ("decay_benign_median", 3, 1, ""),
                                          "decay_below1": ("decay_benign_frac_below_1", 0, 100, " %"),
                                          "retained": ("retained_geomean", 2, 1, ""),
                                          "same_agg": ("same_aggregation_benign_frac", 0, 100, " %"),
                                          "bd_avg": ("backdoor_acc_avg", 1, 100, " %"),
                                          "bd_final": ("backdoor_acc_final", 1, 100, " %")}.items():
    for cd in ("none", "leadfl"):
        glue.glue_text(f"ae_paper_{key}_{cd}", tables.measurement_cell(pm, cd, field, digits, scale, unit))
paper_ratio = ae.matched_ratios(pm, "delta_norm_final")
glue.glue_text("ae_paper_ratio", tables.ratio_cell(paper_ratio))
glue.glue_text("ae_paper_decay_ratio", tables.ratio_cell(ae.matched_ratios(pm, "decay_benign_median"), digits=3))
for cd in ("none", "leadfl"):
    glue.glue_text(f"ae_paper_decay_dir_{cd}", tables.decay_direction(pm, cd))
# what the norm says about the backdoor: LeadFL's final backdoor accuracy and attack effect, each
# against the undefended run of the same seed
bd_ratio = ae.matched_ratios(pm, "backdoor_acc_final")
if paper_ratio and bd_ratio:
    lower_bd = all(v < 1 for v in bd_ratio.values())
    larger_effect = all(v > 1 for v in paper_ratio.values())
    if lower_bd and larger_effect:
        paper_reading = ("In every seed with both measurements LeadFL ends with a lower backdoor accuracy and a "
                         "larger attack effect than the undefended run: what removes the backdoor is not a smaller "
                         "distance to the shadow run. The norm measures the whole difference of the two "
                         "trajectories, and LeadFL's regulariser moves the benign clients' models further, so "
                         "the backdoor can be unlearnt in a few directions while the two runs drift apart in all "
                         "others.")
    elif lower_bd:
        paper_reading = ("In every seed with both measurements LeadFL ends with a lower backdoor accuracy than the "
                         "undefended run, and its attack effect is not larger in every seed.")
    else:
        paper_reading = ("LeadFL does not end with a lower backdoor accuracy than the undefended run in every seed "
                         "with both measurements.")
else:
    paper_reading = "No seed has both paper-protocol measurements stored yet."
glue.glue_text("ae_paper_reading", paper_reading)
# cross-check: each real run against the selection grid's run of the same configuration (same hash)
pcross = []
for c, d in pm:
    plain = store.load_valid(store.results_dir() / "selection" / f"{d['hash']}.json")
    same = rounds.same_rounds(d, plain, keys=("selected", "main_acc", "backdoor_acc"))
    if same is not None:
        kernels = (plain["provenance"].get("cpu_capability", "not recorded"), d["provenance"].get("cpu_capability",
                                                                                              "not recorded"))
        pcross.append(f"{label(c)}, seed {c.seed}: " + ("identical in every round" if same else
                      f"different (CPU kernels {kernels[0]} there, {kernels[1]} here; backdoor accuracy averaged "
                      f"over the rounds {100 * plain['summary']['backdoor_acc_avg']:.1f} % there, "
                      f"{100 * d['summary']['backdoor_acc_avg']:.1f} % here)"))
glue.glue_text("ae_paper_crosscheck", "; ".join(pcross) if pcross else "no selection run of these configurations is stored")

# the Hessian comparison at the paper protocol's local-step count
ph = paper["hessian"]
if ph is not None:
    phs = ph["summary"]["hessian"]
    ptab_h = ae.metrics_table(phs["vs_exact"])
    page.show_table(ptab_h.style.format({c: "{:.3g}" for c in ptab_h.columns if c != "n"}),
                    "Paper protocol: the estimates against the exact Hessian diagonal (pooled over the points)",
                    name="paper-vs-exact-diagonal", data=ptab_h)
    pfactor = ae.diagonal_factors(np.concatenate([p["exact"] for p in ph["points"]]), ph["config"]["lr"],
                                  stats.local_steps(ph["config"])[0])
    glue.glue_text("ae_paper_h_factor_median", float(np.median(pfactor)), 4)
    glue.glue_text("ae_paper_h_factor_below_099", formats.fmt_pct(100 * float(np.mean(pfactor < 0.99))))
    glue.glue_text("ae_paper_h_factor_below_09", formats.fmt_pct(100 * float(np.mean(pfactor < 0.9))))
    glue.glue_text("ae_paper_h_points", len(ph["points"]))
    for k in ae.APPROXIMATIONS:
        v = phs["vs_exact"][k]
        glue.glue_text(f"ae_paper_h_{k}_spearman", v["spearman"], 2)
        glue.glue_text(f"ae_paper_h_{k}_sign", formats.fmt_pct(100 * v["sign_agreement"] if v["sign_agreement"]
                                                              is not None else None, 0))
    glue.glue_text("ae_paper_h_corr_max", max(abs(phs["vs_exact"][k]["spearman"] or 0)
                                              for k in ("paper", "corrected", "code")), 2)
else:
    for k in ("factor_median", "factor_below_099", "factor_below_09", "points", "corr_max",
              *(f"{a}_{m}" for a in ae.APPROXIMATIONS for m in ("spearman", "sign"))):
        glue.glue_text(f"ae_paper_h_{k}", "not stored")

# %% [markdown]
# Stored at the paper protocol: {glue:text}`ae_paper_n` of {glue:text}`ae_paper_total`
# measurements (not stored: {glue:text}`ae_paper_missing`). Each value below is the mean ± sd
# over the seeds named beside it (one seed: no spread).
#
# Without a client defense the attack effect ends the 40 rounds at a norm of
# {glue:text}`ae_paper_delta_final_none` (maximum {glue:text}`ae_paper_delta_max_none`), with
# LeadFL at {glue:text}`ae_paper_delta_final_leadfl` (maximum
# {glue:text}`ae_paper_delta_max_leadfl`). Seed by seed (the same initialisation, data order
# and selection), LeadFL's final norm is {glue:text}`ae_paper_ratio` times the undefended one
# (at one local epoch, above: {glue:text}`delta_final_ratio:.2f`). The backdoor accuracy ends at
# {glue:text}`ae_paper_bd_final_none` without and {glue:text}`ae_paper_bd_final_leadfl` with
# LeadFL (averages over the rounds {glue:text}`ae_paper_bd_avg_none` and
# {glue:text}`ae_paper_bd_avg_leadfl`).
#
# Over the benign rounds the median one-round factor
# $\lVert\delta_t\rVert/\lVert\delta_{t-1}\rVert$ is {glue:text}`ae_paper_decay_median_none`
# without a client defense, so the attack effect {glue:text}`ae_paper_decay_dir_none` in the
# typical benign round, and {glue:text}`ae_paper_decay_median_leadfl` with LeadFL
# ({glue:text}`ae_paper_decay_dir_leadfl`); seed by seed LeadFL's median factor is
# {glue:text}`ae_paper_decay_ratio` times the undefended one. The attack effect shrank in
# {glue:text}`ae_paper_decay_below1_none` and {glue:text}`ae_paper_decay_below1_leadfl` of the
# benign rounds; over a whole benign stretch after a burst the surviving fraction is
# {glue:text}`ae_paper_retained_none` without and {glue:text}`ae_paper_retained_leadfl` with
# LeadFL (geometric mean over the stretches). The reference Bulyan averaged the same benign
# clients in the real and the shadow run in {glue:text}`ae_paper_same_agg_none` and
# {glue:text}`ae_paper_same_agg_leadfl` of the benign rounds. {glue:text}`ae_paper_reading`
#
# Each real run here is a periodic cell of the selection grid, recomputed. Against the stored
# selection run of the same configuration: {glue:text}`ae_paper_crosscheck`. Convolutions round
# differently under different CPU kernels (AVX2, AVX-512), and over 40 rounds of 380 local steps
# a difference at float32 rounding in round 0 grows into a different run; the attack effect is
# therefore always measured against the shadow run computed beside it, never against a run of
# another machine.
#
# **The Hessian at ten local epochs.** From the global models after rounds
# {glue:text}`ae_paper_h_rounds` of the benign paper-protocol run, at local steps
# {glue:text}`ae_paper_h_steps` ({glue:text}`ae_paper_h_points` points): the diagonal picture's
# one-round factor $(1 - \eta H_{jj})^K$ over the {glue:text}`ae_paper_steps` local steps has
# median {glue:text}`ae_paper_h_factor_median`; {glue:text}`ae_paper_h_factor_below_099` of the
# coordinates would shrink by more than 1 % per round and {glue:text}`ae_paper_h_factor_below_09`
# by more than 10 %. Spearman correlation with the exact diagonal (sign agreement): secant
# {glue:text}`ae_paper_h_secant_spearman` ({glue:text}`ae_paper_h_secant_sign`), the paper's
# formula {glue:text}`ae_paper_h_paper_spearman` ({glue:text}`ae_paper_h_paper_sign`), the
# corrected one {glue:text}`ae_paper_h_corrected_spearman`
# ({glue:text}`ae_paper_h_corrected_sign`), the code's {glue:text}`ae_paper_h_code_spearman`
# ({glue:text}`ae_paper_h_code_sign`).

# %% [markdown]
# ## Summary
#
# {glue:text}`decay_verdict` The curvature that benign training applies to
# single coordinates is small (a median diagonal factor
# {glue:text}`h_factor_median:.4f` per round), so the claim of
# {ref}`deriv-attack-effect` that the product of the factors
# $\mathrm{I}_d - \eta H$ stays close to the identity holds here.
# {glue:text}`growth_verdict` None of LeadFL's Hessian estimates, the printed,
# the corrected or the coded one, follows the exact diagonal (largest absolute
# Spearman correlation {glue:text}`h_corr_max:.2f`), so its regulariser cannot
# steer the curvature coordinate by coordinate. Whatever LeadFL changes in the
# backdoor accuracy {glue:text}`lead_effect` in parameter space, consistent
# with {ref}`deriv-leadfl-code`: the coded step mostly enlarges the benign
# clients' steps.
#
# At the paper protocol ({ref}`ae-paper`; {glue:text}`ae_paper_n` of
# {glue:text}`ae_paper_total` measurements stored), seed by seed LeadFL's final attack effect
# is {glue:text}`ae_paper_ratio` times the undefended one, and in the typical benign round the
# attack effect {glue:text}`ae_paper_decay_dir_none` without a client defense and
# {glue:text}`ae_paper_decay_dir_leadfl` with LeadFL; the curvature's median diagonal factor
# over the {glue:text}`ae_paper_steps` local steps of a round is
# {glue:text}`ae_paper_h_factor_median`, and the largest absolute Spearman correlation of
# LeadFL's estimates with the exact diagonal is {glue:text}`ae_paper_h_corr_max`.
