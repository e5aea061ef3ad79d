"""flcore.analysis.params: parameter files and the sweeps of the notebooks' parameters cells (no training)."""

from flcore.analysis import params


def test_sweep_spec_moves_profile_and_experiment_out_of_base():
    s = params.sweep_spec("x", "smoke", {"profile": "default", "experiment": "y", "rounds": 2}, None, None)
    assert s["experiment"] == "x" and s["profile"] == "smoke"
    assert s["base"] == {"rounds": 2} and s["cases"] == [{}] and s["grid"] == {}


def test_spec_from_file_and_params_path():
    assert params.params_path("selection", "default").name == "selection.yaml"
    assert params.params_path("selection", "smoke").name == "selection.smoke.yaml"
    s = params.spec_from_file(params.params_path("selection", "smoke"))
    assert s["profile"] == "smoke" and "profile" not in s["base"]


def test_resolve_spec_profile_only_uses_the_profile_file():
    d = params.spec_from_file(params.params_path("selection", "default"))
    spec, src = params.resolve_spec("selection", "smoke", "selection", {**d["base"], "profile": "default"}, d["cases"], d["grid"])
    assert spec == params.spec_from_file(params.params_path("selection", "smoke"))
    assert "selection.smoke.yaml" in src


def test_resolve_spec_file_without_cases_means_no_cases():
    d = params.spec_from_file(params.params_path("alpha_sensitivity", "default"))
    f = params.read_params(params.params_path("alpha_sensitivity", "smoke"))
    assert "cases" not in f  # the situation this rule is for
    # papermill -f the smoke file: base and grid replaced, cases keep the notebook default
    spec, _ = params.resolve_spec("alpha_sensitivity", "smoke", "alpha_sensitivity", f["base"], d["cases"], f["grid"])
    assert spec["cases"] == [{}]
    # explicit values are kept
    spec, src = params.resolve_spec("alpha_sensitivity", "smoke", "alpha_sensitivity", {"rounds": 1}, [{"seed": 1}], None)
    assert spec["cases"] == [{"seed": 1}] and src == "notebook parameters"


def test_expand_labelled_matches_expand_and_keeps_overrides():
    from flcore.experiments.sweep import expand

    spec = params.spec_from_file(params.params_path("original_tables", "smoke"))
    lab = params.expand_labelled(spec)
    assert [c.hash for c, _ in lab] == [c.hash for c in expand(spec)]
    assert lab[0][1] == {"aggregator": "multikrum", "client_defense": "none"}


def test_chapter_sweep_resolves_the_parameters_cell_and_says_where_it_came_from(capsys):
    from flcore.experiments.sweep import expand

    d = params.spec_from_file(params.params_path("selection", "default"))
    spec, labelled = params.chapter_sweep("selection", "smoke", "selection", {**d["base"], "profile": "default"},
                                          d["cases"], d["grid"], d["description"], "")
    assert spec == params.spec_from_file(params.params_path("selection", "smoke"))
    assert [c.hash for c, _ in labelled] == [c.hash for c in expand(spec)]
    assert capsys.readouterr().out.strip() == \
        f"{len(labelled)} runs (parameters of params/selection.smoke.yaml, profile smoke)"
