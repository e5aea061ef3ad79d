"""flcore.analysis.tables: the chapters' tables of stored runs, on synthetic documents (no training)."""

import numpy as np
import pytest

from flcore.analysis import formats, tables
from flcore.core.names import CLIENT_ORDER, DASH
from synthetic_runs import doc


def test_defense_table_layout_seeds_and_published():
    docs = [doc(h="1" * 16, client="none", seed=0, summary={"main_acc_final": 0.8, "backdoor_acc_avg": 0.9,
                                                           "backdoor_acc_final": 1.0}),
            doc(h="2" * 16, client="none", seed=1, summary={"main_acc_final": 0.9, "backdoor_acc_avg": 0.7,
                                                           "backdoor_acc_final": 0.8}),
            doc(h="3" * 16, client="leadfl", aggregator="sparsefed")]
    pub = {"multikrum": {"none": {"main_acc_final": 89.3, "backdoor_acc_avg": 82.6, "backdoor_acc_final": 93.2}}}
    t = tables.defense_table(docs, pub)
    assert list(t.index.get_level_values(0).unique()) == ["Multi-Krum", "SparseFed"]
    assert t.loc[("Multi-Krum", "main-task acc"), ("None", "ours")] == "85.0 ± 7.1"
    assert t.loc[("Multi-Krum", "main-task acc"), ("None", "published")] == "89.3"
    assert t.loc[("Multi-Krum", "seeds (runs)"), ("None", "ours")] == "2"
    assert t.loc[("Multi-Krum", "main-task acc"), ("LeadFL", "ours")] == DASH  # no run
    assert t.loc[("SparseFed", "backdoor acc final"), ("LeadFL", "ours")] == "40.0"
    assert t.loc[("SparseFed", "main-task acc"), ("LeadFL", "published")] == DASH
    # the four client columns of the published tables are always there
    assert [c for c, _ in t.columns[::2]] == ["None", "LDP", "FL-WBC", "LeadFL"]


def test_defense_table_marks_diverged_runs():
    d = doc(client="ldp")
    d["status"] = "diverged"
    t = tables.defense_table([d])
    assert t.loc[("Multi-Krum", "backdoor acc final"), ("LDP", "ours")] == "40.0 †"
    assert t.loc[("Multi-Krum", "backdoor acc final"), ("None", "ours")] == DASH


def test_local_steps_table_groups_seeds_and_counts_tie_rounds():
    from flcore.analysis.tables import local_steps_table

    def run(defense, epochs, seed, bd, kept):
        rounds = [{"round": 0, "selected": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "malicious": [1, 2, 3, 4, 5],
                   "agg_weights": [0.2] * kept + [0.0] * (5 - kept) + [0.2] * (5 - kept) + [0.0] * kept,
                   "main_acc": 0.9, "backdoor_acc": bd}]
        cfg = {"dataset": "fmnist", "clients": 100, "batch_size": 16, "local_epochs": epochs,
               "client_defense": defense, "seed": seed}
        return {"config": cfg, "rounds": rounds,
                "summary": {"main_acc_final": 0.9, "backdoor_acc_avg": bd, "backdoor_acc_final": bd}}

    t = local_steps_table([run("leadfl", 10, 1, 0.2, 2), run("none", 1, 0, 0.5, 5), run("leadfl", 10, 0, 0.4, 4)])
    assert t["client defense"].tolist() == ["None", "LeadFL"]
    lead = t.iloc[1]
    assert lead["seeds"] == 2 and lead["steps per round"] == 380 and lead["defense acts on"] == 370
    assert lead["backdoor acc avg"] == "30.0 ± 14.1"
    assert lead["malicious kept of 5 (mean)"] == "3.00"
    assert t.iloc[0]["defense acts on"] == 0


def test_undefended_cell_table_groups_settings_and_reads_round_0():
    from flcore.analysis.tables import undefended_cell_table

    def run(schedule, state, defense, seed, bd, mal0, kept0):
        sel = list(range(1, 11))
        w0 = [0.2] * kept0 + [0.0] * (mal0 - kept0) + [0.2] * (5 - kept0) + [0.0] * (10 - mal0 - 5 + kept0)
        rounds = [{"round": 0, "selected": sel, "malicious": sel[:mal0], "agg_weights": w0, "main_acc": 0.9,
                   "backdoor_acc": bd},
                  {"round": 1, "selected": sel, "malicious": sel[:5], "agg_weights": [0.0] * 5 + [0.2] * 5,
                   "main_acc": 0.9, "backdoor_acc": bd}]
        cfg = {"schedule": schedule, "aggregate_state": state, "client_defense": defense, "seed": seed}
        return {"config": cfg, "rounds": rounds,
                "summary": {"main_acc_final": 0.9, "backdoor_acc_avg": bd, "backdoor_acc_final": bd}}

    t = undefended_cell_table([run("legacy", "full", "leadfl", 0, 0.1, 5, 5), run("paper", "full", "none", 1, 0.4, 5, 2),
                               run("paper", "trainable", "none", 0, 0.3, 5, 3), run("paper", "full", "none", 0, 0.2, 5, 4)])
    assert t["setting"].tolist() == ["LeadFL schedule, whole state", "LeadFL schedule, trainable parameters only",
                                     "legacy schedule, whole state"]
    ref = t.iloc[0]
    assert ref["seeds"] == "0, 1" and ref["backdoor acc avg"] == "30.0 ± 14.1"
    assert ref["round 0: malicious kept / selected"] == "4/5, 2/5"
    assert ref["malicious kept of 5 (mean)"] == "1.50"  # rounds 0 and 1 of both seeds: 4, 0, 2, 0
    assert t.iloc[2]["client defense"] == "LeadFL" and t.iloc[2]["round 0: malicious kept / selected"] == "5/5"


