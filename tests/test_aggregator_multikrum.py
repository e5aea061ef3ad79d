"""Tests of Multi-Krum (flcore.methods.aggregators.multikrum), with the BatchNorm-counter artifact."""
from __future__ import annotations

import pytest
import torch

from flcore.methods import aggregators as agg
from flcore.core.errors import ConfigError
from test_aggregator_common import X5, close


def test_multikrum_hand():
    # scores 5, 9, 6, 23, 178 -> keep clients 0, 2, 1: mean ((1+1+3)/3, (1+2+1)/3)
    out, w = agg.aggregate("multikrum", X5, opts={"f": 1, "m": 3})
    close(out, [5 / 3, 4 / 3])
    close(w, [1 / 3, 1 / 3, 1 / 3, 0, 0])
    # Krum is Multi-Krum with m = 1
    k_out, k_w = agg.krum(X5, 1)
    m_out, m_w = agg.multikrum(X5, 1, 1)
    assert torch.equal(k_out, m_out) and torch.equal(k_w, m_w)


# --------------------------------------------------------------------------- BatchNorm-counter artifact


def _bn_counter_round(n_malicious: int, seed: int = 0) -> torch.Tensor:
    """10 clients, d = 50: benign = common vector + small noise, counter coordinates
    at 380 (steps); malicious identical in law but with 760 on the 2 counters
    (two forward passes per batch), i.e. an extra offset of 380 on each."""
    gen = torch.Generator().manual_seed(seed)
    common = torch.randn(50, generator=gen) * 0.1
    x = common + 0.01 * torch.randn(10, 50, generator=gen)
    x[:, :2] = 380.0
    x[:n_malicious, :2] += 380.0
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bn_counter_artifact_multikrum(seed):
    # each malicious-benign pair carries an extra 2 * 380^2 = 288,800
    x = _bn_counter_round(6, seed)
    d = agg.pairwise_sq_dists(x)
    assert 2 * 380**2 <= d[0, 9].item() < 2 * 380**2 + 1.0
    # 6 of 10 malicious: the 5 kept are all malicious
    _, w = agg.aggregate("multikrum", x, opts={"f": 1, "m": 5})
    assert set(torch.nonzero(w).flatten().tolist()) <= set(range(6))
    assert int((w > 0).sum()) == 5
    # 4 of 10 malicious: none is kept
    x = _bn_counter_round(4, seed)
    _, w = agg.aggregate("multikrum", x, opts={"f": 1, "m": 5})
    assert set(torch.nonzero(w).flatten().tolist()) <= set(range(4, 10))
    # 5 of 10: a tie up to the noise (both groups score 3 * 288,800 + noise)
    scores = agg.krum_scores(agg.pairwise_sq_dists(_bn_counter_round(5, seed)), 7)
    assert (scores.max() - scores.min()).item() < 1.0


@pytest.mark.parametrize("opts, n, pattern", [
    (agg.MultiKrumOptions(f=4, m=5), 10, r"multikrum\.f = 4 .*\[0, 3\]"),
    (agg.MultiKrumOptions(f=1, m=10), 10, r"multikrum\.m = 10 .*\[1, 9\]"),
    (agg.MultiKrumOptions(f=1, m=0), 10, r"multikrum\.m = 0"),
    (agg.MultiKrumOptions(), 2, r"at least 3 clients"),
])
def test_check_errors(opts, n, pattern):
    with pytest.raises(ConfigError, match=pattern):
        opts.check(n)
