"""Tests of what the aggregation rules share (flcore.methods.aggregators and its common
module): the registry entries and reference defaults of every rule, the distances and their
bound, the choices every distance-based rule makes against direct differences, properties
over all rules and every rule at n = 36 against plain NumPy. Also the helpers and inputs the
per-rule test files (tests/test_aggregator_<rule>.py) import."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flcore.methods import aggregators as agg
from flcore.core.errors import ConfigError
from flcore.core.registry import REGISTRY

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


# --------------------------------------------------------------------------- option checks


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