def test_pfl_find_variant_error_and_sweep():
    class Cfg:
        def __init__(self, aggregator, attack):
            self.aggregator, self.attack = aggregator, attack

    def doc(h, gamma, acc, flip=0.0):
        return {"hash": h, "config": {"aggregator": "prodigy", "attack": "poisonedfl",
                                      "poisonedfl": {"noise_gamma": gamma, "flip_p": flip}},
                "status": "completed", "rounds": [{"round": 0, "main_acc": acc, "agg_weights": [0.5, 0.5], "fake_clients": 1}],
                "summary": {"main_acc_final": acc}}

    labelled = [(Cfg("prodigy", "poisonedfl"), {"attack": "poisonedfl", "aggregator": "prodigy"}),
                (Cfg("prodigy", "poisonedfl"), {"attack": "poisonedfl", "aggregator": "prodigy",
                                                "poisonedfl.noise_gamma": 0.5}),
                (Cfg("prodigy", "poisonedfl"), {"attack": "poisonedfl", "aggregator": "prodigy", "poisonedfl.flip_p": 0.1})]
    docs = [doc("a", 0.0, 0.8), doc("b", 0.5, 0.6), doc("c", 0.0, 0.7, flip=0.1)]
    runs = tables.pfl_runs(labelled, docs)
    assert list(runs["variant"]) == ["", "poisonedfl.noise_gamma=0.5", "poisonedfl.flip_p=0.1"]
    assert abs(tables.pfl_find(runs, "prodigy", "poisonedfl")["error_final"] - 20.0) < 1e-9
    assert tables.pfl_find(runs, "median", "poisonedfl") is None
    assert abs(tables.pfl_variant_error(runs, "prodigy", "poisonedfl", "flip_p") - 30.0) < 1e-9
    assert tables.pfl_variant_error(runs, "prodigy", "poisonedfl", "partition") is None
    s = tables.pfl_sweep(labelled, docs, runs, "poisonedfl.noise_gamma")
    assert s["value"].tolist() == [0.0, 0.5] and [round(e, 6) for e in s["error"]] == [20.0, 40.0]
    assert tables.pfl_sweep(labelled, docs, runs, "poisonedfl.flip_p")["value"].tolist() == [0.0, 0.1]
    assert list(tables.pfl_sweep(labelled[1:2], docs[1:2], runs, "poisonedfl.flip_p").columns) == ["value", "error", "weight"]
    assert formats.fmt_pct(12.34) == "12.3 %" and formats.fmt_pct(None) == "— %"
    assert formats.fmt_pct(float("nan"), missing="not stored") == "not stored"
    assert formats.fmt_pct(0.0, missing="not stored") == "0.0 %"


def test_pfl_seed_cells_pool_the_seeds_of_each_rule_attack_and_variant():
    class Cfg:
        def __init__(self, aggregator, attack):
            self.aggregator, self.attack = aggregator, attack

    def doc(h, agg, att, seed, accs, status="completed", fakes=1):
        return {"hash": h, "config": {"aggregator": agg, "attack": att, "seed": seed}, "status": status,
                "rounds": [{"round": i, "main_acc": a, "agg_weights": [0.75, 0.25], "fake_clients": fakes}
                           for i, a in enumerate(accs)],
                "summary": {"main_acc_final": accs[-1]}}

    over = [{"aggregator": "fedavg", "attack": "poisonedfl", "seed": 0},
            {"aggregator": "prodigy", "attack": "poisonedfl", "seed": 0},
            {"aggregator": "fedavg", "attack": "poisonedfl", "seed": 1},
            {"aggregator": "prodigy", "attack": "poisonedfl", "prodigy.f": 3, "seed": 0}]
    docs = [doc("a", "fedavg", "poisonedfl", 0, [0.5, 0.4, 0.3, 0.2]),
            doc("b", "prodigy", "poisonedfl", 0, [0.8, 0.8, 0.8, 0.9]),
            doc("c", "fedavg", "poisonedfl", 1, [0.5, 0.4, 0.3, 0.4], status="diverged"),
            doc("d", "prodigy", "poisonedfl", 0, [0.8, 0.8, 0.8, 0.7])]
    cells = tables.pfl_seed_cells([(Cfg(o["aggregator"], o["attack"]), o) for o in over], docs)
    assert list(zip(cells["aggregator"], cells["variant"])) == [("fedavg", ""), ("prodigy", ""),
                                                              ("prodigy", "prodigy.f=3")]
    fed = cells.iloc[0]
    assert fed["seeds"] == [0, 1] and fed["runs"] == 2 and fed["diverged"] == 1
    assert abs(fed["error_final"] - 70.0) < 1e-9 and abs(fed["error_final_sd"] - 14.142135623730951) < 1e-9
    assert abs(fed["error_last"] - 70.0) < 1e-9  # last quarter of 4 evaluations: the last one
    assert abs(fed["weight_on_fakes"] - 0.25) < 1e-12 and abs(fed["fake_share"] - 0.5) < 1e-12
    assert [d["hash"] for d in fed["docs"]] == ["a", "c"]
    one = cells.iloc[1]
    assert one["seeds"] == [0] and one["runs"] == 1 and one["error_final_sd"] != one["error_final_sd"]  # NaN
    assert cells.iloc[2]["variant_label"] != ""
    assert tables.pfl_seed_cells([], []).empty


