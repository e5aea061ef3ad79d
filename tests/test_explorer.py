"""The explorer's menus, labels, filtering, default view and live-run configuration
(``flcore/present/explorer.py``), on hand-made run documents; nothing is trained."""
import pytest

from flcore.present import explorer as X


def run(exp, h, **config):
    base = {"profile": "default", "dataset": "fmnist", "schedule": "paper", "aggregator": "multikrum",
            "client_defense": "none", "attack": "backdoor", "seed": 0}
    rounds = [{"round": r, "main_acc": 0.5 + 0.1 * r, "backdoor_acc": 0.3} for r in range(3)]
    return exp, {"hash": h, "config": {**base, **config}, "rounds": rounds, "summary": {}, "provenance": {}}


RUNS = [
    run("original_tables", "a" * 16),
    run("original_tables", "b" * 16, client_defense="leadfl", leadfl={"alpha": 0.4, "variant": "code"}),
    run("original_tables", "c" * 16, profile="paper"),
    run("selection", "d" * 16, schedule="random", aggregator="bulyan_reference"),
    run("ablations", "e" * 16, aggregate_state="trainable", attack="none"),
]


def test_filtered_matches_every_menu_and_all_matches_any():
    assert X.filtered(RUNS, {k: X.ALL for k in X.FIELDS}) == [0, 1, 2, 3, 4]
    assert X.filtered(RUNS, {"experiment": "original_tables", "profile": "default"}) == [0, 1]
    assert X.filtered(RUNS, {"client defense": "leadfl", "profile": X.ALL}) == [1]
    assert X.filtered(RUNS, {"schedule": "random", "aggregator": "multikrum"}) == []


def test_menu_options_list_all_first_then_the_stored_values_as_read():
    opts = X.menu_options(RUNS, "experiment")
    assert opts[0] == (X.ALL, X.ALL)
    assert [v for _, v in opts[1:]] == ["ablations", "original_tables", "selection"]
    shown = dict((v, s) for s, v in X.menu_options(RUNS, "client defense"))
    assert shown["leadfl"] == "LeadFL" and shown["none"] == "None"


def test_labels_name_what_sets_a_run_apart():
    assert X.extras(RUNS[0][1]) == ""
    assert X.extras(RUNS[1][1]) == "α = 0.4"
    assert X.extras(RUNS[4][1]) == "no attack, trainable parameters only"
    assert X.legend_label("live", RUNS[0][1]).startswith("live run: ")
    label = X.run_label(*RUNS[2])
    assert label.startswith("original_tables/cccccccc: ") and label.endswith("seed 0")


def test_default_view_prefers_the_paper_protocol_then_the_default_profile_then_the_first_runs():
    choice, runs = X.default_view(RUNS, 8)
    assert choice["profile"] == "paper" and [d["hash"][0] for _, d in runs] == ["c"]
    choice, runs = X.default_view([r for r in RUNS if r[1]["config"]["profile"] != "paper"], 8)
    assert choice["profile"] == "default" and [d["hash"][0] for _, d in runs] == ["a", "b"]
    choice, runs = X.default_view(RUNS[3:], 1)
    assert choice == {} and len(runs) == 1


def test_live_config_puts_the_menus_over_the_smoke_base():
    base = X.live_base(None, 2)
    assert base["rounds"] == 2 and "experiment" not in base and "profile" not in base
    cfg = X.live_config(base, {"aggregator": "fedavg", "client defense": "ldp", "profile": "paper",
                               "dataset": X.ALL})
    assert (cfg.aggregator, cfg.client_defense, cfg.rounds, cfg.profile) == ("fedavg", "ldp", 2, "smoke")
    assert cfg.dataset == base["dataset"]
    with pytest.raises(Exception):
        X.live_config(base, {"aggregator": "no_such_rule"})


def test_the_widgets_follow_the_menus():
    pytest.importorskip("ipywidgets")
    ex = X.Explorer(list(RUNS), X.live_base(None, 2))
    assert ex.menus["profile"].value == "paper"  # the default view's menus
    assert ex.runs_box.value == (2,)
    ex.menus["profile"].value = X.ALL
    assert [i for _, i in ex.runs_box.options] == [0, 1, 2]
    ex.menus["aggregator"].value = X.ALL
    ex.menus["experiment"].value = "selection"
    assert ex.runs_box.value == (3,)
    assert ex.live_button.description.startswith("live run: ") and not ex.live_button.disabled
    ex.menus["client defense"].value = "leadfl"
    assert ex.runs_box.options == ()
    import matplotlib.pyplot as plt

    assert not plt.get_fignums()  # every redraw closes its figure
