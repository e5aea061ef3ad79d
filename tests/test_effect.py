"""flcore.analysis.effect and flcore.present.effect_figures: the attack-effect chapter's numbers,
tables and figures, on synthetic measurements (nothing is trained)."""
import math

import numpy as np
import pytest

from flcore.analysis import effect
from flcore.core import config
from flcore.experiments import attack_effect as ae

LAYERS = {"layer1.0.weight": "conv1", "layer2.0.weight": "conv2", "fc.weight": "fc"}
NAMES = {"layer1.0": "conv1", "layer2.0": "conv2", "fc": "fc"}


def cfg(defense="none", seed=0, **kw):
    return config.load(None, {"experiment": "attack_effect", "profile": "smoke", "client_defense": defense,
                              "seed": seed, "schedule": "periodic", **kw})


def measurement(defense="none", seed=0, deltas=(1.0, 2.0, 3.0, 1.5), backdoor=(0.9, 0.8, 0.7, 0.6),
                malicious=(True, False, False, True), h="a", wall=60.0):
    """A measurement document: per round the attack effect (split 1:2:2 in squares over the
    layers conv1, conv2, fc), the backdoor accuracy and whether malicious clients were selected."""
    rounds, prev = [], None
    for t, (dn, bd, mal) in enumerate(zip(deltas, backdoor, malicious)):
        rounds.append({"round": t, "malicious": [1] if mal else [], "selected": [1, 2], "main_acc": 0.8,
                       "backdoor_acc": bd, "delta_norm": dn,
                       "delta_layers": {"layer1.0.weight": dn / math.sqrt(5),
                                        "layer2.0.weight": dn * math.sqrt(2 / 5), "fc.weight": dn * math.sqrt(2 / 5)},
                       "decay": dn / prev if prev and not mal else None,
                       "shadow_update_norm": None if t == 0 else 0.5 * t, "same_aggregation": t % 2 == 0})
        prev = dn
    summary = {"main_acc_final": 0.8, "backdoor_acc_avg": float(np.mean(backdoor)),
               "backdoor_acc_final": backdoor[-1], "attack_effect": ae.effect_summary(rounds)}
    return (cfg(defense, seed), {"hash": h * 16, "rounds": rounds, "summary": summary,
                                 "provenance": {"wall_s": wall, "shadow_wall_s": wall, "cpu_capability": "AVX2"}})


def test_groups_seeds_rounds_and_layer_norms():
    m = [measurement("none", 1), measurement("leadfl", 0), measurement("none", 0)]
    assert list(effect.by_case(m)) == ["none", "leadfl"] and len(effect.by_case(m)["none"]) == 2
    assert effect.seed_list(m) == [0, 1]
    d = m[0][1]
    assert effect.burst_rounds(d) == [0, 3]
    assert np.allclose(effect.round_values(d, "delta_norm"), [1, 2, 3, 1.5])
    assert np.isnan(effect.round_values(d, "decay")[0]) and effect.round_values(d, "decay")[1] == 2.0
    groups = ae.layer_groups(d, NAMES)
    norms = effect.group_norms(d, groups)
    total = np.sqrt(sum(v ** 2 for v in norms.values()))
    assert np.allclose(total, [1, 2, 3, 1.5])
    shares = effect.layer_shares(d, groups)
    assert shares == pytest.approx({"conv1": 0.2, "conv2": 0.4, "fc": 0.4})


def test_seed_band_pads_a_shorter_series_and_ignores_nan():
    m, lo, hi = effect.seed_band([[1.0, 2.0, np.nan], [3.0, 4.0], [2.0, np.nan, 5.0]])
    assert np.allclose(m, [2.0, 3.0, 5.0]) and np.allclose(lo, [1.0, 2.0, 5.0]) and np.allclose(hi, [3.0, 4.0, 5.0])
    m, lo, hi = effect.seed_band([[1.0, np.nan]])
    assert m[0] == 1.0 and np.isnan(m[1])
    assert [len(x) for x in effect.seed_band([])] == [0, 0, 0]


def test_value_reads_derived_numbers_of_a_measurement():
    _, d = measurement()
    assert effect.value(d, "delta_round0") == 1.0
    assert effect.value(d, "update_median") == pytest.approx(1.0)  # 0.5, 1.0, 1.5
    # the first benign stretch: rounds 1-2 after the burst of round 0
    assert effect.value(d, "first_end") == 2 and effect.value(d, "first_retained") == pytest.approx(3.0)
    assert effect.value(d, "bd_first_end") == 0.7
    assert effect.value(d, "wall_s") == 120.0
    assert effect.value(d, "delta_norm_final") == 1.5 and effect.value(d, "backdoor_acc_final") == 0.6
    _, quiet = measurement(malicious=(False,) * 4)
    assert effect.value(quiet, "first_end") is None and effect.value(quiet, "bd_first_end") is None