def test_pfl_attack_sentence_and_missing_rules():
    import pandas as pd

    nan = float("nan")

    def cell(agg, att, err, sd, seeds, variant="", diverged=()):
        docs = [{"status": "diverged" if s in diverged else "completed", "summary": {"diverged_round": 30 + s}}
                for s in seeds]
        return {"aggregator": agg, "attack": att, "variant": variant, "seeds": list(seeds), "runs": len(seeds),
                "diverged": len(diverged), "error_final": err, "error_final_sd": sd, "docs": docs}

    cells = pd.DataFrame([cell("fedavg", "poisonedfl", 89.84, 0.41, (0, 1, 2), diverged=(0, 2)),
                          cell("fedavg", "none", 12.04, nan, (0,)),
                          cell("prodigy", "poisonedfl", 14.5, nan, (0,)),
                          cell("prodigy", "poisonedfl", 80.0, nan, (0,), variant="prodigy.f=3"),
                          cell("median", "none", 13.0, 0.2, (0, 1))])
    assert tables.pfl_attack_sentence(cells) == (
        "At the official scale, FedAvg ends at 89.8 ± 0.4 % test error under the attack (seeds 0, 1, 2; the "
        "model became non-finite in 2 of 3 runs, in round 30, 32), against 12.0 % without it; ProDiGy ends at "
        "14.5 % test error under the attack (seed 0), and no run without the attack is stored for it. "
        "Without the attack: Median 13.0 ± 0.2 %.")
    assert tables.pfl_rules_missing(cells, ["median", "prodigy", "multikrum"]) == ["Median", "Multi-Krum"]
    assert tables.pfl_attack_sentence(cells[cells["attack"] == "none"]) == \
        "No run with the attack is stored at the official scale."


def test_stored_cells_count_and_rule_cells_sentence():
    class Cfg:
        def __init__(self, h, aggregator):
            self.hash, self.aggregator = h, aggregator

    def doc(h, agg, cd, seed, final, avg, main):
        return {"hash": h, "config": {"aggregator": agg, "client_defense": cd, "seed": seed},
                "summary": {"backdoor_acc_final": final, "backdoor_acc_avg": avg, "main_acc_final": main}}

    docs = [doc("a", "bulyan_reference", "none", 0, 0.9, 0.5, 0.88), doc("b", "bulyan_reference", "none", 1, 0.7, 0.3, 0.86),
            doc("c", "bulyan_reference", "leadfl", 0, 0.1, 0.2, 0.87), doc("d", "multikrum", "none", 0, 0.4, 0.2, 0.89)]
    cfgs = [Cfg("d", "multikrum"), Cfg("x", "multikrum"), Cfg("a", "bulyan_reference"), Cfg("b", "bulyan_reference"),
            Cfg("c", "bulyan_reference"), Cfg("y", "sparsefed")]
    assert tables.stored_cells_count(docs, cfgs) == "Multi-Krum 1 of 2, Bulyan (reference) 3 of 3, SparseFed 0 of 1"
    assert tables.rule_cells_sentence(docs, "bulyan_reference") == (
        "Bulyan (reference) at the paper protocol: no client defense: backdoor accuracy 80.0 ± 14.1 % final, "
        "40.0 ± 14.1 % average (main 87.0 ± 1.4 %; seeds 0, 1); LeadFL: backdoor accuracy 10.0 % final, 20.0 % "
        "average (main 87.0 %; seed 0). Not yet stored: LDP, FL-WBC.")
    assert tables.rule_cells_sentence(docs, "sparsefed") == ""


