"""flcore.analysis.rounds: per-round views of stored runs, on synthetic documents (no training)."""

import math

import pytest

from flcore.analysis.rounds import (alignment_outcomes, attack_records, blocks, burst_rounds, burst_set, fake_weight, kept_clients,
                                    rounds_frame, same_rounds, tail_jitter)
from flcore.present import figures
from synthetic_runs import doc


def test_rounds_frame_percent_and_nan():
    rounds = [{"round": 0, "selected": [1, 2], "malicious": [1], "main_acc": None, "backdoor_acc": None},
              {"round": 1, "selected": [1, 2], "malicious": [], "main_acc": 0.5, "backdoor_acc": 0.25}]
    f = rounds_frame([doc(rounds=rounds)], keys=["client_defense"])
    assert list(f["n_malicious"]) == [1, 0]
    assert math.isnan(f["main_acc"][0]) and f["main_acc"][1] == 50.0 and f["backdoor_acc"][1] == 25.0
    assert list(f["client_defense"]) == ["none", "none"]


def test_bursts_blocks_and_shading():
    d = doc(rounds=[{"round": r, "selected": list(range(10)), "malicious": list(range(m))}
                    for r, m in enumerate([5, 6, 1, 0, 5])])
    assert burst_rounds(d, 5) == [0, 1, 4]
    assert blocks([4, 0, 1]) == [(0, 1), (4, 4)]
    per = doc(schedule="periodic", periodic={"cycle": 3, "burst": 1},
              rounds=[{"round": r, "selected": [], "malicious": []} for r in range(7)])
    assert burst_set(per) == [0, 3, 6]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    figures.shade_rounds(ax, [0, 1, 4], label="burst")
    assert len(ax.patches) == 2
    tw = figures.malicious_bars(ax, d)
    assert len(tw.patches) == 5
    plt.close(fig)


def test_kept_clients_and_fake_weight():
    k = kept_clients(doc())
    assert k[0] == {"round": 0, "malicious_selected": 5, "kept": 5, "malicious_kept": 5, "malicious_share_kept": 1.0}
    assert k[1]["malicious_share_kept"] == 0.0
    d = doc(rounds=[{"round": 0, "selected": [1, 2], "malicious": [], "fake_clients": 2,
                     "agg_weights": [0.5, 0.3, 0.2, 0.0]}])
    (fw,) = fake_weight(d)
    assert fw["weight_on_fakes"] == pytest.approx(0.2) and fw["fake_share"] == 0.5
    d["rounds"][0]["attack"] = {"c": 8.0, "tested": False}
    assert attack_records(d) == [{"round": 0, "c": 8.0, "tested": False}]


def test_alignment_outcomes_count_the_tests_and_track_c():
    recs = [{"c": 8.0, "tested": False}, {"c": 8.0, "tested": True, "aligned": True},
            {"c": 8.0, "tested": False}, {"c": 5.6, "tested": True, "aligned": False},
            {"c": 3.92, "tested": True, "aligned": False}]
    d = {"rounds": [{"round": i, "attack": a} for i, a in enumerate(recs)] + [{"round": 5}]}
    assert alignment_outcomes(d) == {"tests": 3, "passed": 1, "first_failed": 3, "c_first": 8.0, "c_final": 3.92}
    assert alignment_outcomes({"rounds": [{"round": 0}]}) == {"tests": 0, "passed": 0, "first_failed": None,
                                                               "c_first": None, "c_final": None}


def test_same_rounds_compares_the_named_keys_round_by_round():
    a, b = doc(), doc(h="b" * 16, client="leadfl")
    assert same_rounds(a, b) is True  # other configuration, same per-round records
    assert same_rounds(a, None) is None  # nothing to compare with
    b["rounds"][1]["backdoor_acc"] = 0.5
    assert same_rounds(a, b) is False and same_rounds(a, b, keys=("selected", "main_acc")) is True
    assert same_rounds(a, {**b, "rounds": b["rounds"][:1]}, keys=("selected",)) is False  # fewer rounds


def test_tail_jitter_is_the_mean_over_runs_of_the_std_of_the_last_rounds():
    def run(h, accs):
        return doc(h=h, rounds=[{"round": i, "selected": [1], "malicious": [], "main_acc": a, "backdoor_acc": 0.0}
                                for i, a in enumerate(accs)])
    frame = rounds_frame([run("a" * 16, [0.0, 0.5, 0.5, 0.7]), run("b" * 16, [0.9, 0.1, 0.1, 0.1])])
    # last two rounds: run a 50, 70 (sample sd 10 * sqrt(2)), run b 10, 10 (sd 0)
    assert tail_jitter(frame, "main_acc", last=2) == pytest.approx(10 * 2 ** 0.5 / 2, rel=1e-9)
    assert tail_jitter(frame, "main_acc", last=4) > tail_jitter(frame, "main_acc", last=2)