def test_cells_give_mean_sd_and_seeds_and_the_ratios_pair_seeds():
    m = [measurement("none", 0, deltas=(1, 2, 3, 2.0)), measurement("none", 1, deltas=(1, 2, 3, 4.0)),
         measurement("leadfl", 0, deltas=(1, 2, 3, 6.0))]
    assert effect.cell(m, "none", "delta_norm_final") == "3.000 ± 1.414 (seeds 0, 1)"
    assert effect.cell(m, "leadfl", "delta_norm_final") == "6.000 (seed 0)"
    assert effect.cell(m, "ldp", "delta_norm_final") == "not stored"
    assert effect.matched_pairs(m, "delta_norm_final") == {0: (6.0, 2.0)}
    cells = effect.effect_cells(m)
    assert cells["ratio"] == "3.00 (seed 0)" and cells["n"] == "3" and cells["seeds"] == "seeds 0, 1"
    assert cells["bd_final_none"] == "60.0 ± 0.0 % (seeds 0, 1)" and cells["wall_min"] == "2"
    assert cells["decay_dir_none"] in ("grows", "shrinks", "stays the same")
    empty = effect.effect_cells([])
    assert empty["delta_final_none"] == "not stored" and empty["ratio"] == "not stored"
    assert empty["decay_dir_leadfl"] == "is not stored" and empty["seeds"] == "no seed"
    assert effect.seeds_text([2, 0, 2]) == "seeds 0, 2" and effect.seeds_text([1]) == "seed 1"


def test_verdicts_follow_the_measurements():
    growing = (1.0, 1.1, 1.21, 1.5)
    lower_bd = [measurement("none", 0, deltas=growing, backdoor=(1, 1, 1, 0.99)),
                measurement("leadfl", 0, deltas=(1.0, 1.1, 1.21, 3.0), backdoor=(1, 1, 1, 0.1))]
    v = effect.verdicts(lower_bd)
    assert v["reading"].startswith("In every seed with both measurements LeadFL ends with a lower backdoor")
    assert "larger attack effect" in v["reading"] and v["lead_effect"].startswith("comes with a larger")
    assert v["growth_verdict"].startswith("Measured, the attack effect grows")
    assert v["decay_verdict"].startswith("Without a client defense the attack effect does not decay")
    # a backdoor accuracy lower by less than CLEARLY_LOWER does not count as lower
    same_bd = [measurement("none", 0, deltas=growing, backdoor=(1, 1, 1, 0.99)),
               measurement("leadfl", 0, deltas=(1.0, 1.1, 1.21, 3.0), backdoor=(1, 1, 1, 0.98))]
    assert effect.verdicts(same_bd)["reading"].startswith("LeadFL does not end with a backdoor accuracy more than 5")
    shrinking = [measurement("none", 0, deltas=(1.0, 0.5, 0.25, 0.3)),
                 measurement("leadfl", 0, deltas=(1.0, 0.4, 0.16, 0.1))]
    v = effect.verdicts(shrinking)
    assert v["decay_verdict"].startswith("Benign rounds do shrink") and "LeadFL lowers" in v["decay_verdict"]
    assert v["growth_verdict"].startswith("Measured, the attack effect shrinks")
    assert v["lead_effect"] == "comes with a smaller attack effect"
    v = effect.verdicts([])
    assert v["reading"] == "No seed has both measurements stored yet." and v["other_cases"] == ""
    v = effect.verdicts(lower_bd + [measurement("ldp", 0)])
    assert v["other_cases"].startswith("With LDP the median factor is")


def test_crosscheck_text_names_each_measurement_with_a_twin():
    m = [measurement("none", 0, h="a"), measurement("leadfl", 0, h="b")]
    twin_a = {"rounds": m[0][1]["rounds"]}
    other = [dict(r) for r in m[1][1]["rounds"]]
    other[1]["backdoor_acc"] = 0.0
    twin_b = {"rounds": other, "provenance": {"cpu_capability": "AVX512/default"},
              "summary": {"backdoor_acc_avg": 0.5}}
    text = effect.crosscheck_text(m, {"a" * 16: twin_a, "b" * 16: twin_b})
    assert text.startswith("no client defense, seed 0: identical in every round; LeadFL, seed 0: different (CPU "
                           "kernels AVX512/default there, AVX2 here")
    assert effect.crosscheck_text(m, {}) == "no run of these configurations is stored there"


def test_setting_and_share_cells():
    c = cfg("none", local_epochs=10, dataset="fmnist", clients=100, batch_size=16)
    s = effect.setting_cells(c)
    assert s["local_epochs"] == "10" and s["steps"] == "380" and s["lr"] == f"{c.lr:g}"
    per = c.options("periodic")
    assert s["benign_per_cycle"] == str(per.cycle - per.burst)
    m = [measurement("none", 0), measurement("none", 1), measurement("leadfl", 2)]
    shares = effect.share_cells(m, NAMES)
    assert shares["share_fc_none"] == "40.0 ± 0.0 % (seeds 0, 1)" and shares["share_conv1_leadfl"] == "20.0 % (seed 2)"
    assert effect.share_cells([], NAMES)["share_fc_none"] == "not stored"