def test_multikrum_cells_keep_leadfl_at_the_paper_alpha():
    def d(ds, agg, cd, alpha=None):
        c = {"dataset": ds, "aggregator": agg, "client_defense": cd}
        if alpha is not None:
            c["leadfl"] = {"alpha": alpha}
        return {"config": c}

    docs = [d("fmnist", "multikrum", "leadfl", 0.4), d("fmnist", "multikrum", "leadfl", 0.2),
            d("cifar10", "multikrum", "leadfl", 0.25), d("fmnist", "bulyan", "none"), d("fmnist", "multikrum", "none")]
    cells = tables.multikrum_cells(docs, "fmnist")
    assert list(cells) == CLIENT_ORDER
    assert cells["leadfl"] == [docs[0]] and cells["none"] == [docs[4]] and cells["ldp"] == []
    assert tables.multikrum_cells(docs, "cifar10")["leadfl"] == [docs[2]]


def test_kept_in_tie_rounds_rows_per_run_columns_per_tie_round():
    def run(defense, seed, schedule="paper", kept=(3, 1)):
        sel = list(range(1, 11))
        rounds = [{"round": r, "selected": sel, "malicious": sel[:m], "agg_weights": [1.0] * k + [0.0] * (10 - k)}
                  for r, m, k in ((0, 5, kept[0]), (1, 2, 2), (4, 5, kept[1]))]
        return {"config": {"client_defense": defense, "seed": seed, "schedule": schedule}, "rounds": rounds}

    t = tables.kept_in_tie_rounds([run("leadfl", 0, kept=(5, 0)), run("none", 1), run("none", 0, "legacy", (4, 2))])
    assert list(t.columns) == ["round 0", "round 4"]  # round 1 has 2 malicious: not a tie
    assert t.loc["ours: LeadFL, seed 0"].tolist() == [5, 0]
    t = tables.kept_in_tie_rounds([run("none", 1), run("none", 0, "legacy", (4, 2))], by_setting=True)
    assert list(t.index) == ["ours: LeadFL schedule, whole state, None, seed 1", "ours: legacy schedule, whole state, None, seed 0"]
    assert t.iloc[1].tolist() == [4, 2]


def test_cells_sentence_names_each_setting_in_order_and_the_missing_ones():
    def doc(sched, seed, final, avg, main, alpha=0.4):
        return {"config": {"schedule": sched, "seed": seed, "leadfl": {"alpha": alpha}},
                "summary": {"backdoor_acc_final": final, "backdoor_acc_avg": avg, "main_acc_final": main}}

    docs = [doc("random", 0, 0.5, 0.25, 0.8), doc("periodic", 1, 0.2, 0.1, 0.9), doc("periodic", 0, 0.4, 0.3, 0.7),
            doc("periodic", 0, 0.0, 0.0, 0.0, alpha=0.2)]
    settings = {s: {"schedule": s, "leadfl.alpha": 0.4} for s in ("periodic", "random", "paper")}
    text, missing = tables.cells_sentence(docs, settings)
    assert text == ("periodic: backdoor accuracy 30.0 ± 14.1 % final, 20.0 ± 14.1 % average (main 80.0 ± 14.1 %; "
                    "seeds 0, 1); random: backdoor accuracy 50.0 % final, 25.0 % average (main 80.0 %; seed 0)")
    assert missing == ["paper"]
    assert tables.cells_sentence([], settings) == ("", ["periodic", "random", "paper"])
    assert tables.matches(docs[3], {"leadfl.alpha": 0.2}) and not tables.matches(docs[3], {"leadfl.beta": 0.2})
    assert tables.cell_text(docs[:1]) == "backdoor accuracy 50.0 % final, 25.0 % average (main 80.0 %; seed 0)"
    assert tables.cell_text([]) == "not stored"


def test_phase_table_rows_in_book_order_with_seed_spread():
    import pandas as pd

    def doc(h, sched, cd):
        return {"hash": h, "config": {"schedule": sched, "client_defense": cd}}

    docs = [doc("r", "random", "none"), doc("a", "periodic", "leadfl"), doc("b", "periodic", "leadfl"),
            doc("n", "periodic", "none")]
    bd = pd.DataFrame({"burst": [90.0, 80.0, 60.0, 95.0], "benign": [50.0, 10.0, 20.0, 70.0]}, index=["r", "a", "b", "n"])
    main = bd / 10
    t = tables.phase_table(docs, bd, main)
    assert list(zip(t["schedule"], t["client defense"])) == [("periodic bursts", "None"), ("periodic bursts", "LeadFL"),
                                                             ("random selection", "None")]
    lead = t.iloc[1]
    assert lead["backdoor, burst rounds"] == "70.0 ± 14.1" and lead["backdoor, benign rounds"] == "15.0 ± 7.1"
    assert lead["main-task, benign rounds"] == "1.5 ± 0.7" and lead["seeds"] == 2
    assert t.iloc[0]["backdoor, benign rounds"] == "70.0" and tables.phase_table([], bd, main).empty


