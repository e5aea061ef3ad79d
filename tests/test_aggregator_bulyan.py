"""Tests of El Mhamdi et al.'s Bulyan (flcore.methods.aggregators.bulyan)."""
from __future__ import annotations

import pytest

from flcore.methods import aggregators as agg
from flcore.core.errors import ConfigError
from test_aggregator_common import X5, close, t


def test_bulyan_hand():
    # n = 7, f = 1: theta = 5 picks, beta = 3. First coordinate 0,1,3,6,10,15,100
    # (second coordinate constant 5, so distances are those of the first).
    # pick 1 (r=7, 4 nearest): scores a146 b111 c71 d86 e171 f446 -> c=3
    # pick 2 (r=6, 3 nearest): a137 b107 d77 e122 f302 -> d=6
    # pick 3 (r=5, 2 nearest): a101 b82 e106 f221 -> b=1
    # pick 4 (r=4, 1 nearest): a100 e25 f25 -> tie e/f, totals e 8225 > f 7475 -> f=15
    # pick 5 (r=3, 1 nearest): a100 e100 -> tie, totals a 10100 > e 8200 -> e=10
    # selected {1,3,6,10,15}, median 6, the 3 closest are 6, 3, 10 -> 19/3
    x = t([[0, 5], [1, 5], [3, 5], [6, 5], [10, 5], [15, 5], [100, 5]])
    assert agg.bulyan_select(x, 1) == [2, 3, 1, 5, 4]
    out, w = agg.aggregate("bulyan", x, opts={"f": 1})
    close(out, [19 / 3, 5])
    assert w is None
    # f = 0 is the plain mean
    close(agg.bulyan(X5, 0), X5.mean(0))


@pytest.mark.parametrize("opts, n, pattern", [
    (agg.BulyanOptions(f=2), 10, r"bulyan\.f = 2 .*n >= 4f \+ 3.*\[0, 1\]"),
    (agg.BulyanOptions(f=1), 6, r"bulyan\.f = 1 .*n = 6"),
])
def test_check_errors(opts, n, pattern):
    with pytest.raises(ConfigError, match=pattern):
        opts.check(n)
