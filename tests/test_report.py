"""flcore.report: the notebooks' helpers, on synthetic stored-run documents (no training)."""
import math

import pytest

from flcore import report as R

ROOT = R.ROOT


def doc(h="a" * 16, aggregator="multikrum", client="none", seed=0, rounds=None, schedule="paper", summary=None,
        label="Fashion-MNIST", **cfg):
    rounds = rounds if rounds is not None else [
        {"round": 0, "selected": list(range(1, 11)), "malicious": [1, 2, 3, 4, 5], "main_acc": 0.5,
         "backdoor_acc": 0.9, "agg_weights": [0.2] * 5 + [0.0] * 5, "fake_clients": 0},
        {"round": 1, "selected": list(range(11, 21)), "malicious": [], "main_acc": 0.7, "backdoor_acc": 0.4,
         "agg_weights": [0.0] * 5 + [0.2] * 5, "fake_clients": 0}]
    config = {"experiment": "t", "profile": "smoke", "dataset": "fmnist", "rounds": len(rounds), "local_epochs": 1,
              "seed": seed, "aggregator": aggregator, "client_defense": client, "schedule": schedule,
              "clients_per_round": 10, "eval": {"test_samples": 500}, **cfg}
    return {"hash": h, "config": config, "rounds": rounds, "status": "completed",
            "summary": summary or {"main_acc_final": 0.7, "backdoor_acc_avg": 0.65, "backdoor_acc_final": 0.4},
            "provenance": {"data_label": label, "wall_s": 2.0, "device": "cpu"}}


# --------------------------------------------------------------------------- specs


def test_sweep_spec_moves_profile_and_experiment_out_of_base():
    s = R.sweep_spec("x", "smoke", {"profile": "default", "experiment": "y", "rounds": 2}, None, None)
    assert s["experiment"] == "x" and s["profile"] == "smoke"
    assert s["base"] == {"rounds": 2} and s["cases"] == [{}] and s["grid"] == {}


def test_spec_from_file_and_params_path():
    assert R.params_path("selection", "default").name == "selection.yaml"
    assert R.params_path("selection", "smoke").name == "selection.smoke.yaml"
    s = R.spec_from_file(R.params_path("selection", "smoke"))
    assert s["profile"] == "smoke" and "profile" not in s["base"]


def test_resolve_spec_profile_only_uses_the_profile_file():
    d = R.spec_from_file(R.params_path("selection", "default"))
    spec, src = R.resolve_spec("selection", "smoke", "selection", {**d["base"], "profile": "default"}, d["cases"], d["grid"])
    assert spec == R.spec_from_file(R.params_path("selection", "smoke"))
    assert "selection.smoke.yaml" in src


def test_resolve_spec_file_without_cases_means_no_cases():
    d = R.spec_from_file(R.params_path("alpha_sensitivity", "default"))
    f = R.read_params(R.params_path("alpha_sensitivity", "smoke"))
    assert "cases" not in f  # the situation this rule is for
    # papermill -f the smoke file: base and grid replaced, cases keep the notebook default
    spec, _ = R.resolve_spec("alpha_sensitivity", "smoke", "alpha_sensitivity", f["base"], d["cases"], f["grid"])
    assert spec["cases"] == [{}]
    # explicit values are kept
    spec, src = R.resolve_spec("alpha_sensitivity", "smoke", "alpha_sensitivity", {"rounds": 1}, [{"seed": 1}], None)
    assert spec["cases"] == [{"seed": 1}] and src == "notebook parameters"


def test_expand_labelled_matches_expand_and_keeps_overrides():
    from flcore.sweep import expand

    spec = R.spec_from_file(R.params_path("original_tables", "smoke"))
    lab = R.expand_labelled(spec)
    assert [c.hash for c, _ in lab] == [c.hash for c in expand(spec)]
    assert lab[0][1] == {"aggregator": "multikrum", "client_defense": "none"}


# --------------------------------------------------------------------------- small helpers