def test_phase_cell_gives_mean_sd_and_the_seeds_of_the_cell_or_not_stored():
    import pandas as pd

    docs = [{"hash": h, "config": {"schedule": s, "client_defense": c, "seed": seed}}
            for h, s, c, seed in (("a", "random", "none", 1), ("b", "random", "none", 0), ("c", "random", "ldp", 0),
                                  ("d", "periodic", "none", 2))]
    tab = pd.DataFrame({"benign": [10.0, 20.0, 33.3, 70.0]}, index=["a", "b", "c", "d"])
    assert tables.phase_cell(docs, tab, "benign", {"schedule": "random", "client_defense": "none"}) == "15.0 ± 7.1 % (seeds 0, 1)"
    assert tables.phase_cell(docs, tab, "benign", {"schedule": "random", "client_defense": "ldp"}) == "33.3 % (seed 0)"
    assert tables.phase_cell(docs, tab, "benign", {"schedule": "random", "client_defense": "flwbc"}) == "not stored"
    assert formats.fmt_measure(1.25, float("nan"), 1) == "1.2 %"
    assert formats.fmt_measure(float("nan"), float("nan"), 0, seeds=[0]) == "not stored"
    assert formats.fmt_measure(1.5, 0.25, 2, seeds=[1, 0], digits=2, unit="") == "1.50 ± 0.25 (seeds 0, 1)"
    assert formats.fmt_measure(2.0, float("nan"), 1, digits=0, unit="") == "2"


def test_measurement_and_ratio_cells_give_mean_sd_and_seeds():
    from types import SimpleNamespace

    def m(defense, seed, delta, bd):
        return (SimpleNamespace(client_defense=defense, seed=seed),
                {"summary": {"backdoor_acc_final": bd, "attack_effect": {"delta_norm_final": delta}}})

    measured = [m("none", 1, 3.0, 0.5), m("none", 0, 1.0, 0.7), m("leadfl", 0, 2.0, 0.1)]
    assert tables.measurement_cell(measured, "none", "delta_norm_final", digits=1) == "2.0 ± 1.4 (seeds 0, 1)"
    assert tables.measurement_cell(measured, "leadfl", "backdoor_acc_final", digits=1, scale=100,
                                   unit=" %") == "10.0 % (seed 0)"
    assert tables.measurement_cell(measured, "ldp", "delta_norm_final") == "not stored"
    assert tables.ratio_cell({0: 2.0}) == "2.00 (seed 0)"
    assert tables.ratio_cell({0: 1.0, 2: 2.0}, digits=1) == "1.5 ± 0.7 (seeds 0, 2)"
    assert tables.ratio_cell({}) == "not stored"


def test_trade_frame_per_setting_in_alpha_order_and_its_text():
    def doc(cd, alpha, avg, final, main):
        return {"config": {"client_defense": cd, "leadfl": {"alpha": alpha}},
                "summary": {"backdoor_acc_avg": avg, "backdoor_acc_final": final, "main_acc_final": main}}

    docs = [doc("leadfl", 0.4, 0.2, 0.1, 0.85), doc("none", 0.4, 0.7, 0.9, 0.88), doc("leadfl", 0.0, 0.6, 0.8, 0.87),
            doc("leadfl", 0.4, 0.4, 0.3, 0.87)]
    t = tables.trade_frame(docs)
    assert list(t["setting"]) == ["no defense", "LeadFL, α = 0", "LeadFL, α = 0.4"]
    assert list(t["seeds"]) == [1, 1, 2] and t.iloc[2]["backdoor avg"] == pytest.approx(30.0)
    assert t.iloc[2]["main final sd"] == pytest.approx(1.4142, abs=1e-3)
    shown = tables.trade_text(t)
    assert list(shown.columns) == ["setting", "backdoor avg", "backdoor final", "main final", "seeds"]
    assert shown.iloc[2]["backdoor avg"] == "30.0 ± 14.1" and shown.iloc[0]["main final"] == "88.0"
    assert tables.trade_frame([]).empty


def test_stored_summary_counts_and_tells_the_stored_settings():
    class Cfg:
        hash = "x"

    d = {"hash": "a", "config": {"schedule": "periodic", "seed": 0},
         "summary": {"backdoor_acc_final": 0.5, "backdoor_acc_avg": 0.25, "main_acc_final": 0.8}}
    settings = {"periodic bursts, no client defense": {"schedule": "periodic"}, "random selection": {"schedule": "random"}}
    out = tables.stored_summary([d], [Cfg(), Cfg()], settings)
    assert out == {"n": 1, "total": 2, "missing": "random selection",
                   "cells": "Periodic bursts, no client defense: backdoor accuracy 50.0 % final, 25.0 % average "
                            "(main 80.0 %; seed 0)."}
    none = tables.stored_summary([], [Cfg()], settings)
    assert none["cells"] == "No run of this file is stored yet." and none["missing"] == "periodic bursts, no client defense; random selection"
    assert tables.stored_summary([d], [Cfg()], {"p": {"schedule": "periodic"}})["missing"] == "none"


