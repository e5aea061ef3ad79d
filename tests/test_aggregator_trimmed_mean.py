"""Tests of the coordinate-wise trimmed mean (flcore.methods.aggregators.trimmed_mean), with its oracle option."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flcore.methods import aggregators as agg
from flcore.core.errors import ConfigError
from test_aggregator_common import PROP, X5, _random_updates, close


def test_trimmed_mean_hand():
    # beta 0.2, n 5: trim 1 per side -> x mean(1,3,4) = 8/3, y mean(1,1,2) = 4/3
    close(agg.aggregate("trimmed_mean", X5, opts={"beta": 0.2})[0], [8 / 3, 4 / 3])
    # beta 0.4, n 5: trim 2 per side -> the median
    close(agg.aggregate("trimmed_mean", X5, opts={"beta": 0.4})[0], [3, 1])
    # beta 0: the mean (20/5, 5/5)
    close(agg.aggregate("trimmed_mean", X5, opts={"beta": 0.0})[0], [4, 1])
    assert agg.trim_count(0.4, 10) == 4 and agg.trim_count(0.49, 10) == 4 and agg.trim_count(0.1, 9) == 0


def test_reference_trimmed_mean_at_ten_is_the_median():
    x = torch.randn(10, 30, generator=torch.Generator().manual_seed(1))
    close(agg.trimmed_mean(x, 0.4), agg.coordinate_median(x))


@pytest.mark.parametrize("opts, n, pattern", [
    (agg.TrimmedMeanOptions(beta=0.5), 10, r"trimmed_mean\.beta = 0\.5 .*\[0, 0\.5\)"),
    (agg.TrimmedMeanOptions(beta=-0.1), 10, r"trimmed_mean\.beta = -0\.1"),
])
def test_check_errors(opts, n, pattern):
    with pytest.raises(ConfigError, match=pattern):
        opts.check(n)


@PROP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 15), d=st.integers(1, 6),
       beta=st.floats(0.0, 0.499), adv=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=90, max_size=90))
def test_trimmed_mean_stays_in_honest_range(seed, n, d, beta, adv):
    a = agg.trim_count(beta, n)  # at most floor(beta * n) adversarial
    x = _random_updates(seed, n, d, 1.0)
    x[:a] = torch.tensor(adv[: a * d], dtype=torch.float32).reshape(a, d)
    honest = x[a:]
    out = agg.trimmed_mean(x, beta)
    assert bool((out >= honest.min(0).values - 1e-4).all() and (out <= honest.max(0).values + 1e-4).all())


def test_trimmed_mean_oracle_trims_the_rounds_fakes():
    from flcore.methods.aggregators import TrimmedMeanOptions
    from flcore.core.registry import get

    u = torch.tensor([[1.0], [2.0], [3.0], [4.0], [100.0], [-100.0]])
    fn = get("aggregator", "trimmed_mean").fn
    out, _ = fn(u, torch.ones(6), TrimmedMeanOptions(oracle=True), {"n_fake": 1, "n_genuine": 5})
    assert out.item() == pytest.approx((2 + 3 + 1 + 4) / 4)
    out, _ = fn(u, torch.ones(6), TrimmedMeanOptions(oracle=True), {"n_fake": 2})
    assert out.item() == pytest.approx(2.5)