def test_flatten_get_diff_fmt():
    assert R.flatten({"a": {"b": 1}, "c": 2}) == {"a.b": 1, "c": 2}
    assert R.get({"a": {"b": 1}}, "a.b") == 1 and R.get({"a": {}}, "a.b", 5) == 5
    assert R.diff({"a": {"b": 1}, "experiment": "x"}, {"a": {"b": 2}}) == {"a.b": 1}
    assert R.fmt_overrides({"leadfl.alpha": 0.0, "lr_decay": {"kind": "exponential"}}) == \
        "leadfl.alpha=0.0, lr_decay={kind: exponential}"


def test_mean_spread_and_cells():
    m, sd, n = R.mean_spread([1.0, 3.0, None, float("nan")])
    assert (m, n) == (2.0, 2) and sd == pytest.approx(math.sqrt(2))
    assert R.fmt_cell(2.0, 1.414, 2) == "2.0 ± 1.4"
    assert R.fmt_cell(2.0, float("nan"), 1) == "2.0"
    assert R.fmt_cell(float("nan"), float("nan"), 0) == R.DASH
    assert R.fmt_cell(2.0, 0.5, 3, show_n=True) == "2.0 ± 0.5 (n=3)"
    assert R.fmt_num(None) == R.DASH and R.fmt_num(1.234, 2) == "1.23"


def test_describe_lists_label_profile_rounds_epochs_seeds():
    text = R.describe([doc(seed=0), doc(h="b" * 16, seed=1, label="CIFAR-10 (JPEG copy)")])
    assert "Fashion-MNIST/CIFAR-10 (JPEG copy)" in text
    assert "smoke profile" in text and "2 rounds" in text and "1 local epoch" in text and "2 seed(s) (0/1)" in text


def test_rounds_frame_percent_and_nan():
    rounds = [{"round": 0, "selected": [1, 2], "malicious": [1], "main_acc": None, "backdoor_acc": None},
              {"round": 1, "selected": [1, 2], "malicious": [], "main_acc": 0.5, "backdoor_acc": 0.25}]
    f = R.rounds_frame([doc(rounds=rounds)], keys=["client_defense"])
    assert list(f["n_malicious"]) == [1, 0]
    assert math.isnan(f["main_acc"][0]) and f["main_acc"][1] == 50.0 and f["backdoor_acc"][1] == 25.0
    assert list(f["client_defense"]) == ["none", "none"]


def test_bursts_blocks_and_shading():
    d = doc(rounds=[{"round": r, "selected": list(range(10)), "malicious": list(range(m))}
                    for r, m in enumerate([5, 6, 1, 0, 5])])
    assert R.burst_rounds(d, 5) == [0, 1, 4]
    assert R.blocks([4, 0, 1]) == [(0, 1), (4, 4)]
    per = doc(schedule="periodic", periodic={"cycle": 3, "burst": 1},
              rounds=[{"round": r, "selected": [], "malicious": []} for r in range(7)])
    assert R.burst_set(per) == [0, 3, 6]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    R.shade_rounds(ax, [0, 1, 4], label="burst")
    assert len(ax.patches) == 2
    tw = R.malicious_bars(ax, d)
    assert len(tw.patches) == 5
    plt.close(fig)


def test_defense_table_layout_seeds_and_published():
    docs = [doc(h="1" * 16, client="none", seed=0, summary={"main_acc_final": 0.8, "backdoor_acc_avg": 0.9,
                                                           "backdoor_acc_final": 1.0}),
            doc(h="2" * 16, client="none", seed=1, summary={"main_acc_final": 0.9, "backdoor_acc_avg": 0.7,
                                                           "backdoor_acc_final": 0.8}),
            doc(h="3" * 16, client="leadfl", aggregator="sparsefed")]
    pub = {"multikrum": {"none": {"main_acc_final": 89.3, "backdoor_acc_avg": 82.6, "backdoor_acc_final": 93.2}}}
    t = R.defense_table(docs, pub)
    assert list(t.index.get_level_values(0).unique()) == ["Multi-Krum", "SparseFed"]
    assert t.loc[("Multi-Krum", "main-task acc"), ("None", "ours")] == "85.0 ± 7.1"
    assert t.loc[("Multi-Krum", "main-task acc"), ("None", "published")] == "89.3"
    assert t.loc[("Multi-Krum", "seeds (runs)"), ("None", "ours")] == "2"
    assert t.loc[("Multi-Krum", "main-task acc"), ("LeadFL", "ours")] == R.DASH  # no run
    assert t.loc[("SparseFed", "backdoor acc final"), ("LeadFL", "ours")] == "40.0"
    assert t.loc[("SparseFed", "main-task acc"), ("LeadFL", "published")] == R.DASH
    # the four client columns of the published tables are always there
    assert [c for c, _ in t.columns[::2]] == ["None", "LDP", "FL-WBC", "LeadFL"]