def test_alpha_choice_applies_the_main_task_budget_to_the_trade_frame():
    def doc(cd, alpha, avg, main):
        return {"config": {"client_defense": cd, "leadfl": {"alpha": alpha}},
                "summary": {"backdoor_acc_avg": avg, "backdoor_acc_final": avg, "main_acc_final": main}}

    # alpha 0.8 has the lowest backdoor accuracy but loses 2 points of main task: alpha 0.4 is picked
    docs = [doc("none", 0.4, 0.9, 0.88), doc("leadfl", 0.4, 0.5, 0.875), doc("leadfl", 0.8, 0.2, 0.86)]
    t = tables.trade_frame(docs)
    c = tables.alpha_choice(t, max_main_loss=1.0)
    assert t.iloc[c["pick"]]["setting"] == "LeadFL, α = 0.4" and c["how"] == "constraint"
    assert c["reference_main"] == pytest.approx(88.0) and c["reference_name"] == "no defense"
    c = tables.alpha_choice(t, max_main_loss=3.0)
    assert t.iloc[c["pick"]]["setting"] == "LeadFL, α = 0.8"
    # without an undefended run the best setting is the reference; nothing stored, nothing picked
    t = tables.trade_frame(docs[1:])
    c = tables.alpha_choice(t, max_main_loss=1.0)
    assert c["reference_main"] == pytest.approx(87.5) and t.iloc[c["pick"]]["setting"] == "LeadFL, α = 0.4"
    assert tables.alpha_choice(tables.trade_frame([]), 1.0)["pick"] is None


def test_budget_picks_applies_the_rule_at_each_budget():
    def doc(cd, alpha, avg, main):
        return {"config": {"client_defense": cd, "leadfl": {"alpha": alpha}},
                "summary": {"backdoor_acc_avg": avg, "backdoor_acc_final": avg / 2, "main_acc_final": main}}

    t = tables.trade_frame([doc("none", 0.4, 0.9, 0.88), doc("leadfl", 0.4, 0.5, 0.875), doc("leadfl", 0.8, 0.2, 0.86)])
    b = tables.budget_picks(t, [0.1, 1.0, 3.0])
    # 0.1 point: only no defense itself qualifies; 1 point adds alpha 0.4, 3 points alpha 0.8
    assert list(b["picked"]) == ["no defense", "LeadFL, α = 0.4", "LeadFL, α = 0.8"]
    assert list(b["by"]) == ["constraint"] * 3
    assert b["main-task cost"].tolist() == pytest.approx([0.0, 0.5, 2.0])
    assert b["backdoor final"].tolist() == pytest.approx([45.0, 25.0, 10.0])
    empty = tables.budget_picks(tables.trade_frame([]), [1.0])
    assert empty["picked"].tolist() == [DASH] and np.isnan(empty["main final"].iloc[0])


def test_tie_rounds_all_kept_counts_only_the_rounds_with_five_malicious():
    def run(defense, seed, kept):
        sel = list(range(1, 11))
        rounds = [{"round": r, "selected": sel, "malicious": sel[:m], "agg_weights": [1.0] * k + [0.0] * (10 - k)}
                  for r, (m, k) in enumerate(kept)]
        return {"config": {"client_defense": defense, "seed": seed}, "rounds": rounds}

    docs = [run("ldp", 1, [(5, 5), (2, 2), (5, 5)]), run("ldp", 0, [(5, 5), (5, 4)]), run("none", 0, [(5, 3), (6, 6)])]
    s = tables.tie_rounds_all_kept(docs)
    assert list(s) == ["none", "ldp"]  # CLIENT_ORDER, only the defenses with a run
    assert s["ldp"] == {"rounds": 4, "all_kept": 3, "mean_kept": 4.75, "only_malicious": 4, "mean_size": 4.75,
                        "seeds": [0, 1]}
    assert s["none"]["rounds"] == 1 and s["none"]["all_kept"] == 0 and s["none"]["mean_kept"] == 3
    text = tables.tie_rounds_sentence(s)
    assert text.startswith("no client defense: all 5 kept in 0 of 1 such rounds, 3.0 kept on average (seeds 0)")
    assert "LDP: all 5 kept in 3 of 4 such rounds, 4.8 kept on average (seeds 0, 1)" in text
    assert tables.tie_rounds_sentence({}) == DASH


