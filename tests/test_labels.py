"""flcore.analysis.labels: runs and settings as text."""

from flcore.analysis import labels, params
from synthetic_runs import doc


def test_describe_lists_label_profile_rounds_epochs_seeds():
    text = labels.describe([doc(seed=0), doc(h="b" * 16, seed=1, label="CIFAR-10 (JPEG copy)")])
    assert "Fashion-MNIST/CIFAR-10 (JPEG copy)" in text
    assert "smoke profile" in text and "2 rounds" in text and "1 local epoch" in text and "2 seed(s) (0/1)" in text


def test_override_label_reads_as_words():
    assert labels.override_label({"lr_decay": {"gamma": 0.99, "kind": "exponential"}}) == "lr decay ×0.99 per round"
    assert labels.override_label({"poisonedfl.noise_gamma": 0.5}) == "noise scale γ = 0.5"
    assert labels.override_label({"poisonedfl.partition": True, "prodigy.f": 2}) == \
        "dimension partitioning, ProDiGy's assumed f = 2"
    assert labels.override_label({"schedule": "paper", "aggregator": "multikrum"}) == "LeadFL schedule, Multi-Krum"
    assert labels.override_label({}) == "plain"
    for text in (labels.override_label({"lr_decay": {"kind": "exponential", "gamma": 0.9}}),
                 labels.override_label({"poisonedfl.selection": "random"})):
        assert "{" not in text and "=" not in text.replace(" = ", "")


def test_defense_and_case_labels():
    from flcore.core.config import from_dict

    assert labels.defense_label({"config": {"client_defense": "leadfl", "leadfl": {"alpha": 0.2}}}) == "LeadFL, α = 0.2"
    assert labels.defense_label({"config": {"client_defense": "none"}}) == "no defense"
    assert labels.defense_label({"config": {"client_defense": "flwbc"}}) == "FL-WBC"
    smoke = params.read_params(params.PARAMS / "smoke.yaml")
    base = {k: v for k, v in smoke.items() if k not in ("experiment", "profile", "cases", "grid", "description")}
    assert labels.case_label(from_dict({**base, "client_defense": "leadfl"})) == "LeadFL"
    assert labels.case_label(from_dict({**base, "client_defense": "leadfl", "leadfl": {"alpha": 0.2}})) == \
        "LeadFL (code, alpha 0.2)"
    assert labels.case_label(from_dict({**base, "client_defense": "none"})) == "no client defense"


def test_defense_label_order_puts_no_defense_first_then_leadfl_by_alpha():
    settings = ["LDP", "LeadFL, α = 0.4", "no defense", "FL-WBC", "LeadFL, α = 0.05", "LeadFL, α = 0.4"]
    assert labels.defense_label_order(settings) == ["no defense", "LeadFL, α = 0.05", "LeadFL, α = 0.4", "FL-WBC", "LDP"]


def test_by_client_defense_follows_the_chapters_order_and_keeps_ties_in_place():
    runs = [doc(h=h, client=c) for h, c in (("a" * 16, "leadfl"), ("b" * 16, "none"), ("c" * 16, "ldp"),
                                                     ("d" * 16, "none"), ("e" * 16, "krum_custom"))]
    assert [d["hash"][0] for d in labels.by_client_defense(runs)] == ["b", "d", "c", "a", "e"]