def test_cell_variants_split_settings_but_not_seeds():
    docs = [doc(h="1" * 16, client="leadfl", leadfl={"alpha": 0.25}), doc(h="2" * 16, client="leadfl", seed=1,
                                                                        leadfl={"alpha": 0.25}),
            doc(h="3" * 16, client="leadfl", leadfl={"alpha": 0.15}), doc(h="4" * 16)]
    v = R.cell_variants(docs)
    assert v == ["alpha=0.25", "alpha=0.25", "alpha=0.15", ""]


def test_kept_clients_and_fake_weight():
    k = R.kept_clients(doc())
    assert k[0] == {"round": 0, "malicious_selected": 5, "kept": 5, "malicious_kept": 5, "malicious_share_kept": 1.0}
    assert k[1]["malicious_share_kept"] == 0.0
    d = doc(rounds=[{"round": 0, "selected": [1, 2], "malicious": [], "fake_clients": 2,
                     "agg_weights": [0.5, 0.3, 0.2, 0.0]}])
    (fw,) = R.fake_weight(d)
    assert fw["weight_on_fakes"] == pytest.approx(0.2) and fw["fake_share"] == 0.5
    d["rounds"][0]["attack"] = {"c": 8.0, "tested": False}
    assert R.attack_records(d) == [{"round": 0, "c": 8.0, "tested": False}]


def test_mitigation_rounds():
    bd = {0: 90, 1: 95, 2: 70, 3: 40, 4: 30, 5: 80, 6: 85, 7: 60, 8: 55}
    res = R.mitigation_rounds(bd, [0, 1, 5, 6], level=50)
    assert [r["rounds"] for r in res] == [2, None]  # second burst never mitigated before the run ends
    assert res[0]["peak"] == 95 and res[0]["window"] == 3
    # already under the level in the burst's last round: 0
    assert R.mitigation_rounds({0: 40}, [0])[0]["rounds"] == 0
    # missing (not evaluated) rounds are skipped
    assert R.mitigation_rounds({0: 90, 2: 10}, [0], last_round=3)[0]["rounds"] == 2


def test_phase_means_and_cycle_profile():
    import pandas as pd

    f = pd.DataFrame({"run": ["a"] * 4, "round": [0, 1, 2, 3], "backdoor_acc": [90.0, 80.0, 20.0, 10.0]})
    pm = R.phase_means(f, {"a": [0, 1]})
    assert pm.loc["a", "burst"] == 85.0 and pm.loc["a", "benign"] == 15.0
    prof = R.cycle_profile(f, 2)
    assert list(prof.loc["a"]) == [55.0, 45.0]


def test_pareto_front_and_constrained_pick():
    pts = [(80.0, 89.0), (30.0, 88.5), (40.0, 88.0), (20.0, 80.0), (float("nan"), 90.0)]
    assert R.pareto_front(pts) == [3, 1, 0]
    i, how = R.pick_constrained(pts, reference_y=89.0, max_loss=1.0)
    assert (i, how) == (1, "constraint") and i in R.pareto_front(pts)
    i, how = R.pick_constrained([(10.0, 50.0), (5.0, 40.0)], reference_y=89.0)
    assert (i, how) == (0, "fallback")


def test_published_file_has_the_protocol_numbers_with_sources():
    pub = R.published()
    assert "Table" in pub["leadfl"]["source"]
    fm = R.published_tables(pub, "fmnist")["multikrum"]
    assert fm["leadfl"] == {"main_acc_final": 87.9, "backdoor_acc_avg": 32.9, "backdoor_acc_final": 0.0}
    assert R.published_tables(pub, "cifar10")["multikrum"]["none"]["backdoor_acc_final"] == 80.5
    p = pub["poisonedfl"]
    assert p["reported"]["source"] and p["official_setting"]["source"]
    from flcore import config

    for item in p["official_setting"]["values"]:  # every official key is a configuration key
        top = item["key"].split(".")[0]
        assert top in config.TOP_LEVEL or top in config.SECTIONS or top == "poisonedfl", item


