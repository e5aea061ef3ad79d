"""flcore.analysis.formats: numbers as text for table cells and prose."""

from flcore.analysis import formats
from flcore.core.names import DASH


def test_fmt_seeds_names_one_count_or_the_range():
    assert formats.fmt_seeds([3, 3, 3]) == "3"
    assert formats.fmt_seeds([1, 3, 3]) == "1–3"
    assert formats.fmt_seeds([]) == DASH


def test_fmt_seed_list_sorts_the_seeds_of_the_runs():
    runs = [{"config": {"seed": 2}}, {"config": {"seed": 0}}, {"config": {"seed": 1}}]
    assert formats.fmt_seed_list(runs) == "0, 1, 2"
    assert formats.fmt_seed_list([]) == DASH


def test_fmt_count_is_a_whole_number_or_a_dash():
    assert formats.fmt_count(3.0) == "3"
    assert formats.fmt_count(float("nan")) == DASH
    assert formats.fmt_count(None) == DASH


def test_relation_compares_at_the_shown_precision_and_names_missing_values():
    assert formats.relation(0.8, 16.1) == "lower than" and formats.relation(36.5, 10.3) == "higher than"
    assert formats.relation(75.54, 75.5) == "equal to"  # both are shown as 75.5
    assert formats.relation(None, 1.0) == DASH and formats.relation(float("nan"), 1.0) == DASH
    assert formats.relation("—", 2.0) == DASH


def test_seeds_prose_sorts_and_names_one_or_several_seeds():
    from flcore.analysis.formats import seeds_prose

    assert seeds_prose([2, 0, 1]) == "seeds 0, 1, 2" and seeds_prose(iter([3])) == "seed 3" and seeds_prose([]) == ""
