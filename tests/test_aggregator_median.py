"""Tests of the coordinate-wise median (flcore.methods.aggregators.median)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flcore.methods import aggregators as agg
from flcore.core.errors import ConfigError
from test_aggregator_common import PROP, X5, _random_updates, close


def test_median_hand():
    # x: 1,1,3,4,11 -> 3 ; y: -3,1,1,2,4 -> 1
    out, w = agg.aggregate("median", X5)
    close(out, [3, 1])
    assert w is None
    # even n: x 1,1,3,4 ; y 1,1,2,4 -> mean of middles (2, 1.5), lower (1, 1)
    close(agg.aggregate("median", X5[:4])[0], [2, 1.5])
    close(agg.aggregate("median", X5[:4], opts={"lower": True})[0], [1, 1])
    close(agg.coordinate_median(X5[:4], lower=True), torch.median(X5[:4], dim=0).values)


@pytest.mark.parametrize("opts, n, pattern", [
    (agg.MedianOptions(lower="yes"), 10, r"median\.lower must be true or false"),
])
def test_check_errors(opts, n, pattern):
    with pytest.raises(ConfigError, match=pattern):
        opts.check(n)


@PROP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 15), d=st.integers(1, 6),
       adv=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=90, max_size=90),
       lower=st.booleans())
def test_median_stays_in_honest_range(seed, n, d, adv, lower):
    a = (n - 1) // 2  # fewer than half adversarial
    x = _random_updates(seed, n, d, 1.0)
    x[:a] = torch.tensor(adv[: a * d], dtype=torch.float32).reshape(a, d)
    honest = x[a:]
    out = agg.coordinate_median(x, lower=lower)
    assert bool((out >= honest.min(0).values - 1e-6).all() and (out <= honest.max(0).values + 1e-6).all())
