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
#    defense included), without a client defense and with LeadFL;
# 2. the exact Hessian diagonal of a benign client's batch loss on a sample of
#    coordinates, against the secant (finite-difference) diagonal, the paper's
#    printed formula, the seminar report's correction and the quantity the
#    reference code actually minimises.
#
# The chapter's setting is the paper protocol ({ref}`ae-paper`):
# {glue:text}`ae_paper_local_epochs` local epochs per round, {glue:text}`ae_paper_steps` local
# steps per client, the setting in which LeadFL lowers the backdoor accuracy
# ({ref}`ot-local-steps`). Of its {glue:text}`ae_paper_total` measurements
# {glue:text}`ae_paper_n` are stored ({glue:text}`ae_paper_seeds`). There LeadFL ends the
# run with a backdoor accuracy of {glue:text}`ae_paper_bd_final_leadfl`, against
# {glue:text}`ae_paper_bd_final_none` without a client defense, while seed by seed its final
# attack effect is {glue:text}`ae_paper_ratio` times the undefended one.
# {glue:text}`ae_paper_reading` In the typical benign round the attack effect
# {glue:text}`ae_paper_decay_dir_none` without a client defense and
# {glue:text}`ae_paper_decay_dir_leadfl` with LeadFL. Over the {glue:text}`ae_paper_steps`
# local steps of a round the diagonal picture's median one-round factor
# $(1 - \eta H_{jj})^K$ is {glue:text}`ae_paper_h_factor_median`, and the largest absolute
# Spearman correlation of LeadFL's Hessian estimates with the exact diagonal is
# {glue:text}`ae_paper_h_corr_max`.
#
# The paper-protocol measurements are stored runs: the book shows them and never computes
# them ({ref}`ae-paper` gives the command that does). The parameters below are those of
# `params/attack_effect.yaml` and define something else, the sweep the book does compute: the
# same measurements at {glue:text}`ae_one_local_epochs` local epoch per round, an ablation of
# the number of local steps, shown in its own section before the summary ({ref}`ae-one-epoch`).
# A missing
# measurement of that sweep is computed first (`flcore.experiments.attack_effect.measure` and
# `compare_hessian`); everything else is read from the results store
# (`results/attack_effect/`).

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
import torch

from flcore.analysis import effect, labels, params
from flcore.experiments import attack_effect as ae
from flcore.present import effect_figures as show
from flcore.present import glue, page
from flcore.storage import store

torch.set_num_threads(1)
spec = {"experiment": experiment, "profile": profile, "description": description, "base": base,
        "cases": cases, "hessian": hessian}
overrides = globals().pop("set", "")  # the parameter `set`; popping it gives Python's set() back

# the paper protocol: stored measurements, shown and never computed here
paper_path = params.params_path("attack_effect", "paper")
paper = ae.stored(paper_path)
pm, ph = paper["measured"], paper["hessian"]
paper_cfgs = ae.read_params(paper_path)[0]

# the one-local-epoch ablation: the parameters above, a missing measurement computed first
cfgs, hopts, _ = ae.read_params(spec, params.override_items(overrides))
docs = [ae.measure(c)[1] for c in cfgs]
hpath, hdoc = ae.compare_hessian(cfgs[0], hopts)
# a run that stopped before its first round (status "diverged") has nothing to show
skipped = [f"{labels.case_label(c)} ({d['status']} in round {d['summary'].get('diverged_round')})"
           for c, d in zip(cfgs, docs) if not d["rounds"]]
om = [(c, d) for c, d in zip(cfgs, docs) if d["rounds"]]
page.start_page("attack_effect", profile)

# every number of the prose, for each protocol: ae_paper_* and ae_one_*
twins = {d["hash"]: store.load_valid(store.results_dir() / "selection" / f"{d['hash']}.json") for _, d in pm + om}
for prefix, ms, setting_cfg, hd in (("ae_paper_", pm, paper_cfgs[0], ph), ("ae_one_", om, cfgs[0], hdoc)):
    texts = {**effect.setting_cells(setting_cfg), **effect.effect_cells(ms), **effect.verdicts(ms),
             **effect.share_cells(ms, ae.layer_names(setting_cfg)),
             **{f"h_{k}": v for k, v in effect.hessian_cells(hd).items()},
             "crosscheck": effect.crosscheck_text(ms, twins)}
    for key, text in texts.items():
        glue.glue_text(prefix + key, text)