def test_plot_lines_band_for_seeds():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = R.rounds_frame([doc(h="1" * 16), doc(h="2" * 16, seed=1)], keys=["client_defense"])
    fig, ax = plt.subplots()
    R.plot_lines(ax, f, "client_defense", "backdoor_acc", names=R.CLIENT_NAMES)
    assert [l.get_label() for l in ax.lines] == ["None"]
    assert len(ax.collections) == 1  # the band over the two seeds
    plt.close(fig)


def test_defense_table_marks_diverged_runs():
    d = doc(client="ldp")
    d["status"] = "diverged"
    t = R.defense_table([d])
    assert t.loc[("Multi-Krum", "backdoor acc final"), ("LDP", "ours")] == "40.0 †"
    assert t.loc[("Multi-Krum", "backdoor acc final"), ("None", "ours")] == R.DASH


def test_fmt_seeds_names_one_count_or_the_range():
    assert R.fmt_seeds([3, 3, 3]) == "3"
    assert R.fmt_seeds([1, 3, 3]) == "1–3"
    assert R.fmt_seeds([]) == R.DASH


def test_target_retention_by_hand():
    from flcore.report import target_retention

    # 10 images, 2 of the target class: all 8 others and 1 of the 2 target images go to the target
    assert target_retention(0.9, 1.0, 10, 2) == pytest.approx(0.5)
    # a model that ignores the trigger: no other image moves, every target image stays
    assert target_retention(0.2, 0.0, 10, 2) == pytest.approx(1.0)
    # below the target share: the trigger moves target images out of their class
    assert target_retention(0.05, 0.0, 10, 2) == pytest.approx(0.25)


def test_authors_code_runs_are_the_shipped_records():
    from flcore.report import authors_code_runs

    runs = authors_code_runs()
    assert set(runs) == {"none", "leadfl"}
    assert runs["none"]["round"].tolist() == list(range(80))
    assert runs["leadfl"]["round"].tolist() == list(range(12))
    # the paper schedule's forced 5-of-10 rounds
    assert (runs["none"].set_index("round").loc[[0, 10, 12], "n_malicious"] == 5).all()
    assert runs["none"]["backdoor_acc"].between(0, 100).all()


def test_local_steps_of_the_protocol():
    from flcore.report import local_steps

    # Fashion-MNIST: 600 images per client, batch 16 -> 38 steps per epoch, the defense on 37
    assert local_steps({"dataset": "fmnist", "clients": 100, "batch_size": 16, "local_epochs": 10}) == (380, 370)
    # CIFAR-10: 500 images, batch 32 -> 16 steps per epoch
    assert local_steps({"dataset": "cifar10", "clients": 100, "batch_size": 32, "local_epochs": 1}) == (16, 15)


def test_local_steps_table_groups_seeds_and_counts_tie_rounds():
    from flcore.report import local_steps_table

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


def test_lower_from_needs_every_larger_count_below_the_baseline():
    from flcore.report import lower_from

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


def test_undefended_cell_table_groups_settings_and_reads_round_0():
    from flcore.report import undefended_cell_table

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


# --------------------------------------------------------------------------- book pages


def test_override_label_reads_as_words():
    assert R.override_label({"lr_decay": {"gamma": 0.99, "kind": "exponential"}}) == "lr decay ×0.99 per round"
    assert R.override_label({"poisonedfl.noise_gamma": 0.5}) == "noise scale γ = 0.5"
    assert R.override_label({"poisonedfl.partition": True, "prodigy.f": 2}) == \
        "dimension partitioning, ProDiGy's assumed f = 2"
    assert R.override_label({"schedule": "paper", "aggregator": "multikrum"}) == "LeadFL schedule, Multi-Krum"
    assert R.override_label({}) == "plain"
    for text in (R.override_label({"lr_decay": {"kind": "exponential", "gamma": 0.9}}),
                 R.override_label({"poisonedfl.selection": "random"})):
        assert "{" not in text and "=" not in text.replace(" = ", "")