def test_only_malicious_counts_the_rounds_whose_kept_clients_are_all_malicious():
    def run(defense, kept):  # (malicious selected, malicious kept, benign kept) per round; 3 kept as Bulyan
        sel = list(range(1, 11))
        rounds = []
        for r, (m, km, kb) in enumerate(kept):
            w = [1.0 if i < km else 0.0 for i in range(m)] + [1.0 if i < kb else 0.0 for i in range(10 - m)]
            rounds.append({"round": r, "selected": sel, "malicious": sel[:m], "agg_weights": w})
        return {"config": {"client_defense": defense, "seed": 0}, "rounds": rounds}

    s = tables.tie_rounds_all_kept([run("flwbc", [(5, 3, 0), (5, 3, 0), (5, 2, 1), (4, 3, 0)]),
                                    run("none", [(5, 1, 2), (5, 0, 3)])])
    assert s["flwbc"]["only_malicious"] == 2 and s["flwbc"]["rounds"] == 3 and s["flwbc"]["all_kept"] == 0
    assert abs(s["flwbc"]["mean_kept"] - 8 / 3) < 1e-12 and s["flwbc"]["mean_size"] == 3
    assert s["none"]["only_malicious"] == 0 and s["none"]["mean_kept"] == 0.5
    text = tables.only_malicious_sentence(s)
    assert text == ("no client defense: only malicious models kept in 0 of 2 such rounds, 0.5 of 3.0 kept malicious "
                    "on average (seeds 0); FL-WBC: only malicious models kept in 2 of 3 such rounds, 2.7 of 3.0 kept "
                    "malicious on average (seeds 0)")
    assert tables.only_malicious_sentence({}) == DASH


def test_decay_direction_reads_the_mean_median_factor_over_seeds():
    from types import SimpleNamespace

    def m(defense, seed, decay):
        return (SimpleNamespace(client_defense=defense, seed=seed),
                {"summary": {"attack_effect": {"decay_benign_median": decay}}})

    measured = [m("none", 0, 1.10), m("none", 1, 0.96), m("leadfl", 0, 0.90), m("ldp", 0, 1.0004)]
    assert tables.decay_direction(measured, "none") == "grows"        # mean 1.03
    assert tables.decay_direction(measured, "leadfl") == "shrinks"
    assert tables.decay_direction(measured, "ldp") == "stays the same"
    assert tables.decay_direction(measured, "flwbc") == "is not stored"


def test_kept_in_malicious_rounds_sums_the_rounds_with_malicious_clients_per_defense():
    def doc(cd, seed, rounds):
        return {"config": {"client_defense": cd, "seed": seed},
                "rounds": [{"round": i, "selected": sel, "malicious": mal, "agg_weights": w}
                           for i, (sel, mal, w) in enumerate(rounds)]}

    none = doc("none", 0, [([1, 2, 3], [1], [0, 1, 1]),        # 1 malicious, not kept
                           ([1, 2, 3], [1, 2], [1, 1, 0]),     # 2 malicious, both kept: only malicious
                           ([4, 5, 6], [], [1, 1, 1])])        # no malicious: not counted
    ldp = [doc("ldp", 1, [([1, 2, 3], [1], [1, 1, 0])]), doc("ldp", 0, [([7, 8], [7, 8], [0.5, 0.0])])]
    got = tables.kept_in_malicious_rounds([none, *ldp])
    assert list(got) == ["none", "ldp"]
    assert got["none"] == {"rounds": 2, "selected": 3, "kept": 2, "share": pytest.approx(200 / 3),
                           "only_malicious": 1, "seeds": [0]}
    assert got["ldp"]["rounds"] == 2 and got["ldp"]["kept"] == 2 and got["ldp"]["only_malicious"] == 1
    assert got["ldp"]["seeds"] == [0, 1]
    text = tables.kept_sentence(got)
    assert text.startswith("no client defense: 2 of the 3 malicious models selected kept (66.7 %), only malicious "
                           "models kept in 1 of 2 rounds (seed 0); LDP: 2 of the 3")
    assert tables.kept_sentence({}) == DASH


def test_late_range_cell_names_the_range_and_the_seeds():
    runs = [{"config": {"seed": s}, "rounds": [{"main_acc": v} for v in accs]}
            for s, accs in ((1, [0.1, 0.5, 0.7]), (0, [0.2, 0.3, 0.9]))]
    assert tables.late_range_cell(runs) == "30.0–90.0 % (seeds 0, 1)"
    assert tables.late_range_cell(runs[:1]) == "50.0–70.0 % (seed 1)"
    assert tables.late_range_cell([]) == "not stored"


def test_settings_table_one_row_per_stored_setting_in_order_with_kept_malicious():
    def doc(defense, variant, seed, bd, kept):
        sel = list(range(10))
        w = [0.2] * kept + [0.0] * (5 - kept) + [0.2] * (5 - kept) + [0.0] * kept  # clients 0-4 malicious
        cfg = {"client_defense": defense, "seed": seed, **({"leadfl": {"variant": variant}} if variant else {})}
        return {"config": cfg, "rounds": [{"round": 0, "selected": sel, "malicious": sel[:5], "agg_weights": w}],
                "summary": {"main_acc_final": 0.9, "backdoor_acc_avg": bd, "backdoor_acc_final": bd}}

    docs = [doc("leadfl", "paper", 1, 0.5, 1), doc("none", None, 0, 0.9, 0), doc("leadfl", "paper", 0, 0.3, 4)]
    settings = {"LeadFL as printed": {"client_defense": "leadfl", "leadfl.variant": "paper"},
                "LeadFL as corrected": {"client_defense": "leadfl", "leadfl.variant": "corrected"},
                "no client defense": {"client_defense": "none"}}
    t = tables.settings_table(docs, settings)
    assert t["setting"].tolist() == ["LeadFL as printed", "no client defense"]  # order kept, missing left out
    printed = t.iloc[0]
    assert printed["seeds"] == "0, 1" and printed["backdoor acc avg"] == "40.0 ± 14.1"
    assert printed["malicious kept of 5 (mean)"] == "2.50" and t.iloc[1]["malicious kept of 5 (mean)"] == "0.00"
    assert tables.settings_table([], settings).empty


