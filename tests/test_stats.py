"""flcore.analysis.stats: statistics of stored runs, on synthetic documents (no training)."""

import math

import pytest

from flcore.analysis import formats, rounds, stats
from flcore.core.names import DASH


def test_mean_spread_and_cells():
    m, sd, n = stats.mean_spread([1.0, 3.0, None, float("nan")])
    assert (m, n) == (2.0, 2) and sd == pytest.approx(math.sqrt(2))
    assert formats.fmt_cell(2.0, 1.414, 2) == "2.0 ± 1.4"
    assert formats.fmt_cell(2.0, float("nan"), 1) == "2.0"
    assert formats.fmt_cell(float("nan"), float("nan"), 0) == DASH
    assert formats.fmt_cell(2.0, 0.5, 3, show_n=True) == "2.0 ± 0.5 (n=3)"
    assert formats.fmt_num(None) == DASH and formats.fmt_num(1.234, 2) == "1.23"


def test_mitigation_rounds():
    bd = {0: 90, 1: 95, 2: 70, 3: 40, 4: 30, 5: 80, 6: 85, 7: 60, 8: 55}
    res = stats.mitigation_rounds(bd, [0, 1, 5, 6], level=50)
    assert [r["rounds"] for r in res] == [2, None]  # second burst never mitigated before the run ends
    assert res[0]["peak"] == 95 and res[0]["window"] == 3
    # already under the level in the burst's last round: 0
    assert stats.mitigation_rounds({0: 40}, [0])[0]["rounds"] == 0
    # missing (not evaluated) rounds are skipped
    assert stats.mitigation_rounds({0: 90, 2: 10}, [0], last_round=3)[0]["rounds"] == 2


def test_phase_means_and_cycle_profile():
    import pandas as pd

    f = pd.DataFrame({"run": ["a"] * 4, "round": [0, 1, 2, 3], "backdoor_acc": [90.0, 80.0, 20.0, 10.0]})
    pm = stats.phase_means(f, {"a": [0, 1]})
    assert pm.loc["a", "burst"] == 85.0 and pm.loc["a", "benign"] == 15.0
    prof = stats.cycle_profile(f, 2)
    assert list(prof.loc["a"]) == [55.0, 45.0]


def test_pareto_front_and_constrained_pick():
    pts = [(80.0, 89.0), (30.0, 88.5), (40.0, 88.0), (20.0, 80.0), (float("nan"), 90.0)]
    assert stats.pareto_front(pts) == [3, 1, 0]
    i, how = stats.pick_constrained(pts, reference_y=89.0, max_loss=1.0)
    assert (i, how) == (1, "constraint") and i in stats.pareto_front(pts)
    i, how = stats.pick_constrained([(10.0, 50.0), (5.0, 40.0)], reference_y=89.0)
    assert (i, how) == (0, "fallback")


def test_target_retention_by_hand():
    from flcore.analysis.stats import target_retention

    # 10 images, 2 of the target class: all 8 others and 1 of the 2 target images go to the target
    assert target_retention(0.9, 1.0, 10, 2) == pytest.approx(0.5)
    # a model that ignores the trigger: no other image moves, every target image stays
    assert target_retention(0.2, 0.0, 10, 2) == pytest.approx(1.0)
    # below the target share: the trigger moves target images out of their class
    assert target_retention(0.05, 0.0, 10, 2) == pytest.approx(0.25)


def test_local_steps_of_the_protocol():
    from flcore.analysis.stats import local_steps

    # Fashion-MNIST: 600 images per client, batch 16 -> 38 steps per epoch, the defense on 37
    assert local_steps({"dataset": "fmnist", "clients": 100, "batch_size": 16, "local_epochs": 10}) == (380, 370)
    # CIFAR-10: 500 images, batch 32 -> 16 steps per epoch
    assert local_steps({"dataset": "cifar10", "clients": 100, "batch_size": 32, "local_epochs": 1}) == (16, 15)


def test_lower_from_needs_every_larger_count_below_the_baseline():
    from flcore.analysis.stats import lower_from

    def run(defense, epochs, seed, bd):
        return {"config": {"client_defense": defense, "local_epochs": epochs, "seed": seed},
                "summary": {"backdoor_acc_final": bd}}

    docs = [run("none", 1, 0, 0.8), run("leadfl", 1, 0, 0.9), run("none", 2, 0, 0.5), run("leadfl", 2, 0, 0.4),
            run("none", 5, 0, 0.3), run("leadfl", 5, 0, 0.6), run("none", 10, 0, 0.4), run("none", 10, 1, 0.2),
            run("leadfl", 10, 0, 0.1), run("leadfl", 10, 1, 0.1), run("leadfl", 20, 0, 0.0)]
    diff, start = lower_from(docs, "backdoor_acc_final")
    assert list(diff) == [1, 2, 5, 10]  # 20: no baseline run
    assert abs(diff[1] - 10) < 1e-9 and abs(diff[2] + 10) < 1e-9 and abs(diff[10] + 20) < 1e-9
    assert start == 10  # 2 is lower too, but 5 is not
    assert lower_from(docs[:2], "backdoor_acc_final")[1] is None