glue.glue_text("ae_paper_total", len(pm) + len(paper["missing"]))
glue.glue_text("ae_paper_missing", "; ".join(f"{labels.case_label(c)}, seed {c.seed}" for c in paper["missing"])
               or "none")
glue.glue_text("ae_one_skipped", ("Not shown, because the run stopped early: " + "; ".join(skipped) + ".")
               if skipped else "")
glue.glue_text("ae_paper_planned_seeds", effect.seeds_text(c.seed for c in paper_cfgs))
# the one-epoch ablation's final attack effect, LeadFL over none (unformatted: the introduction formats it)
one_ratio = ae.matched_ratios(om, "delta_norm_final")
glue.glue_value("delta_final_ratio", sum(one_ratio.values()) / len(one_ratio) if one_ratio else float("nan"))
print(f"paper protocol: {len(pm)} of {len(pm) + len(paper['missing'])} measurements stored; Hessian comparison "
      f"{'stored' if ph else 'not stored'}")
print(f"one local epoch: {len(om)} measurements: "
      + ", ".join(f"{labels.case_label(c)} ({d['hash']})" for c, d in om) + f"; Hessian comparison: {hpath.name}")

# %% [markdown]
# (ae-paper)=
# ## Setting: the paper protocol
#
# `params/attack_effect.paper.yaml` defines the measurement at the paper protocol:
# Fashion-MNIST, {glue:text}`ae_paper_rounds` rounds of {glue:text}`ae_paper_clients_per_round`
# clients, {glue:text}`ae_paper_local_epochs` local epochs ({glue:text}`ae_paper_steps`
# mini-batch steps per client and round, learning rate {glue:text}`ae_paper_lr`, momentum
# {glue:text}`ae_paper_momentum`), evaluation on all {glue:text}`ae_paper_test_samples` test
# images in every round, without a client defense and with LeadFL,
# {glue:text}`ae_paper_planned_seeds`, and the Hessian comparison
# at local steps {glue:text}`ae_paper_h_steps` of a round. The selection is the seminar
# report's periodic burst schedule: in every cycle of {glue:text}`ae_paper_cycle` rounds, the
# first {glue:text}`ae_paper_burst` select {glue:text}`ae_paper_mal_per_burst` malicious
# clients, the other {glue:text}`ae_paper_benign_per_cycle` only benign ones. Every benign
# round therefore shows how benign training alone acts on the attack effect left by the
# preceding burst, which is exactly the quantity of {ref}`deriv-attack-effect` (the recursion
# after a burst). Each real run is the same configuration as a periodic cell of
# {ref}`sel-paper`.
#
# The book shows what is stored and never computes it:
# `python -m flcore.experiments.attack_effect params/attack_effect.paper.yaml` does (one
# measurement with `--case N --set seed=S`, `N` counting the file's cases in their order: no
# client defense, then LeadFL). A measurement is a real run and its shadow, about
# {glue:text}`ae_paper_wall_min` minutes of one CPU core here in the mean over the stored ones.
# Stored: {glue:text}`ae_paper_n` of
# {glue:text}`ae_paper_total` measurements, {glue:text}`ae_paper_seeds` (not stored:
# {glue:text}`ae_paper_missing`). Each value below is the mean ± sd over the seeds named beside
# it (one seed: no spread), and each figure draws the mean over the stored seeds with a band
# from the lowest to the highest one where there are several.
#
# **Server rule: the reference "Bulyan".** We use the reference code's rule
# (the average of a middle band of the updates ranked by a Krum score), not
# Multi-Krum, for two reasons. It is the rule of the alpha-sensitivity and
# selection experiments, so each real run here is the same configuration (same
# hash) as a periodic cell of {doc}`selection`, and this chapter explains the
# curves shown there. And with {glue:text}`ae_paper_mal_per_burst` malicious clients
# of {glue:text}`ae_paper_clients_per_round` both rules are taken over in a burst
# round (the BatchNorm-counter argument of {ref}`deriv-bn-counter`), so the
# choice does not decide whether a burst injects an attack effect; it changes
# which benign clients are averaged afterwards. A selecting rule also breaks the
# linear recursion of the derivations: the real and the shadow run may pick
# different benign clients in the same round. We record how often they pick the
# same ones.