def test_show_table_and_show_figure_write_their_files(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    monkeypatch.setattr(R, "DOWNLOADS", tmp_path)
    R.start_page("demo", "default")
    assert matplotlib.rcParams["figure.dpi"] == R.FIG_DPI
    R.show_table(pd.DataFrame({"main": ["66.7 ± 10.4"]}), "a table", data=pd.DataFrame({"main": [66.7]}))
    fig, ax = plt.subplots(figsize=(12, 4))  # wider than the column
    ax.plot([0, 1], [0, 1], label="a line with a long label")
    R.legend_outside(ax)
    R.show_figure(fig, "curve")
    files = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert files == ["curve.png", "curve.svg", "table-1.csv"]
    assert pd.read_csv(tmp_path / "demo" / "table-1.csv")["main"].tolist() == [66.7]
    png = (tmp_path / "demo" / "curve.png").read_bytes()
    width = int.from_bytes(png[16:20], "big") / (2 * R.FIG_DPI)  # inches, legend included
    assert abs(width - R.FIG_WIDTH_IN) < 0.1
    assert not plt.get_fignums()  # shown figures are closed
    assert "--only demo" in R.regenerate_command()
    R.start_page("demo", "default")  # a page's old files go
    assert list((tmp_path / "demo").iterdir()) == []


# --------------------------------------------------------------------------- the chapters' helpers


def test_defense_and_case_labels():
    from flcore.config import from_dict

    assert R.defense_label({"config": {"client_defense": "leadfl", "leadfl": {"alpha": 0.2}}}) == "LeadFL, α = 0.2"
    assert R.defense_label({"config": {"client_defense": "none"}}) == "no defense"
    assert R.defense_label({"config": {"client_defense": "flwbc"}}) == "FL-WBC"
    smoke = R.read_params(R.PARAMS / "smoke.yaml")
    base = {k: v for k, v in smoke.items() if k not in ("experiment", "profile", "cases", "grid", "description")}
    assert R.case_label(from_dict({**base, "client_defense": "leadfl"})) == "LeadFL"
    assert R.case_label(from_dict({**base, "client_defense": "leadfl", "leadfl": {"alpha": 0.2}})) == \
        "LeadFL (code, alpha 0.2)"
    assert R.case_label(from_dict({**base, "client_defense": "none"})) == "no client defense"


def test_half_selected_cell_mean_and_kept_share():
    import pandas as pd

    assert [R.half_selected({"config": {"clients_per_round": n}}) for n in (1, 9, 10, 30)] == [1, 5, 5, 15]
    docs = [{"hash": "a", "config": {"schedule": "random", "client_defense": "none"}},
            {"hash": "b", "config": {"schedule": "random", "client_defense": "none"}},
            {"hash": "c", "config": {"schedule": "periodic", "client_defense": "none"}}]
    tab = pd.DataFrame({"benign": [10.0, 20.0, 70.0]}, index=["a", "b", "c"])
    assert R.cell_mean(docs, tab, "benign", schedule="random", client_defense="none") == 15.0
    assert R.cell_mean(docs, tab, "benign", schedule="paper") is None
    kept = pd.DataFrame({"state": ["full", "full", "full", "trainable"], "malicious_selected": [2, 4, 5, 3],
                         "malicious_share_kept": [0.5, 0.25, 1.0, 0.0]})
    assert R.kept_share(kept, "full", 1, 4) == 37.5
    assert R.kept_share(kept, "full", 6, 100) != R.kept_share(kept, "full", 6, 100)  # NaN: no such round
    assert R.kept_share(kept.iloc[:0], "full", 1, 4) != R.kept_share(kept.iloc[:0], "full", 1, 4)


def test_symlog_label_marks_decades_only():
    assert R.symlog_label(0, 1e-3) == "0"
    assert R.symlog_label(1e-2, 1e-3) == "$10^{-2}$" and R.symlog_label(-100, 1e-3) == "$-10^{2}$"
    assert R.symlog_label(1e-3, 1e-3) == "" and R.symlog_label(3e-2, 1e-3) == ""


def test_error_last_quarter_of_the_evaluated_rounds():
    rounds = [{"main_acc": a} for a in (0.1, 0.2, None, 0.5, 0.6, 0.7, 0.8, 0.9, float("nan"), 0.95)]
    assert abs(R.error_last_quarter({"rounds": rounds}) - 7.5) < 1e-9  # 8 evaluated: the last 2, errors 10 and 5
    assert abs(R.error_last_quarter({"rounds": rounds[:2]}) - 80.0) < 1e-9  # at least one round
    v = R.error_last_quarter({"rounds": [{"main_acc": None}]})
    assert v != v  # NaN: nothing evaluated


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
    runs = R.pfl_runs(labelled, docs)
    assert list(runs["variant"]) == ["", "poisonedfl.noise_gamma=0.5", "poisonedfl.flip_p=0.1"]
    assert abs(R.pfl_find(runs, "prodigy", "poisonedfl")["error_final"] - 20.0) < 1e-9
    assert R.pfl_find(runs, "median", "poisonedfl") is None
    assert abs(R.pfl_variant_error(runs, "prodigy", "poisonedfl", "flip_p") - 30.0) < 1e-9
    assert R.pfl_variant_error(runs, "prodigy", "poisonedfl", "partition") is None
    s = R.pfl_sweep(labelled, docs, runs, "poisonedfl.noise_gamma")
    assert s["value"].tolist() == [0.0, 0.5] and [round(e, 6) for e in s["error"]] == [20.0, 40.0]
    assert R.pfl_sweep(labelled, docs, runs, "poisonedfl.flip_p")["value"].tolist() == [0.0, 0.1]
    assert list(R.pfl_sweep(labelled[1:2], docs[1:2], runs, "poisonedfl.flip_p").columns) == ["value", "error", "weight"]
    assert R.fmt_pct(12.34) == "12.3 %" and R.fmt_pct(None) == "— %"


def test_multikrum_cells_keep_leadfl_at_the_paper_alpha():
    def d(ds, agg, cd, alpha=None):
        c = {"dataset": ds, "aggregator": agg, "client_defense": cd}
        if alpha is not None:
            c["leadfl"] = {"alpha": alpha}
        return {"config": c}

    docs = [d("fmnist", "multikrum", "leadfl", 0.4), d("fmnist", "multikrum", "leadfl", 0.2),
            d("cifar10", "multikrum", "leadfl", 0.25), d("fmnist", "bulyan", "none"), d("fmnist", "multikrum", "none")]
    cells = R.multikrum_cells(docs, "fmnist")
    assert list(cells) == R.CLIENT_ORDER
    assert cells["leadfl"] == [docs[0]] and cells["none"] == [docs[4]] and cells["ldp"] == []
    assert R.multikrum_cells(docs, "cifar10")["leadfl"] == [docs[2]]


def test_kept_in_tie_rounds_rows_per_run_columns_per_tie_round():
    def run(defense, seed, schedule="paper", kept=(3, 1)):
        sel = list(range(1, 11))
        rounds = [{"round": r, "selected": sel, "malicious": sel[:m], "agg_weights": [1.0] * k + [0.0] * (10 - k)}
                  for r, m, k in ((0, 5, kept[0]), (1, 2, 2), (4, 5, kept[1]))]
        return {"config": {"client_defense": defense, "seed": seed, "schedule": schedule}, "rounds": rounds}

    t = R.kept_in_tie_rounds([run("leadfl", 0, kept=(5, 0)), run("none", 1), run("none", 0, "legacy", (4, 2))])
    assert list(t.columns) == ["round 0", "round 4"]  # round 1 has 2 malicious: not a tie
    assert t.loc["ours: LeadFL, seed 0"].tolist() == [5, 0]
    t = R.kept_in_tie_rounds([run("none", 1), run("none", 0, "legacy", (4, 2))], by_setting=True)
    assert list(t.index) == ["ours: LeadFL schedule, whole state, None, seed 1", "ours: legacy schedule, whole state, None, seed 0"]
    assert t.iloc[1].tolist() == [4, 2]