def _selection_runs():
    def run(h, schedule, client, seed, bd):
        rs = [{"round": r, "selected": list(range(1, 11)), "malicious": [1, 2, 3, 4, 5, 6] if r in (0, 4) else [],
               "main_acc": 0.8, "backdoor_acc": b} for r, b in enumerate(bd)]
        return doc(h=h * 16, client=client, seed=seed, rounds=rs, schedule=schedule)

    return [run("1", "random", "none", 0, [0.9, 0.6, 0.4, 0.3, 0.9, 0.45, 0.2]),
            run("2", "random", "ldp", 0, [0.9, 0.8, 0.7, 0.6, 0.9, 0.8, 0.7]),
            run("3", "random", "ldp", 1, [0.9, 0.7, 0.6, 0.45, 0.9, 0.7, 0.6])]


def test_schedule_phases_splits_the_burst_rounds_from_the_others():
    frame, bursts, pb, pm = tables.schedule_phases(_selection_runs())
    assert bursts["1" * 16] == [0, 4]  # rounds with at least half of the ten selected malicious
    assert pb.loc["1" * 16, "burst"] == pytest.approx(90.0)
    assert pb.loc["1" * 16, "benign"] == pytest.approx((60 + 40 + 30 + 45 + 20) / 5)
    assert pm.loc["2" * 16, "benign"] == pytest.approx(80.0) and set(frame["run"]) == {h * 16 for h in "123"}


def test_mitigation_table_pools_the_bursts_of_the_seeds():
    docs = _selection_runs()
    frame, bursts, _, _ = tables.schedule_phases(docs)
    shown, summary = tables.mitigation_table(docs, frame, bursts, 50.0)
    # no defense: under 50 % two rounds after the first burst, one after the second
    assert summary["random", "none"] == {"mean": 1.5, "not": 0, "bursts": 2}
    # LDP: never under 50 % in seed 0; in seed 1 only after the first burst, 3 rounds later
    assert summary["random", "ldp"]["bursts"] == 4 and summary["random", "ldp"]["not"] == 3
    assert summary["random", "ldp"]["mean"] == 3.0
    assert list(shown["client defense"]) == ["None", "LDP"] and list(shown["not mitigated"]) == [0, 3]


def test_random_vs_none_sentence_compares_over_the_common_seeds():
    docs = _selection_runs()
    _, _, pb, _ = tables.schedule_phases(docs)
    text = tables.random_vs_none_sentence(docs, pb)
    ldp0 = (80 + 70 + 60 + 80 + 70) / 5
    assert text.startswith(f"with LDP {ldp0:.1f} % against 39.0 % without a client defense (seed 0), higher than that")
    assert "FL-WBC: no seed stored both with and without a client defense" in text


def test_selection_cells_key_every_schedule_and_client_defense():
    docs = _selection_runs()
    frame, bursts, pb, pm = tables.schedule_phases(docs)
    _, summary = tables.mitigation_table(docs, frame, bursts, 50.0)
    cells = tables.selection_cells(docs, summary, pb, pm)
    assert len(cells) == 2 * len(CLIENT_ORDER) * 6
    assert cells["random_none_mit"] == 1.5 and cells["random_ldp_notmit"] == 3 and cells["random_ldp_bursts"] == 4
    assert cells["random_ldp_bd_burst"] == pytest.approx(90.0) and cells["random_none_main_benign"] == pytest.approx(80.0)
    assert cells["periodic_none_mit"] is None and cells["periodic_none_bd_benign"] is None


def test_headline_cells_give_the_three_table_numbers_over_the_runs():
    runs = [doc(h="1" * 16, summary={"main_acc_final": 0.8, "backdoor_acc_avg": 0.5, "backdoor_acc_final": 0.2}),
            doc(h="2" * 16, seed=1, summary={"main_acc_final": 0.9, "backdoor_acc_avg": 0.7, "backdoor_acc_final": 0.4})]
    cells = tables.headline_cells(runs)
    assert list(cells) == ["main-task acc", "backdoor acc avg", "backdoor acc final"]
    assert cells["main-task acc"] == formats.fmt_cell(85.0, np.std([80.0, 90.0], ddof=1), 2)
    assert cells["backdoor acc final"].startswith("30.0 ± 14.1")