# %% tags=["hide-input"]
if pm:
    show.show_cases(pm, "Paper protocol", "paper")

# %% [markdown]
# The table lists, for each measurement, the real run's accuracies, the size of the attack
# effect, and the per-round decay factor $\lVert\delta_t\rVert / \lVert\delta_{t-1}\rVert$ in
# rounds without a malicious client. Each real run here is a periodic cell of the selection
# grid, recomputed. Against the stored selection run of the same configuration:
# {glue:text}`ae_paper_crosscheck`. Convolutions round differently under different CPU kernels
# (AVX2, AVX-512), and over the rounds of many local steps a difference at float32 rounding in
# the first round grows into a different run; the attack effect is therefore always measured
# against the shadow run computed beside it, never against a run of another machine.

# %% [markdown]
# ## The attack effect over the rounds

# %% tags=["hide-input"]
if pm:
    show.show_rounds(pm, "Paper protocol", "paper")

# %% [markdown]
# The first burst round already leaves an attack effect of norm
# {glue:text}`ae_paper_delta_round0_none` without a client defense
# ({glue:text}`ae_paper_delta_round0_leadfl` with LeadFL), against a median update norm per
# round of the shadow run of {glue:text}`ae_paper_update_median_none`
# ({glue:text}`ae_paper_update_median_leadfl`). Without a client defense the attack effect ends
# the run at {glue:text}`ae_paper_delta_final_none` (maximum
# {glue:text}`ae_paper_delta_max_none`), with LeadFL at {glue:text}`ae_paper_delta_final_leadfl`
# (maximum {glue:text}`ae_paper_delta_max_leadfl`); seed by seed (the same initialisation, data
# order and selection) LeadFL's final norm is {glue:text}`ae_paper_ratio` times the undefended
# one. The backdoor accuracy ends at {glue:text}`ae_paper_bd_final_none` without and
# {glue:text}`ae_paper_bd_final_leadfl` with LeadFL (averages over the rounds
# {glue:text}`ae_paper_bd_avg_none` and {glue:text}`ae_paper_bd_avg_leadfl`; final main-task
# accuracy {glue:text}`ae_paper_main_final_none` and {glue:text}`ae_paper_main_final_leadfl`).
#
# At the end of the first benign stretch (round {glue:text}`ae_paper_first_end_none`) the
# backdoor accuracy is {glue:text}`ae_paper_bd_first_end_none` without and
# {glue:text}`ae_paper_bd_first_end_leadfl` with LeadFL, while the norm of the attack effect at
# that round, relative to its value after the burst, is
# {glue:text}`ae_paper_first_retained_none` and {glue:text}`ae_paper_first_retained_leadfl`.
# {glue:text}`ae_paper_reading` Note what the norm does and does not say: $\delta_t$ is the
# *whole* difference between the two trajectories, the backdoor direction and everything that
# training has since built on top of the difference. A run that has recovered its backdoor
# accuracy can still be far from its shadow in parameter space.

# %% [markdown]
# ## Where the attack effect sits: per layer

# %% tags=["hide-input"]
if pm:
    show.show_layers(pm, ae.layer_groups(pm[0][1], ae.layer_names(pm[0][0])), "Paper protocol", "paper")

# %% [markdown]
# The fully connected layer and the second convolution hold almost all parameters. In the last
# round {glue:text}`ae_paper_share_fc_none` of $\lVert\delta\rVert^2$ lies in the fully
# connected layer and {glue:text}`ae_paper_share_conv2_none` in the second convolution without
# a client defense ({glue:text}`ae_paper_share_fc_leadfl` and
# {glue:text}`ae_paper_share_conv2_leadfl` with LeadFL); the figure shows how the attack effect
# of each layer develops over the rounds.

# %% [markdown]
# ## Does benign training shrink the attack effect?

# %% tags=["hide-input"]
if pm:
    show.show_decay(pm, "Paper protocol", "paper")

