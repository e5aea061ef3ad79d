"""Tests of ProDiGy (flcore.methods.aggregators.prodigy): hand-computed cases, the degenerate
cases, option checks, scale and sign invariance, edge cases at n = 36."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flcore.methods import aggregators as agg
from flcore.core.errors import ConfigError
from test_aggregator_common import PROP, X5, _inputs, _random_updates, close, t


def test_prodigy_hand():
    # f = 2, n = 5: S_k = {k, nearest}; Prox = distance to the 2nd nearest.
    # neighbours by distance: 0: 2(1),1(4)  1: 0(4),2(5)  2: 0(1),1(5)  3: 1(10),2(13)  4: 1(80),3(98)
    # Dis(k) = ||g_k - g_nn|| / ||g_k + g_nn|| (the 1/2 factors cancel)
    dis0, dis1, dis2 = 1 / math.sqrt(13), 2 / math.sqrt(20), 1 / math.sqrt(13)
    dis3, dis4 = math.sqrt(10 / 74), math.sqrt(80 / 200)
    dis, prox, trust = agg.prodigy_scores(X5, 2)
    close(dis, [dis0, dis1, dis2, dis3, dis4], tol=1e-12)
    close(prox, [4, 5, 5, 13, 98], tol=1e-12)
    s = [dis0 / 4, dis1 / 5, dis2 / 5, dis3 / 13, dis4 / 98]
    close(trust, s, tol=1e-12)
    # trusts ~ .0693 .0894 .0555 .0283 .0065: tau = 2nd smallest (client 3); 3 and 4 zeroed
    total = s[0] + s[1] + s[2]
    out, w = agg.aggregate("prodigy", X5, opts={"f": 2})
    close(w, [s[0] / total, s[1] / total, s[2] / total, 0, 0])
    close(out, [(s[0] + 3 * s[1] + s[2]) / total, (s[0] + s[1] + 2 * s[2]) / total])


# --------------------------------------------------------------------------- degenerate cases


def _benign(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + 2.0


def test_prodigy_identical_colluders_zeroed_ties_zero_more_than_f():
    x = torch.cat([_benign(4, 6, 0), torch.full((3, 6), 1.5)])  # 3 exact copies, f = 2
    dis, prox, trust = agg.prodigy_scores(x, 2)
    assert dis[4:].tolist() == [0.0] * 3 and trust[4:].tolist() == [0.0] * 3
    out, w = agg.aggregate("prodigy", x, opts={"f": 2})
    assert w[4:].tolist() == [0.0] * 3  # three zeroed although f = 2
    assert bool((w[:4] > 0).all())
    close(w.sum(), 1.0)
    assert torch.isfinite(out).all()


def test_prodigy_zero_updates_are_zeroed():
    # fakes sending zeros: ||mu|| = 0 and ||sigma|| = 0 -> Dis = 0, trust 0
    x = torch.cat([_benign(4, 5, 1), torch.zeros(3, 5)])
    dis, _, trust = agg.prodigy_scores(x, 2)
    assert dis[4:].tolist() == [0.0] * 3 and trust[4:].tolist() == [0.0] * 3
    _, w = agg.aggregate("prodigy", x, opts={"f": 2})
    assert w[4:].tolist() == [0.0] * 3 and not torch.isnan(w).any()


def test_prodigy_cancelling_pair_has_infinite_dissimilarity_without_nan():
    # g0 = -g1: their group mean is 0 with spread -> Dis = +inf. Prox0 = 181, Prox1 = 221
    # (distances to (10,10)); weights go to the infinite-trust clients in proportion to
    # ||sigma|| / Prox (equal sigmas): (1/181, 1/221) -> x = (221 - 181) / (221 + 181).
    x = t([[1, 0], [-1, 0], [10, 10], [10, 12], [12, 10]])
    dis, prox, trust = agg.prodigy_scores(x, 2)
    assert math.isinf(dis[0].item()) and math.isinf(dis[1].item())
    close(prox[:2], [181, 221])
    out, w = agg.aggregate("prodigy", x, opts={"f": 2})
    assert not torch.isnan(w).any() and not torch.isnan(out).any()
    close(w, [221 / 402, 181 / 402, 0, 0, 0])
    close(out, [40 / 402, 0])


def test_prodigy_all_zero_trust_falls_back_to_median():
    same = torch.tensor([0.5, -1.0, 2.0]).repeat(5, 1)
    out, w = agg.aggregate("prodigy", same)
    assert w is None and torch.equal(out, same[0])
    assert agg.prodigy_weights(same, 2) is None
    out, w = agg.aggregate("prodigy", torch.zeros(6, 4))
    assert w is None and torch.equal(out, torch.zeros(4))
    # a clique of 4 identical of 7 next to 3 others: median fallback only if all zeroed
    x = torch.cat([torch.ones(4, 3), _benign(3, 3, 5)])
    _, w = agg.aggregate("prodigy", x)
    assert w is not None and w[:4].tolist() == [0.0] * 4


def test_prodigy_needs_f_at_least_two():
    with pytest.raises(ConfigError, match=r"prodigy\.f = 1"):
        agg.ProDiGyOptions(f=1).check(10)
    with pytest.raises(ConfigError, match=r"f >= 2"):
        agg.aggregate("prodigy", _benign(10, 3, 0), opts={"f": 1})
    with pytest.raises(ValueError):
        agg.prodigy(_benign(10, 3, 0), 1)


def test_prodigy_scale_and_sign_invariance():
    x = _benign(9, 8, 4)
    out, w = agg.prodigy(x, 2)
    for c in (1e-3, 0.5, 7.0, 1e3):
        out_c, w_c = agg.prodigy(x * c, 2)
        close(out_c, out * c, tol=1e-4 * max(1.0, c))
        close(w_c, w, tol=1e-5)
    out_neg, w_neg = agg.prodigy(-x, 2)
    close(out_neg, -out)
    close(w_neg, w)


@pytest.mark.parametrize("opts, n, pattern", [
    (agg.ProDiGyOptions(f=5), 10, r"prodigy\.f = 5 .*n > 2f.*\[2, 4\]"),
    (agg.ProDiGyOptions(f=2), 4, r"prodigy\.f = 2 .*at least 5 clients"),
])
def test_check_errors(opts, n, pattern):
    with pytest.raises(ConfigError, match=pattern):
        opts.check(n)


@PROP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 12), d=st.integers(1, 10),
       c=st.floats(1e-3, 1e3), flip=st.booleans(), data=st.data())
def test_prodigy_scale_invariance_property(seed, n, d, c, flip, data):
    f = data.draw(st.integers(2, (n - 1) // 2))
    x = _random_updates(seed, n, d, 1.0)
    sign = -1.0 if flip else 1.0
    out, w = agg.prodigy(x, f)
    out_c, w_c = agg.prodigy(x * (sign * c), f)
    assert w is not None and w_c is not None
    assert not torch.isnan(w).any()
    close(w_c, w, tol=1e-4)
    close(out_c.double() / c, sign * out.double(), tol=1e-4)


def test_prodigy_edge_cases_at_36():
    base = _inputs("random", 36, 200, seed=3)
    # all equal updates: every trust 0, median fallback
    same = base[0].repeat(36, 1)
    out, w = agg.aggregate("prodigy", same, opts={"f": 6})
    assert w is None and torch.equal(out, base[0])
    # six identical fakes, f = 4 (underestimated): all six zeroed (ties zero more than f)
    x = _inputs("fakes", 36, 200, seed=3)
    dis, _, trust = agg.prodigy_scores(x, 4)
    assert dis[30:].tolist() == [0.0] * 6 and trust[30:].tolist() == [0.0] * 6
    _, w = agg.aggregate("prodigy", x, opts={"f": 4})
    assert w[30:].tolist() == [0.0] * 6 and int((w == 0).sum()) == 6 and bool((w[:30] > 0).all())
    # fakes sending zeros (first round of PoisonedFL): zero norms, Dis = 0, zeroed, no NaN
    x = _inputs("zero_fakes", 36, 200, seed=3)
    _, w = agg.aggregate("prodigy", x, opts={"f": 6})
    assert w[30:].tolist() == [0.0] * 6 and not torch.isnan(w).any()
    close(w.sum(), 1.0)
    # f = 0 and f = 1 are rejected; so is one client, and f with n <= 2f
    for f in (0, 1):
        with pytest.raises(ConfigError, match="prodigy.f"):
            agg.aggregate("prodigy", base, opts={"f": f})
        with pytest.raises(ValueError):
            agg.prodigy(base, f)
    with pytest.raises(ConfigError, match="at least 5 clients"):
        agg.aggregate("prodigy", base[:1])
    with pytest.raises(ValueError):
        agg.prodigy(base[:1], 2)
    with pytest.raises(ConfigError, match=r"\[2, 17\]"):
        agg.aggregate("prodigy", base, opts={"f": 18})
