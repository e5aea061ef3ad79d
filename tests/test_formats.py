"""flcore.analysis.formats: numbers as text for table cells and prose."""

from flcore.analysis import formats
from flcore.core.names import DASH


def test_fmt_seeds_names_one_count_or_the_range():
    assert formats.fmt_seeds([3, 3, 3]) == "3"
    assert formats.fmt_seeds([1, 3, 3]) == "1–3"
    assert formats.fmt_seeds([]) == DASH