# %% [markdown]
# Over the benign rounds (per run {glue:text}`ae_paper_decay_n_none` without a client defense,
# {glue:text}`ae_paper_decay_n_leadfl` with LeadFL), the one-round factor
# $\lVert\delta_t\rVert/\lVert\delta_{t-1}\rVert$ has median
# {glue:text}`ae_paper_decay_median_none` (geometric mean
# {glue:text}`ae_paper_decay_geomean_none`) without a client defense, so the attack effect
# {glue:text}`ae_paper_decay_dir_none` in the typical benign round, and it shrank in
# {glue:text}`ae_paper_decay_below1_none` of them; with LeadFL the median is
# {glue:text}`ae_paper_decay_median_leadfl` (geometric mean
# {glue:text}`ae_paper_decay_geomean_leadfl`, shrinking in
# {glue:text}`ae_paper_decay_below1_leadfl`; the attack effect
# {glue:text}`ae_paper_decay_dir_leadfl`). Seed by seed LeadFL's median factor is
# {glue:text}`ae_paper_decay_ratio` times the undefended one. Over a whole benign stretch after
# a burst, the fraction of the attack effect that survives is, in geometric mean over the
# stretches, {glue:text}`ae_paper_retained_none` without and
# {glue:text}`ae_paper_retained_leadfl` with LeadFL. {glue:text}`ae_paper_decay_verdict`
# {glue:text}`ae_paper_other_cases`
#
# The measured factor is not only $\lVert A_t\rVert$ of {ref}`deriv-attack-effect`: the
# aggregator chose the same benign clients in both runs in only
# {glue:text}`ae_paper_same_agg_none` of the benign rounds without a client defense
# ({glue:text}`ae_paper_same_agg_leadfl` with LeadFL), and every other choice adds its own
# difference to $\delta_t$. A growing norm means that the two trajectories drift further apart
# in that round, as the training of a non-convex model does from any perturbation.

# %% [markdown]
# ## LeadFL's Hessian estimates against the exact diagonal
#
# The comparison points are the global models after rounds {glue:text}`ae_paper_h_rounds` of
# the benign paper-protocol run of seed {glue:text}`ae_paper_h_run_seed` (no attack, no client
# defense); from each, a benign client takes plain momentum-SGD steps on its own data, and at
# its local steps {glue:text}`ae_paper_h_steps` we compute, on {glue:text}`ae_paper_h_coords`
# coordinates spread over all parameter tensors, the exact diagonal $H_{jj}$ of the mini-batch
# loss at $W_i$ (one Hessian-vector product per coordinate, by double backward, BatchNorm in
# train mode as in training) and the estimates below. With momentum $\mu$ the steps are
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
if ph is not None:
    show.show_hessian(ph, "Paper protocol", "paper")