def test_tables_one_row_per_measurement_case_or_stretch():
    m = [measurement("none", 0, h="a"), measurement("leadfl", 0, h="b"), measurement("leadfl", 1, h="c")]
    t = effect.cases_table(m)
    assert list(t.index) == [("no client defense", 0), ("LeadFL", 0), ("LeadFL", 1)]
    assert t.loc[("LeadFL", 1), "hash"] == "c" * 16 and t.loc[("LeadFL", 1), "minutes (real + shadow)"] == 2.0
    assert t.loc[("LeadFL", 1), "backdoor acc. final (%)"] == pytest.approx(60.0)
    share = effect.layer_share_table(m, ae.layer_groups(m[0][1], NAMES))
    assert list(share.index) == ["no client defense", "LeadFL"] and share.loc["LeadFL", "fc"] == pytest.approx(0.4)
    st = effect.stretch_table(m)
    assert list(st.index) == [("no client defense", 0, 0), ("LeadFL", 0, 0), ("LeadFL", 1, 0)]
    assert st["retained"].tolist() == pytest.approx([3.0] * 3)
    assert len(effect.cases_table([])) == 0 and len(effect.stretch_table([])) == 0


def hessian_doc():
    rng = np.random.default_rng(0)
    points = []
    for rnd in (0, 3):
        for step in (2, 5):
            exact = rng.normal(0.5, 1.0, 40)
            hdw = rng.normal(0, 1, 40)
            p = {"round": rnd, "step": step, "exact": exact.tolist(), "hdw": hdw.tolist(),
                 "diag_dw": (0.1 * hdw).tolist(), "frac_prev_grad_above_q": 0.25}
            for k in (*ae.APPROXIMATIONS, *ae.STEP_TARGETS):
                p.setdefault(k, (exact + rng.normal(0, 0.1, 40)).tolist() if k == "secant" else
                             rng.normal(0, 1, 40).tolist())
            points.append(p)
    summary = {"hessian": ae.hessian_metrics(points)}
    return {"points": points, "summary": summary, "hessian_options": {"rounds": [0, 3], "steps": [2, 5],
                                                                       "coordinates": 40, "seed": 0},
            "config": {"lr": 0.01, "seed": 0, "dataset": "fmnist", "clients": 100, "batch_size": 16,
                       "local_epochs": 1}}


def test_hessian_cells_and_tables():
    h = hessian_doc()
    c = effect.hessian_cells(h)
    assert c["points"] == "4" and c["steps"] == "2, 5" and c["steps_per_round"] == "38" and c["run_seed"] == "0"
    assert float(c["secant_spearman"]) > 0.9 and c["frac_clip"] == "25.0 %" and c["diag_share_median"] == "10 %"
    f = effect.diagonal_factors(h)
    exact = np.concatenate([p["exact"] for p in h["points"]])
    assert np.allclose(f, (1 - 0.01 * exact) ** 38)
    assert c["factor_median"] == f"{np.median(f):.4f}" and c["thr_small"] == "1 %" and c["thr_large"] == "10 %"
    assert c["factor_below_small"] == f"{100 * np.mean(f < 0.99):.1f} %"
    assert c["corr_verdict"].startswith("None of LeadFL's Hessian estimates")  # random estimates
    assert c["factor_verdict"].startswith("The curvature alone therefore predicts")
    missing = effect.hessian_cells(None)
    assert missing["factor_median"] == "not stored" and missing["thr_large"] == "10 %"
    pp = effect.per_point_table(h)
    assert list(pp.index) == [(0, 2), (0, 5), (3, 2), (3, 5)] and list(pp.columns)[0] == "secant estimate"


def test_the_figures_draw_a_mean_per_case_with_a_band_over_seeds():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flcore.present import effect_figures as figs

    m = [measurement("none", 0), measurement("leadfl", 0), measurement("leadfl", 1, deltas=(2, 3, 4, 5))]
    fig = figs.effect_rounds_figure(m, "t")
    top = fig.axes[0]
    assert [l.get_label() for l in top.lines] == ["no client defense (seed 0)", "LeadFL (seeds 0, 1)"]
    assert np.allclose(top.lines[1].get_ydata(), [1.5, 2.5, 3.5, 3.25])
    assert sum(type(c).__name__ == "FillBetweenPolyCollection" or type(c).__name__ == "PolyCollection"
               for c in top.collections) == 1  # a band for LeadFL's two seeds only
    plt.close(fig)
    fig = figs.effect_layers_figure(m, ae.layer_groups(m[0][1], NAMES), "t")
    assert len(fig.axes) == 2 and [l.get_label() for l in fig.axes[0].lines] == ["conv1", "conv2", "fc"]
    plt.close(fig)
    fig = figs.decay_figure(m, "t")
    assert fig.axes[0].get_ylabel().startswith(r"$\|\delta_t\|") and fig._suptitle.get_text() == "t"
    plt.close(fig)
    fig = figs.hessian_figure(hessian_doc(), "t")
    assert len(fig.axes) == 6 and fig.axes[0].get_xscale() == "symlog"
    plt.close(fig)
