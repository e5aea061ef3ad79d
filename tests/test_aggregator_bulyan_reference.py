"""Tests of the reference code's "Bulyan" (flcore.methods.aggregators.bulyan_reference)."""
from __future__ import annotations

import pytest

from flcore.methods import aggregators as agg
from flcore.core.errors import ConfigError
from test_aggregator_common import X5, close


def test_bulyan_reference_hand():
    # same scores with 2 nearest; ranking 0, 2, 1, 3, 4; ranks 2..3 -> clients 2 and 1
    out, w = agg.aggregate("bulyan_reference", X5, opts={"nearest": 2, "rank_start": 2, "rank_end": 3})
    close(out, [2.0, 1.5])
    close(w, [0, 0.5, 0.5, 0, 0])


@pytest.mark.parametrize("opts, n, pattern", [
    (agg.BulyanReferenceOptions(), 5, r"bulyan_reference\.nearest = 6 .*\[1, 4\]"),
    (agg.BulyanReferenceOptions(rank_start=3, rank_end=2), 10, r"bulyan_reference\.rank_end = 2 .*\[3, 10\]"),
    (agg.BulyanReferenceOptions(rank_start=0), 10, r"bulyan_reference\.rank_start = 0"),
])
def test_check_errors(opts, n, pattern):
    with pytest.raises(ConfigError, match=pattern):
        opts.check(n)