# %% [markdown]
# Pooled over the {glue:text}`ae_paper_h_points` points, the exact diagonal is positive in
# {glue:text}`ae_paper_h_frac_positive` of the coordinates, with median magnitude
# {glue:text}`ae_paper_h_median_abs`. Against it:
#
# - the **secant** agrees in sign in {glue:text}`ae_paper_h_secant_sign` of the coordinates,
#   {glue:text}`ae_paper_h_secant_vs_const`, with Spearman correlation
#   {glue:text}`ae_paper_h_secant_spearman` and median relative error
#   {glue:text}`ae_paper_h_secant_median_rel_err`; removing the mini-batch noise (same batch)
#   gives {glue:text}`ae_paper_h_secant_same_batch_sign`,
#   {glue:text}`ae_paper_h_secant_same_batch_spearman` and
#   {glue:text}`ae_paper_h_secant_same_batch_median_rel_err`. The second table shows why. The
#   same-batch gradient difference is the Hessian applied to the step (Pearson
#   {glue:text}`ae_paper_h_hdw_grad_diff_same_batch_pearson` with the exact $H\Delta W_i$), but
#   the diagonal part $H_{jj}\Delta W_{i,j}$ is in median only
#   {glue:text}`ae_paper_h_diag_share_median` of $(H\Delta W_i)_j$: a step moves all
#   coordinates at once, and the off-diagonal terms make up almost all of every coordinate's
#   gradient change. Dividing by the step cannot isolate $H_{jj}$. Between consecutive
#   mini-batches the sampling noise comes on top (Pearson
#   {glue:text}`ae_paper_h_hdw_grad_diff_pearson` of $g_i - g_{i-1}$ with $H\Delta W_i$);
# - the **paper's** formula agrees in sign in {glue:text}`ae_paper_h_paper_sign` (Spearman
#   {glue:text}`ae_paper_h_paper_spearman`), the **corrected** one in
#   {glue:text}`ae_paper_h_corrected_sign` (Spearman {glue:text}`ae_paper_h_corrected_spearman`).
#   Being exact negatives, their correlations are opposite, and neither is a curvature estimate
#   per coordinate: both omit the division by the step, and even with it they would inherit the
#   secant's problem. What the corrected formula does track is the quantity it is built from, a
#   momentum-smoothed gradient difference: Pearson {glue:text}`ae_paper_h_hdw_corrected_pearson`
#   with $H\Delta W_i$, against {glue:text}`ae_paper_h_hdw_grad_diff_pearson` for
#   $g_i - g_{i-1}$ itself. The sign error of the paper's formula ({ref}`deriv-leadfl-paper`) is
#   real, but per coordinate it hardly matters, because neither sign carries the curvature;
# - the **code's** $D$ agrees in sign in {glue:text}`ae_paper_h_code_sign` (Spearman
#   {glue:text}`ae_paper_h_code_spearman`, Pearson {glue:text}`ae_paper_h_code_pearson`): it is
#   dominated by the previous gradient and carries no curvature information, as
#   {ref}`deriv-leadfl-code` derives. (Clipping the stored gradient at $q$, as the code does
#   after the first mini-batch, would change it in {glue:text}`ae_paper_h_frac_clip` of these
#   coordinates.)
#
# {glue:text}`ae_paper_h_corr_verdict` (largest absolute Spearman correlation
# {glue:text}`ae_paper_h_corr_max`).
#
# **The product near the identity.** With learning rate {glue:text}`ae_paper_h_lr` the median
# of $\eta\lvert H_{jj}\rvert$ is {glue:text}`ae_paper_h_eta_h_median`, so the diagonal picture
# of {ref}`deriv-attack-effect` gives a one-round factor $(1 - \eta H_{jj})^K$ over the
# {glue:text}`ae_paper_h_steps_per_round` local steps of median
# {glue:text}`ae_paper_h_factor_median`; {glue:text}`ae_paper_h_factor_below_small` of the
# coordinates would shrink by more than {glue:text}`ae_paper_h_thr_small` per round and
# {glue:text}`ae_paper_h_factor_below_large` by more than {glue:text}`ae_paper_h_thr_large`.
# {glue:text}`ae_paper_h_factor_verdict` The measured one-round factors of the whole attack
# effect (median {glue:text}`ae_paper_decay_median_none` without a client defense) include what
# the diagonal picture leaves out: the off-diagonal curvature, the non-linearity, and the
# aggregator's different choices in the two runs. {glue:text}`ae_paper_growth_verdict`

# %% [markdown]
# (ae-one-epoch)=
# ## Ablation: one local epoch per round
#
# At one local epoch per round LeadFL does not lower the backdoor accuracy
# ({ref}`ot-local-steps`), so the measurements of this section are an ablation of the number
# of local steps, not the chapter's findings. They are the sweep of the parameters above
# (`params/attack_effect.yaml`), which the book computes where the store lacks it:
# Fashion-MNIST, {glue:text}`ae_one_rounds` rounds of {glue:text}`ae_one_clients_per_round`
# clients, {glue:text}`ae_one_local_epochs` local epoch ({glue:text}`ae_one_steps` mini-batch
# steps per client and round, learning rate {glue:text}`ae_one_lr`, momentum
# {glue:text}`ae_one_momentum`), evaluation on a fixed subset of
# {glue:text}`ae_one_test_samples` test images, the same periodic bursts under the reference
# Bulyan, {glue:text}`ae_one_seeds`; the Hessian comparison at local steps
# {glue:text}`ae_one_h_steps` of a round. {glue:text}`ae_one_skipped` Against the stored
# selection run of the same configuration: {glue:text}`ae_one_crosscheck`. The tables and
# figures are those of the sections above, drawn by the same code.

# %% tags=["hide-input"]
show.show_cases(om, "One local epoch (ablation)", "one-epoch")
show.show_rounds(om, "One local epoch (ablation)", "one-epoch")
show.show_layers(om, ae.layer_groups(om[0][1], ae.layer_names(om[0][0])), "One local epoch (ablation)", "one-epoch")
show.show_decay(om, "One local epoch (ablation)", "one-epoch")
show.show_hessian(hdoc, "One local epoch (ablation)", "one-epoch")