def test_half_selected_cell_mean_and_kept_share():
    import pandas as pd

    assert [rounds.half_selected({"config": {"clients_per_round": n}}) for n in (1, 9, 10, 30)] == [1, 5, 5, 15]
    docs = [{"hash": "a", "config": {"schedule": "random", "client_defense": "none"}},
            {"hash": "b", "config": {"schedule": "random", "client_defense": "none"}},
            {"hash": "c", "config": {"schedule": "periodic", "client_defense": "none"}}]
    tab = pd.DataFrame({"benign": [10.0, 20.0, 70.0]}, index=["a", "b", "c"])
    assert stats.cell_mean(docs, tab, "benign", schedule="random", client_defense="none") == 15.0
    assert stats.cell_mean(docs, tab, "benign", schedule="paper") is None
    kept = pd.DataFrame({"state": ["full", "full", "full", "trainable"], "malicious_selected": [2, 4, 5, 3],
                         "malicious_share_kept": [0.5, 0.25, 1.0, 0.0]})
    assert stats.kept_share(kept, "full", 1, 4) == 37.5
    assert stats.kept_share(kept, "full", 6, 100) != stats.kept_share(kept, "full", 6, 100)  # NaN: no such round
    assert stats.kept_share(kept.iloc[:0], "full", 1, 4) != stats.kept_share(kept.iloc[:0], "full", 1, 4)


def test_error_last_quarter_of_the_evaluated_rounds():
    rounds = [{"main_acc": a} for a in (0.1, 0.2, None, 0.5, 0.6, 0.7, 0.8, 0.9, float("nan"), 0.95)]
    assert abs(stats.error_last_quarter({"rounds": rounds}) - 7.5) < 1e-9  # 8 evaluated: the last 2, errors 10 and 5
    assert abs(stats.error_last_quarter({"rounds": rounds[:2]}) - 80.0) < 1e-9  # at least one round
    v = stats.error_last_quarter({"rounds": [{"main_acc": None}]})
    assert v != v  # NaN: nothing evaluated


def test_distance_to_published_is_the_mean_absolute_gap_over_the_backdoor_metrics():
    pub = {"backdoor_acc_avg": 82.6, "backdoor_acc_final": 93.2}
    assert stats.distance_to_published({"backdoor_acc_avg": 72.6, "backdoor_acc_final": 100.0}, pub) == \
        pytest.approx((10.0 + 6.8) / 2)
    assert math.isnan(stats.distance_to_published({"backdoor_acc_avg": 72.6, "backdoor_acc_final": None}, pub))


def test_reproduction_verdict_names_the_setting_within_tolerance_or_the_closest_ones():
    assert stats.reproduction_verdict({"A": (3.0, 4.0), "B": (1.0, 30.0)}).startswith("A reproduces both")
    text = stats.reproduction_verdict({"A": (9.1, 50.0), "B": (56.6, 20.0), "C": (12.0, 60.0)})
    assert text.startswith("No setting reproduces")
    assert "closest with A (9.1 points" in text and "then 50.0 points away" in text
    assert "LeadFL's cell with B (20.0 points, the undefended cell then 56.6)" in text
    one = stats.reproduction_verdict({"A": (9.1, 5.0), "B": (56.6, 20.0)}, tolerance=5.0)
    assert "LeadFL's cell with" not in one and "closest with A" in one
    assert stats.reproduction_verdict({"A": (float("nan"), 1.0)}) == "No setting has both cells stored."


def test_paired_cell_means_compare_over_the_common_seeds_only():
    import pandas as pd

    docs = [{"hash": h, "config": {"client_defense": c, "seed": seed}}
            for h, c, seed in (("n0", "none", 0), ("n1", "none", 1), ("n2", "none", 2), ("l0", "ldp", 0),
                               ("l2", "ldp", 2), ("f5", "flwbc", 5))]
    tab = pd.DataFrame({"benign": [10.0, 90.0, 30.0, 40.0, 60.0, 1.0]}, index=["n0", "n1", "n2", "l0", "l2", "f5"])
    # ldp has seeds 0 and 2: none's seed 1 (90 %) is left out of its mean
    assert stats.paired_cell_means(docs, tab, "benign", {"client_defense": "none"}, {"client_defense": "ldp"}) \
        == (50.0, 20.0, [0, 2])
    assert stats.paired_cell_means(docs, tab, "benign", {"client_defense": "none"}, {"client_defense": "flwbc"}) \
        == (None, None, [])
    with pytest.raises(ValueError, match="several runs of one seed"):
        stats.paired_cell_means(docs + [{"hash": "n0", "config": {"client_defense": "none", "seed": 0}}], tab,
                                "benign", {"client_defense": "none"}, {"client_defense": "ldp"})


def test_late_range_pools_the_second_half_of_every_run():
    def run(seed, accs):
        return {"config": {"seed": seed}, "rounds": [{"round": i, "main_acc": a} for i, a in enumerate(accs)]}

    a = run(0, [0.10, 0.99, 0.50, 0.60])            # rounds 2-3 count: 50, 60
    b = run(1, [0.20, 0.30, None, 0.40, 0.80, 0.70])  # rounds 3-5 count: 40, 80, 70
    assert stats.late_range([a, b]) == pytest.approx((40.0, 80.0))
    assert stats.late_range([a], start=0.0) == pytest.approx((10.0, 99.0))
    assert stats.late_range([]) is None
