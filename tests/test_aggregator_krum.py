"""Tests of Krum and the Krum scores and ranking (flcore.methods.aggregators.krum)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flcore.methods import aggregators as agg
from flcore.core.errors import ConfigError
from test_aggregator_common import PROP, X5, _direct_krum, close, t


def test_krum_scores_hand():
    # 2 nearest others: 0:{1,4}=5  1:{4,5}=9  2:{1,5}=6  3:{10,13}=23  4:{80,98}=178
    close(agg.krum_scores(agg.pairwise_sq_dists(X5), 2), [5, 9, 6, 23, 178])


def test_krum_hand():
    # f = 1 at n = 5: n - f - 2 = 2 nearest; client 0 has the lowest score
    out, w = agg.aggregate("krum", X5, opts={"f": 1})
    close(out, [1, 1])
    close(w, [1, 0, 0, 0, 0])


@pytest.mark.parametrize("opts, n, pattern", [
    (agg.KrumOptions(f=4), 10, r"krum\.f = 4 .*n = 10.*n > 2f \+ 2.*\[0, 3\]"),
    (agg.KrumOptions(f=-1), 10, r"krum\.f = -1"),
    (agg.KrumOptions(f=1.5), 10, r"krum\.f must be an integer"),
])
def test_check_errors(opts, n, pattern):
    with pytest.raises(ConfigError, match=pattern):
        opts.check(n)


@PROP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 14), d=st.integers(1, 8), data=st.data())
def test_krum_family_ignores_far_adversaries(seed, n, d, data):
    f = data.draw(st.integers(0, (n - 3) // 2))
    a = data.draw(st.integers(0, f))
    m = data.draw(st.integers(1, n - f))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * 0.1 + 3.0  # tight honest cluster
    directions = rng.normal(size=(a, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    x[:a] = 3.0 + 1e3 * (1 + rng.random((a, 1))) * directions  # at least 1e3 away
    x = torch.tensor(x, dtype=torch.float32)
    _, w = agg.multikrum(x, f, m)
    assert set(torch.nonzero(w).flatten().tolist()).isdisjoint(range(a))
    _, w = agg.krum(x, f)
    assert int(torch.nonzero(w).flatten()[0]) >= a


def test_near_ties_fall_back_to_direct_differences():
    """An exact tie in exact arithmetic cannot be certified from the Gram distances;
    the ranking then comes from the direct differences."""
    x = t([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [0.5, 0.5], [3, 3]])
    dist = agg.gram_sq_dists(x)
    _, ok = agg._krum_ranking(dist, 2, (1, 2, 3))
    assert not ok
    assert agg.krum_select(x, 2, 0, 3) == _direct_krum(x, 2, 0, 3)
    # far apart: certified without the direct differences
    y = t([[0, 0], [1, 0], [0, 2], [5, 5], [-7, 9]])
    assert agg._krum_ranking(agg.gram_sq_dists(y), 2, (1, 2, 3, 4))[1]