# %% [markdown]
# At one local epoch the backdoor accuracy ends at {glue:text}`ae_one_bd_final_none` without
# and {glue:text}`ae_one_bd_final_leadfl` with LeadFL (averages over the rounds
# {glue:text}`ae_one_bd_avg_none` and {glue:text}`ae_one_bd_avg_leadfl`). The attack effect
# ends the run at {glue:text}`ae_one_delta_final_none` without a client defense and at
# {glue:text}`ae_one_delta_final_leadfl` with LeadFL, a ratio of {glue:text}`ae_one_ratio`
# (paper protocol: {glue:text}`ae_paper_ratio`). {glue:text}`ae_one_reading`
#
# In the benign rounds the median one-round factor is {glue:text}`ae_one_decay_median_none`
# without a client defense and {glue:text}`ae_one_decay_median_leadfl` with LeadFL, so the
# attack effect {glue:text}`ae_one_decay_dir_none` and {glue:text}`ae_one_decay_dir_leadfl`
# in the typical benign round; it shrank in {glue:text}`ae_one_decay_below1_none` and
# {glue:text}`ae_one_decay_below1_leadfl` of them, and a whole benign stretch leaves
# {glue:text}`ae_one_retained_none` and {glue:text}`ae_one_retained_leadfl` of it (geometric
# mean over the stretches). The reference Bulyan averaged the same benign clients in the real
# and the shadow run in {glue:text}`ae_one_same_agg_none` and {glue:text}`ae_one_same_agg_leadfl`
# of the benign rounds. {glue:text}`ae_one_decay_verdict` {glue:text}`ae_one_other_cases`
#
# Over the {glue:text}`ae_one_h_steps_per_round` local steps of a round the diagonal picture's
# median one-round factor is {glue:text}`ae_one_h_factor_median`
# ({glue:text}`ae_one_h_factor_below_small` of the coordinates shrinking by more than
# {glue:text}`ae_one_h_thr_small` per round, {glue:text}`ae_one_h_factor_below_large` by more
# than {glue:text}`ae_one_h_thr_large`). {glue:text}`ae_one_h_factor_verdict`
# {glue:text}`ae_one_h_corr_verdict` (largest absolute Spearman correlation
# {glue:text}`ae_one_h_corr_max`; the secant agrees in sign in
# {glue:text}`ae_one_h_secant_sign` of the coordinates, the exact diagonal being positive in
# {glue:text}`ae_one_h_frac_positive`). {glue:text}`ae_one_growth_verdict`

# %% [markdown]
# ## Summary
#
# At the paper protocol ({ref}`ae-paper`; {glue:text}`ae_paper_n` of
# {glue:text}`ae_paper_total` measurements stored, {glue:text}`ae_paper_seeds`), LeadFL
# ends the run with a backdoor accuracy of {glue:text}`ae_paper_bd_final_leadfl` against
# {glue:text}`ae_paper_bd_final_none` without a client defense, and seed by seed its final
# attack effect is {glue:text}`ae_paper_ratio` times the undefended one: whatever LeadFL changes
# in the backdoor accuracy {glue:text}`ae_paper_lead_effect` in parameter space (the coded step
# also enlarges the benign clients' own steps, {ref}`deriv-leadfl-code`).
# {glue:text}`ae_paper_decay_verdict` In the typical benign round the attack effect
# {glue:text}`ae_paper_decay_dir_none` without a client defense and
# {glue:text}`ae_paper_decay_dir_leadfl` with LeadFL. Over the {glue:text}`ae_paper_steps`
# local steps of a round the curvature's median diagonal factor is
# {glue:text}`ae_paper_h_factor_median`. {glue:text}`ae_paper_h_factor_verdict`
# {glue:text}`ae_paper_growth_verdict` {glue:text}`ae_paper_h_corr_verdict` (largest absolute
# Spearman correlation {glue:text}`ae_paper_h_corr_max`).
#
# The one-epoch ablation ({ref}`ae-one-epoch`), at which LeadFL does not lower the backdoor
# accuracy, gives a final attack-effect ratio of {glue:text}`ae_one_ratio` and a median
# diagonal factor of {glue:text}`ae_one_h_factor_median`.
