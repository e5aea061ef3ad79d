"""Tests of flcore.aggregators: hand-computed cases, the BatchNorm-counter
artifact, ProDiGy's degenerate cases, option checks and properties."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flcore import aggregators as agg
from flcore.errors import ConfigError
from flcore.registry import REGISTRY

RULES = ["fedavg", "krum", "multikrum", "bulyan_reference", "bulyan", "median",
         "trimmed_mean", "norm_clip", "sparsefed", "prodigy"]

# Five clients in 2-D. Squared distances (by hand):
#   d01=4  d02=1  d03=18 d04=116
#   d12=5  d13=10 d14=80
#   d23=13 d24=125
#   d34=98
X5 = torch.tensor([[1.0, 1.0], [3.0, 1.0], [1.0, 2.0], [4.0, 4.0], [11.0, -3.0]])


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def close(a, b, tol=1e-5) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                               rtol=tol, atol=tol)


# --------------------------------------------------------------------------- registry


def test_every_rule_is_registered_with_scalar_options():
    assert set(RULES) <= set(REGISTRY["aggregator"])
    for name in RULES:
        method = REGISTRY["aggregator"][name]
        assert method.paper
        if method.options is None:
            assert name == "fedavg"
            continue
        opts = method.options()
        assert dataclasses.is_dataclass(opts)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(opts, dataclasses.fields(opts)[0].name, 0)
        for f in dataclasses.fields(opts):
            assert type(getattr(opts, f.name)) in (int, float, str, bool), (name, f.name)


def test_reference_defaults():
    assert agg.KrumOptions() == agg.KrumOptions(f=3)  # 5 nearest at n = 10
    assert agg.MultiKrumOptions() == agg.MultiKrumOptions(f=1, m=5)  # 7 nearest at n = 10
    assert agg.BulyanReferenceOptions() == agg.BulyanReferenceOptions(nearest=6, rank_start=2, rank_end=4)
    assert agg.BulyanOptions().f == 1
    assert agg.MedianOptions().lower is False
    assert agg.TrimmedMeanOptions().beta == 0.4
    assert agg.ProDiGyOptions().f == 2
    sf = agg.SparseFedOptions()
    assert (sf.k_fraction, sf.clip, sf.momentum) == (0.1, 10.0, 0.9)
    for name in RULES:
        cls = REGISTRY["aggregator"][name].options
        if cls is not None:
            cls().check(10)  # the defaults work at the protocol's 10 clients per round


def test_unknown_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="valid choices"):
        agg.aggregate("krumm", X5)


# --------------------------------------------------------------------------- distances


def test_pairwise_distances_hand_and_exact_with_large_offsets():
    d = agg.pairwise_sq_dists(X5)
    expected = [[0, 4, 1, 18, 116], [4, 0, 5, 10, 80], [1, 5, 0, 13, 125],
                [18, 10, 13, 0, 98], [116, 80, 125, 98, 0]]
    assert d.dtype == torch.float64
    np.testing.assert_allclose(d.numpy(), expected, rtol=1e-14, atol=0)
    assert bool((d == d.T).all()) and bool((d.diagonal() == 0).all())
    # a large common offset must not swamp small differences
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 40)) * 1e-3
    base[:, :2] += 1e4
    x = torch.tensor(base, dtype=torch.float32)
    x64 = x.double().numpy()
    exact = ((x64[:, None, :] - x64[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(agg.pairwise_sq_dists(x).numpy(), exact, rtol=1e-12, atol=0)
    same = torch.stack([x[0], x[0], x[1]])
    assert agg.pairwise_sq_dists(same)[0, 1].item() == 0.0


# --------------------------------------------------------------------------- hand-computed cases


def test_fedavg_hand():
    # weights 1,1,2,0,4 (sum 8): x = (1+3+2+0+44)/8, y = (1+1+4+0-12)/8
    out, w = agg.aggregate("fedavg", X5, t([1, 1, 2, 0, 4]))
    close(out, [6.25, -0.75])
    close(w, [0.125, 0.125, 0.25, 0.0, 0.5])
    with pytest.raises(ValueError):
        agg.fedavg(X5, torch.zeros(5))


def test_krum_scores_hand():
    # 2 nearest others: 0:{1,4}=5  1:{4,5}=9  2:{1,5}=6  3:{10,13}=23  4:{80,98}=178
    close(agg.krum_scores(agg.pairwise_sq_dists(X5), 2), [5, 9, 6, 23, 178])


def test_krum_hand():
    # f = 1 at n = 5: n - f - 2 = 2 nearest; client 0 has the lowest score
    out, w = agg.aggregate("krum", X5, opts={"f": 1})
    close(out, [1, 1])
    close(w, [1, 0, 0, 0, 0])


def test_multikrum_hand():
    # scores 5, 9, 6, 23, 178 -> keep clients 0, 2, 1: mean ((1+1+3)/3, (1+2+1)/3)
    out, w = agg.aggregate("multikrum", X5, opts={"f": 1, "m": 3})
    close(out, [5 / 3, 4 / 3])
    close(w, [1 / 3, 1 / 3, 1 / 3, 0, 0])
    # Krum is Multi-Krum with m = 1
    k_out, k_w = agg.krum(X5, 1)
    m_out, m_w = agg.multikrum(X5, 1, 1)
    assert torch.equal(k_out, m_out) and torch.equal(k_w, m_w)


def test_bulyan_reference_hand():
    # same scores with 2 nearest; ranking 0, 2, 1, 3, 4; ranks 2..3 -> clients 2 and 1
    out, w = agg.aggregate("bulyan_reference", X5, opts={"nearest": 2, "rank_start": 2, "rank_end": 3})
    close(out, [2.0, 1.5])
    close(w, [0, 0.5, 0.5, 0, 0])


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


def test_median_hand():
    # x: 1,1,3,4,11 -> 3 ; y: -3,1,1,2,4 -> 1
    out, w = agg.aggregate("median", X5)
    close(out, [3, 1])
    assert w is None
    # even n: x 1,1,3,4 ; y 1,1,2,4 -> mean of middles (2, 1.5), lower (1, 1)
    close(agg.aggregate("median", X5[:4])[0], [2, 1.5])
    close(agg.aggregate("median", X5[:4], opts={"lower": True})[0], [1, 1])
    close(agg.coordinate_median(X5[:4], lower=True), torch.median(X5[:4], dim=0).values)


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


def test_sparsefed_hand_two_rounds():
    # u0 = (3,4,0,0) has norm 5 -> clipped to (0.6,0.8,0,0); u1 = (0,0,0.5,0) is kept.
    # g = (0.3, 0.4, 0.25, 0); k = 2 of d = 4; rho = 0.5.
    x = t([[3, 4, 0, 0], [0, 0, 0.5, 0]])
    opts = {"k_fraction": 0.5, "clip": 1.0, "momentum": 0.5}
    state: dict = {}
    # round 1: m = g, e = g, top-2 = coords 1 and 0 -> (0.3, 0.4, 0, 0); e = m = (0,0,0.25,0)
    out, w = agg.aggregate("sparsefed", x, opts=opts, state=state)
    close(out, [0.3, 0.4, 0, 0])
    assert w is None
    close(state["error"], [0, 0, 0.25, 0])
    close(state["momentum"], [0, 0, 0.25, 0])
    # round 2: m = 0.5*(0,0,0.25,0) + g = (0.3,0.4,0.375,0); e = (0.3,0.4,0.625,0)
    # top-2 = coords 2 and 1 -> (0, 0.4, 0.625, 0); e = m = (0.3, 0, 0, 0)
    out, _ = agg.aggregate("sparsefed", x, opts=opts, state=state)
    close(out, [0, 0.4, 0.625, 0])
    close(state["error"], [0.3, 0, 0, 0])
    close(state["momentum"], [0.3, 0, 0, 0])


def test_sparsefed_without_momentum_is_error_feedback():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 20, generator=gen)
    opts = agg.SparseFedOptions(k_fraction=0.25, clip=0.5, momentum=0.0)
    state: dict = {}
    err = torch.zeros(20, dtype=torch.float64)
    applied = torch.zeros(20, dtype=torch.float64)
    for _ in range(3):
        out, _ = agg.aggregate("sparsefed", x, opts=opts, state=state)
        assert int((out != 0).sum()) == 5
        err = err + agg.clip_l2(x, 0.5).mean(0)
        applied += out.double()
        # what was applied plus what is left equals everything accumulated
        close(applied + state["error"], err, tol=1e-6)
    norms = torch.linalg.vector_norm(agg.clip_l2(x * 100, 0.5), dim=1)
    close(norms, [0.5] * 5)
    assert torch.equal(agg.clip_l2(torch.zeros(2, 3), 1.0), torch.zeros(2, 3, dtype=torch.float64))


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


# --------------------------------------------------------------------------- faithful to the reference code


def _reference_ranking(x: torch.Tensor, keep_smallest: int) -> list[int]:
    """The LeadFL code's scoring: sort each client's distance list (its own 0
    included), sum the first ``keep_smallest``, order by score (stable)."""
    rows = x.double().numpy()
    scores = []
    for a in rows:
        dist = sorted(float(((a - b) ** 2).sum()) for b in rows)
        scores.append(sum(dist[:keep_smallest]))
    return sorted(range(len(rows)), key=lambda i: scores[i])


def test_defaults_match_the_reference_code_at_ten_clients():
    x = torch.randn(10, 25, generator=torch.Generator().manual_seed(7))
    _, w = agg.aggregate("multikrum", x)  # reference: 8 smallest incl. self, keep 5
    assert set(torch.nonzero(w).flatten().tolist()) == set(_reference_ranking(x, 8)[:5])
    _, w = agg.aggregate("krum", x)  # reference: 6 smallest incl. self, keep 1
    assert torch.nonzero(w).flatten().tolist() == _reference_ranking(x, 6)[:1]
    _, w = agg.aggregate("bulyan_reference", x)  # reference: 7 smallest incl. self, ranks [1:4]
    assert set(torch.nonzero(w).flatten().tolist()) == set(_reference_ranking(x, 7)[1:4])
    close(w[w > 0], [1 / 3] * 3)


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


# --------------------------------------------------------------------------- ProDiGy degenerate cases


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


# --------------------------------------------------------------------------- option checks


@pytest.mark.parametrize("opts, n, pattern", [
    (agg.KrumOptions(f=4), 10, r"krum\.f = 4 .*n = 10.*n > 2f \+ 2.*\[0, 3\]"),
    (agg.KrumOptions(f=-1), 10, r"krum\.f = -1"),
    (agg.MultiKrumOptions(f=4, m=5), 10, r"multikrum\.f = 4 .*\[0, 3\]"),
    (agg.MultiKrumOptions(f=1, m=10), 10, r"multikrum\.m = 10 .*\[1, 9\]"),
    (agg.MultiKrumOptions(f=1, m=0), 10, r"multikrum\.m = 0"),
    (agg.MultiKrumOptions(), 2, r"at least 3 clients"),
    (agg.BulyanOptions(f=2), 10, r"bulyan\.f = 2 .*n >= 4f \+ 3.*\[0, 1\]"),
    (agg.BulyanOptions(f=1), 6, r"bulyan\.f = 1 .*n = 6"),
    (agg.BulyanReferenceOptions(), 5, r"bulyan_reference\.nearest = 6 .*\[1, 4\]"),
    (agg.BulyanReferenceOptions(rank_start=3, rank_end=2), 10, r"bulyan_reference\.rank_end = 2 .*\[3, 10\]"),
    (agg.BulyanReferenceOptions(rank_start=0), 10, r"bulyan_reference\.rank_start = 0"),
    (agg.TrimmedMeanOptions(beta=0.5), 10, r"trimmed_mean\.beta = 0\.5 .*\[0, 0\.5\)"),
    (agg.TrimmedMeanOptions(beta=-0.1), 10, r"trimmed_mean\.beta = -0\.1"),
    (agg.SparseFedOptions(k_fraction=0.0), 10, r"sparsefed\.k_fraction = 0\.0 .*\(0, 1\]"),
    (agg.SparseFedOptions(clip=0.0), 10, r"sparsefed\.clip = 0\.0"),
    (agg.SparseFedOptions(momentum=1.0), 10, r"sparsefed\.momentum = 1\.0 .*\[0, 1\)"),
    (agg.ProDiGyOptions(f=5), 10, r"prodigy\.f = 5 .*n > 2f.*\[2, 4\]"),
    (agg.ProDiGyOptions(f=2), 4, r"prodigy\.f = 2 .*at least 5 clients"),
    (agg.KrumOptions(f=1.5), 10, r"krum\.f must be an integer"),
    (agg.MedianOptions(lower="yes"), 10, r"median\.lower must be true or false"),
])
def test_check_errors(opts, n, pattern):
    with pytest.raises(ConfigError, match=pattern):
        opts.check(n)


def test_check_accepts_a_configuration_object_and_adapters_check():
    class Cfg:
        clients_per_round = 10

    agg.MultiKrumOptions().check(Cfg())
    with pytest.raises(ConfigError):
        agg.KrumOptions(f=4).check(Cfg())
    with pytest.raises(ConfigError, match=r"krum\.f"):
        agg.aggregate("krum", X5)  # default f = 3 needs n >= 9


# --------------------------------------------------------------------------- properties

PROP = settings(max_examples=50, deadline=None)


def _random_updates(seed: int, n: int, d: int, scale: float) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.normal(size=(n, d)) * scale + rng.normal(size=d), dtype=torch.float32)


@PROP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(9, 13), d=st.integers(1, 12),
       scale=st.sampled_from([1e-3, 1.0, 1e2]), rule=st.sampled_from(RULES))
def test_permutation_invariance(seed, n, d, scale, rule):
    x = _random_updates(seed, n, d, scale)
    weights = torch.tensor(np.random.default_rng(seed + 1).integers(1, 600, size=n), dtype=torch.float32)
    perm = torch.tensor(np.random.default_rng(seed + 2).permutation(n))
    out, w = agg.aggregate(rule, x, weights, state={})
    out_p, w_p = agg.aggregate(rule, x[perm], weights[perm], state={})
    close(out_p, out, tol=1e-5 * scale)
    if w is None:
        assert w_p is None
    else:
        close(w_p, w[perm], tol=1e-6)
        close(w.sum(), 1.0)
        assert bool((w >= 0).all())


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


# --------------------------------------------------------------------------- oracle options and norm clipping


def test_trimmed_mean_oracle_trims_the_rounds_fakes():
    from flcore.aggregators import TrimmedMeanOptions
    from flcore.registry import get

    u = torch.tensor([[1.0], [2.0], [3.0], [4.0], [100.0], [-100.0]])
    fn = get("aggregator", "trimmed_mean").fn
    out, _ = fn(u, torch.ones(6), TrimmedMeanOptions(oracle=True), {"n_fake": 1, "n_genuine": 5})
    assert out.item() == pytest.approx((2 + 3 + 1 + 4) / 4)
    out, _ = fn(u, torch.ones(6), TrimmedMeanOptions(oracle=True), {"n_fake": 2})
    assert out.item() == pytest.approx(2.5)


def test_norm_clip_median_and_oracle():
    from flcore.aggregators import NormClipOptions
    from flcore.registry import get

    u = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0], [60.0, 80.0]])  # norms 5, 1, 2, 100
    fn = get("aggregator", "norm_clip").fn
    out, _ = fn(u, torch.ones(4), NormClipOptions("median"), {})  # median norm 3.5 (mean of 2 and 5)
    expect = (torch.tensor([3.0, 4.0]) * 0.7 + torch.tensor([0.0, 1.0]) + torch.tensor([0.0, 2.0])
              + torch.tensor([0.6, 0.8]) * 3.5) / 4
    assert torch.allclose(out, expect, atol=1e-6)
    out, _ = fn(u, torch.ones(4), NormClipOptions("oracle"), {"n_genuine": 3})  # mean genuine norm 8/3
    thr = 8 / 3
    expect = (torch.tensor([0.6, 0.8]) * thr + torch.tensor([0.0, 1.0]) + torch.tensor([0.0, 2.0])
              + torch.tensor([0.6, 0.8]) * thr) / 4
    assert torch.allclose(out, expect, atol=1e-6)
    with pytest.raises(ConfigError, match="norm_clip.threshold"):
        NormClipOptions("mean").check(4)


# --------------------------------------------------------------------------- Gram distances: the choices of direct differences

N36_D = 4000  # columns of the n = 36 inputs (the bench measures d = 139,960)


def _inputs(kind: str, n: int, d: int = N36_D, seed: int = 0) -> torch.Tensor:
    """Rounds built to stress the distances: plain random, near ties, duplicated rows,
    a large common offset, BatchNorm-counter-like coordinates, PoisonedFL-like fakes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * 0.01 + rng.normal(size=d) * 0.05
    if kind == "near_tie":
        # mirror pairs about the centre: many distances equal up to a relative 1e-13
        half = n // 2
        x[half:2 * half] = 2 * x[:half].mean(0) - x[:half]
        x[1] = x[0] + 1e-13 * rng.normal(size=d)
    elif kind == "duplicates":
        x[n - n // 6:] = x[0]          # identical copies of client 0
        x[1] = x[2]
    elif kind == "offset":
        x += 1e4                        # every coordinate shifted far from 0
    elif kind == "counters":
        x[:, :2] = 380.0                # batch counters: 380 steps, malicious ones 760
        x[: n // 2, :2] += 380.0
    elif kind == "fakes":
        fake = -8 * x[: n - n // 6].mean(0)
        x[n - n // 6:] = fake           # identical fakes, far from the genuine clients
    elif kind == "zero_fakes":
        x[n - n // 6:] = 0.0
    elif kind == "noisy_fakes":
        fake = -8 * x[: n - n // 6].mean(0)
        noise = rng.normal(size=(n // 6, d))
        x[n - n // 6:] = fake + 0.1 * np.linalg.norm(fake) * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    return torch.tensor(x, dtype=torch.float32)


KINDS = ["random", "near_tie", "duplicates", "offset", "counters", "fakes", "zero_fakes", "noisy_fakes"]


def _direct_krum(x: torch.Tensor, nearest: int, start: int, stop: int) -> list[int]:
    order, _ = agg._krum_ranking(agg.Distances.direct(x), nearest, ())
    return order[start:stop]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [36, 10])
def test_gram_distances_within_their_bound_of_direct_differences(kind, n):
    x = _inputs(kind, n)
    fast, direct = agg.gram_sq_dists(x), agg.pairwise_sq_dists_direct(x)
    assert bool((fast.sq == fast.sq.T).all()) and bool((fast.sq.diagonal() == 0).all())
    assert bool(((fast.sq - direct).abs() <= fast.err).all())
    # identical rows: exactly 0, and bit-for-bit equal distance rows
    same = direct == 0
    assert torch.equal(fast.sq == 0, same)
    for i, r in enumerate(fast.rep):
        assert torch.equal(fast.sq[i], fast.sq[r]) or r == i


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [36, 10])
def test_selection_equals_direct_difference_selection(kind, n):
    """Multi-Krum, Krum, the reference's Bulyan, Bulyan and ProDiGy choose from the
    Gram distances exactly the clients the direct-difference distances choose."""
    x = _inputs(kind, n)
    f = (n - 3) // 4 if n == 36 else 1
    nearest = n - f - 2
    m = n - f
    _, w = agg.multikrum(x, f, m)
    assert sorted(torch.nonzero(w).flatten().tolist()) == sorted(_direct_krum(x, nearest, 0, m))
    _, w = agg.krum(x, f)
    assert torch.nonzero(w).flatten().tolist() == _direct_krum(x, nearest, 0, 1)
    _, w = agg.bulyan_reference(x, 6, 2, 4)
    assert sorted(torch.nonzero(w).flatten().tolist()) == sorted(_direct_krum(x, 6, 1, 4))
    assert agg.bulyan_select(x, f) == agg._bulyan_picks(agg.Distances.direct(x), f)[0]
    for pf in ({2, 4, n // 6, (n - 1) // 2} if n == 36 else {2, 4}):
        sigma, mu, prox = agg._prodigy_terms_direct(x, pf)
        ref = agg._trust(agg._dis(sigma, mu), prox)
        ref_zero = ref <= torch.sort(ref).values[pf - 1]
        dis, prox_new, trust = agg.prodigy_scores(x, pf)
        tau = torch.sort(trust).values[pf - 1]
        assert torch.equal(trust <= tau, ref_zero), (kind, pf)
        np.testing.assert_allclose(trust.numpy(), ref.numpy(), rtol=1e-9, atol=0)
        np.testing.assert_allclose(prox_new.numpy(), prox.numpy(), rtol=1e-9, atol=0)


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


def test_sort_based_rules_equal_torch_sort_bit_for_bit():
    """Median, trimmed mean and Bulyan sort columns with NumPy; the results are the
    bits of the torch.sort formulation they replace."""
    x = _inputs("random", 36, 3000, seed=4)
    x[:, :10] = torch.round(x[:, :10] * 100)  # repeated values in some columns
    values = torch.sort(x, dim=0).values
    assert torch.equal(agg.coordinate_median(x[:35]), torch.sort(x[:35], dim=0).values[17])
    v64 = values.to(torch.float64)
    assert torch.equal(agg.coordinate_median(x), ((v64[17] + v64[18]) / 2).to(torch.float32))
    assert torch.equal(agg.coordinate_median(x, lower=True), values[17])
    t_ = agg.trim_count(0.2, 36)
    assert torch.equal(agg.trimmed_mean(x, 0.2), v64[t_:36 - t_].mean(dim=0).to(torch.float32))
    chosen = x[agg.bulyan_select(x, 6)].to(torch.float64)
    cv = torch.sort(chosen, dim=0).values
    med = (cv[11] + cv[12]) / 2
    idx = torch.sort((cv - med).abs(), dim=0, stable=True).indices[:12]
    assert torch.equal(agg.bulyan(x, 6), cv.gather(0, idx).mean(dim=0).to(torch.float32))


# --------------------------------------------------------------------------- every rule at n = 36 against plain NumPy


def _np_dists(x: np.ndarray) -> np.ndarray:
    n = len(x)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = ((x[i] - x[j]) ** 2).sum()
    return out


def _np_krum_order(dists: np.ndarray, nearest: int) -> list[int]:
    n = len(dists)
    scores = [sorted(dists[i, j] for j in range(n) if j != i)[:nearest] for i in range(n)]
    return sorted(range(n), key=lambda i: (sum(scores[i]), i))


def _np_bulyan(x: np.ndarray, f: int) -> np.ndarray:
    pool = list(range(len(x)))
    picked = []
    for _ in range(len(x) - 2 * f):
        sub = _np_dists(x[pool])
        best = pool[_np_krum_order(sub, min(max(1, len(pool) - f - 2), len(pool) - 1))[0]]
        picked.append(best)
        pool.remove(best)
    chosen = x[picked]
    beta = len(chosen) - 2 * f
    out = np.empty(x.shape[1])
    for k in range(x.shape[1]):
        col = np.sort(chosen[:, k])
        med = np.median(col)
        keep = sorted(col, key=lambda v: abs(v - med))[:beta]
        out[k] = np.mean(keep)
    return out


def _np_prodigy(x: np.ndarray, f: int) -> np.ndarray:
    n = len(x)
    dists = _np_dists(x)
    trust = np.empty(n)
    for k in range(n):
        neighbours = sorted((j for j in range(n) if j != k), key=lambda j: (dists[k, j], j))
        group = x[[k] + neighbours[:f - 1]]
        dis = np.linalg.norm(group.std(axis=0)) / np.linalg.norm(group.mean(axis=0))
        prox = sum(dists[k, j] for j in neighbours[f - 1:n - f - 1])
        trust[k] = dis / prox
    tau = np.sort(trust)[f - 1]
    s = np.where(trust <= tau, 0.0, trust)
    return s / s.sum()


@pytest.fixture(scope="module")
def round36():
    """36 clients (30 genuine around a common direction, 6 noisy fakes), d = 300."""
    x = _inputs("noisy_fakes", 36, 300, seed=11)
    return x, x.double().numpy()


def test_every_rule_at_36_against_numpy(round36):
    x, xn = round36
    n = 36
    sizes = np.arange(1, n + 1, dtype=np.float64)
    out, w = agg.aggregate("fedavg", x, torch.tensor(sizes, dtype=torch.float32))
    close(out, sizes @ xn / sizes.sum())
    dists = _np_dists(xn)
    # Multi-Krum f = 6, m = 30; Krum f = 6; the reference's Bulyan: 6 nearest, ranks 2..4
    order = _np_krum_order(dists, n - 6 - 2)
    out, w = agg.aggregate("multikrum", x, opts={"f": 6, "m": 30})
    assert sorted(torch.nonzero(w).flatten().tolist()) == sorted(order[:30])
    close(out, xn[order[:30]].mean(0))
    out, w = agg.aggregate("krum", x, opts={"f": 6})
    assert torch.nonzero(w).flatten().tolist() == order[:1]
    close(out, xn[order[0]])
    ref_order = _np_krum_order(dists, 6)
    out, w = agg.aggregate("bulyan_reference", x)
    assert sorted(torch.nonzero(w).flatten().tolist()) == sorted(ref_order[1:4])
    close(out, xn[ref_order[1:4]].mean(0))
    close(agg.aggregate("bulyan", x, opts={"f": 6})[0], _np_bulyan(xn, 6))
    close(agg.aggregate("median", x)[0], np.median(xn, axis=0))
    close(agg.aggregate("median", x, opts={"lower": True})[0], np.sort(xn, axis=0)[17])
    close(agg.aggregate("trimmed_mean", x, opts={"beta": 0.2})[0], np.sort(xn, axis=0)[7:29].mean(0))
    norms = np.linalg.norm(xn, axis=1)
    thr = np.median(norms)
    close(agg.aggregate("norm_clip", x)[0], (xn * np.minimum(1, thr / norms)[:, None]).mean(0))
    # SparseFed, one round from zero state: clip to 10 (binding for the fakes), top 10 % of |mean|
    g = (xn * np.minimum(1, 0.5 / norms)[:, None]).mean(0)
    top = np.argsort(-np.abs(g), kind="stable")[:30]
    expect = np.zeros_like(g)
    expect[top] = g[top]
    out, _ = agg.aggregate("sparsefed", x, opts={"k_fraction": 0.1, "clip": 0.5, "momentum": 0.9}, state={})
    close(out, expect)
    for f in (2, 4, 6, 8):
        out, w = agg.aggregate("prodigy", x, opts={"f": f})
        ref = _np_prodigy(xn, f)
        close(w, ref, tol=1e-6)
        assert torch.equal(w == 0, torch.tensor(ref == 0)), f
        close(out, ref @ xn)


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
