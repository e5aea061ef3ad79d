"""Tests of flcore.methods.poisonedfl: the pure functions on hand-worked vectors, then the driver."""
import dataclasses
import math

import pytest
import torch
from scipy.stats import binom

from flcore.core import registry
from flcore.core.errors import ConfigError
from flcore.methods.attacks import Attack
from flcore.methods.poisonedfl import (
    PoisonedFL,
    PoisonedFLAttack,
    PoisonedFLOptions,
    add_noise,
    alignment_count,
    alignment_threshold,
    decay_c,
    fakes_this_round,
    flip_signs,
    honest_estimate,
    make_poisonedfl,
    malicious_update,
    partition_blocks,
    partition_dimensions,
    scale,
    template,
)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- pure functions


def test_template_by_hand():
    # |(3, -4, 0)| = (3, 4, 0), norm 5
    assert torch.allclose(template(t(3, -4, 0)), t(0.6, 0.8, 0.0))
    # |(1, -1, 1, -1)| has norm 2
    assert torch.allclose(template(t(1, -1, 1, -1)), t(0.5, 0.5, 0.5, 0.5))
    # degenerate: u = 0 gives zeros, not NaN
    assert torch.equal(template(t(0, 0, 0)), t(0, 0, 0))


def test_scale_by_hand():
    assert scale(2.0, t(3, 4)) == pytest.approx(10.0)  # 2 * ||(3,4)|| = 2 * 5
    assert scale(8.0, t(0, 0)) == 0.0


def test_malicious_update_by_hand():
    # lambda = 10, s = (+,-,+), v = (0.6, 0.8, 0)
    assert torch.allclose(malicious_update(t(1, -1, 1), t(0.6, 0.8, 0), 10.0), t(6, -8, 0))


def test_honest_estimate_by_hand():
    # ||g|| = 5, ||m|| = 2: u = g - (5/2) m = (3, 4) - (0, 5) = (3, -1)
    assert torch.allclose(honest_estimate(t(3, 4), t(0, 2)), t(3, -1), atol=1e-6)
    # no fake vector yet: u = g
    assert torch.equal(honest_estimate(t(3, 4), t(0, 0)), t(3, 4))


@pytest.mark.parametrize("d", [29034, 139960])
def test_alignment_threshold_from_scipy(d):
    k = alignment_threshold(d)
    assert k == int(binom.ppf(0.99, d, 0.5))
    assert k > d / 2
    assert alignment_threshold(d, 0.95) == int(binom.ppf(0.95, d, 0.5))


def test_alignment_threshold_matches_reference_constant():
    # the reference code hard-codes k_99 = 70415 for its MNIST CNN (d = 139960)
    assert alignment_threshold(139960) == 70415


def test_alignment_count_with_zero_delta():
    w_then = t(1, 2, 0, -1, 0.5)
    w_now = t(2, 2, 0, -3, 0.5)
    delta = w_now - w_then  # (1, 0, 0, -2, 0)
    # signs used: (+1, sign(w_now)=+1, sign(0)=0, -1, sign(w_now)=+1)
    assert alignment_count(delta, w_now, t(1, 1, 1, 1, -1)) == 2  # coords 0, 1
    assert alignment_count(delta, w_now, t(1, 1, -1, -1, 1)) == 4  # coords 0, 1, 3, 4; coord 2 never counts


def test_decay_rule():
    assert decay_c(8.0, aligned=False) == pytest.approx(5.6)
    assert decay_c(8.0, aligned=True) == 8.0
    assert decay_c(0.6, aligned=False) == 0.6  # 0.42 < 0.5: stays
    c, seen = 8.0, [8.0]
    for _ in range(20):
        c = decay_c(c, aligned=False)
        assert c <= seen[-1]  # never grows
        seen.append(c)
    assert c == pytest.approx(8 * 0.7**7)  # 0.6588..., the last value with 0.7 c < 0.5
    assert 0.7 * c < 0.5 <= c
    assert decay_c(1.0, aligned=False, beta=0.5, floor=0.1) == 0.5


def test_noise_adaptation_norm():
    m = torch.randn(500, generator=gen(1))
    lam, gamma = 3.0, 0.5
    out = add_noise(m, lam, gamma, 7, gen(2))
    assert out.shape == (7, 500)
    dist = torch.linalg.vector_norm(out - m, dim=1)
    assert torch.allclose(dist, torch.full((7,), gamma * lam), rtol=1e-5)
    assert not torch.allclose(out[0], out[1])  # fakes differ
    assert torch.equal(add_noise(m, lam, 0.0, 3, gen(2)), m.repeat(3, 1))


def test_sign_flipping_rate_and_base_unchanged():
    s = torch.sign(torch.randn(200_000, generator=gen(3)))
    s_copy = s.clone()
    p = 0.05
    flipped = flip_signs(s, p, gen(4))
    rate = (flipped != s).float().mean().item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / s.numel())
    assert torch.equal(s, s_copy)  # base s untouched
    assert set(flipped.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(flip_signs(s, 0.0, gen(4)), s)


@pytest.mark.parametrize("mode", ["random", "contiguous"])
def test_partition_blocks_and_mean(mode):
    d, n = 103, 6
    g = gen(5) if mode == "random" else None
    blocks = partition_blocks(d, n, g, mode)
    assert len(blocks) == n
    allidx = torch.cat(blocks)
    assert allidx.numel() == d and torch.equal(allidx.sort().values, torch.arange(d))  # disjoint, cover
    assert max(b.numel() for b in blocks) - min(b.numel() for b in blocks) <= 1
    m = torch.randn(d, generator=gen(6))
    out = partition_dimensions(m, n, gen(5) if mode == "random" else None, mode)
    assert torch.allclose(out.mean(dim=0), m, atol=1e-6)
    # each fake is non-zero only on its own block, where it carries n * m
    for i, b in enumerate(blocks):
        mask = torch.zeros(d, dtype=torch.bool)
        mask[b] = True
        assert torch.all(out[i, ~mask] == 0)
        assert torch.allclose(out[i, mask], n * m[mask])


def test_partition_random_is_not_contiguous_and_fixed_per_seed():
    a = partition_blocks(1000, 4, gen(7), "random")
    b = partition_blocks(1000, 4, gen(7), "random")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0].sort().values, torch.arange(250))


def test_fakes_this_round_expectation():
    assert all(fakes_this_round(240, 0.025, gen(i)) == 6 for i in range(50))  # 240 * 2.5% = 6 exactly
    g = gen(8)
    draws = [fakes_this_round(100, 0.025, g) for _ in range(20_000)]  # expected 2.5
    assert set(draws) == {2, 3}
    assert sum(draws) / len(draws) == pytest.approx(2.5, abs=0.03)
    assert fakes_this_round(0, 0.5, g) == 0


# --------------------------------------------------------------------------- options and registry


def test_options_defaults_and_check():
    o = PoisonedFLOptions()
    o.check()
    assert (o.fake_clients, o.c0, o.beta, o.c_floor, o.window, o.confidence) == (240, 8.0, 0.7, 0.5, 50, 0.99)
    for field, value in [("beta", 1.5), ("beta", 0.0), ("window", 0), ("confidence", 1.0),
                         ("noise_gamma", -0.1), ("flip_p", 2.0), ("c0", 0.0), ("partition_mode", "rows"),
                         ("partition", 1), ("window", 2.5)]:
        with pytest.raises(ConfigError, match=f"poisonedfl.{field}"):
            dataclasses.replace(o, **{field: value}).check()


def test_registered():
    m = registry.get("attack", "poisonedfl")
    assert m.fn is PoisonedFL and issubclass(PoisonedFL, Attack) and m.options is PoisonedFLOptions
    assert "CVPR 2025" in m.paper


# --------------------------------------------------------------------------- the driver


def test_s_is_signs_and_reproducible():
    a = PoisonedFLAttack(1000, PoisonedFLOptions(), seed=11)
    b = PoisonedFLAttack(1000, PoisonedFLOptions(), seed=11)
    c = PoisonedFLAttack(1000, PoisonedFLOptions(), seed=12)
    assert set(a.s.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a.s, b.s) and not torch.equal(a.s, c.s)


def test_craft_first_round_zeros_then_consistent():
    d = 1000
    att = make_poisonedfl(d, PoisonedFLOptions(c0=8.0), seed=1, device="cpu")
    w0 = torch.randn(d, generator=gen(9))
    out0 = att.craft(0, 3, w0)
    assert out0.shape == (3, d) and torch.count_nonzero(out0) == 0
    g = 0.01 * torch.randn(d, generator=gen(10))  # no zero coordinates
    w1 = w0 + g
    att.observe(0, w1)
    out1 = att.craft(1, 3, w1)
    g_seen = w1 - w0
    # fakes sent zeros last time, so u = g and m = 8 ||g|| s ⊙ |g| / ||g|| = 8 s ⊙ |g|
    assert torch.allclose(out1[0], out1[1]) and torch.allclose(out1[0], out1[2])
    assert torch.equal(torch.sign(out1[0]), att.s)
    assert torch.linalg.vector_norm(out1[0]).item() == pytest.approx(8.0 * g_seen.norm().item(), rel=1e-5)
    assert torch.allclose(out1[0], 8.0 * att.s * g_seen.abs(), atol=1e-6)
    assert att.state_dict()["lam"] == pytest.approx(8.0 * g_seen.norm().item(), rel=1e-6)
    # next round: the honest part is estimated by removing the scaled fake vector
    m1 = out1.mean(dim=0)
    att.observe(1, w1 + 0.3 * g)
    rec = att.last_record  # the round's log record is completed by observe
    assert rec["round"] == 1 and rec["n_fakes"] == 3 and rec["c"] == 8.0 and rec["tested"] is False
    assert rec["lam"] == pytest.approx(8.0 * g_seen.norm().item(), rel=1e-6)
    out2 = att.craft(2, 3, w1 + 0.3 * g)
    g2 = (w1 + 0.3 * g) - w1
    u = g2 - g2.norm() / m1.norm() * m1
    expect = 8.0 * g2.norm() * att.s * u.abs() / u.abs().norm()
    assert torch.allclose(out2[0], expect, atol=1e-5)


def test_m_prev_kept_over_rounds_without_fakes():
    d = 50
    att = PoisonedFLAttack(d, PoisonedFLOptions(), seed=2)
    w = torch.zeros(d)
    att.craft(0, 2, w)
    w = w + 0.1
    att.observe(0, w)
    m1 = att.craft(1, 2, w).mean(dim=0)
    w = w + 0.1
    att.observe(1, w)
    assert att.craft(2, 0, w).shape == (0, d)  # no fakes: m_prev unchanged
    assert torch.equal(att.m_prev, m1)
    w = w + 0.2
    att.observe(2, w)  # g is refreshed even without fakes
    assert torch.allclose(att.g_prev, torch.full((d,), 0.2), atol=1e-6)


def _run(att, d, rounds, direction, step=0.01, n_fakes=2):
    w = torch.zeros(d)
    cs = []
    for r in range(rounds):
        att.craft(r, n_fakes, w)
        w = w + step * direction
        att.observe(r, w)
        cs.append(att.c)
    return cs


def test_c_decays_when_model_moves_against_s():
    d, W = 2000, 5
    att = PoisonedFLAttack(d, PoisonedFLOptions(window=W), seed=3)
    cs = _run(att, d, 60, -att.s)
    assert all(b <= a for a, b in zip(cs, cs[1:]))  # never grows
    # first test after round W-1: c = 8 * 0.7; it then decays at every test down to 8 * 0.7^7
    assert cs[W - 2] == 8.0 and cs[W - 1] == pytest.approx(8.0 * 0.7)
    assert att.last_record["tested"] and att.last_record["aligned"] is False
    assert cs[-1] == pytest.approx(8.0 * 0.7**7)
    assert att.state_dict()["alignment"] == 0


def test_c_kept_when_model_moves_along_s():
    d, W = 2000, 5
    att = PoisonedFLAttack(d, PoisonedFLOptions(window=W), seed=4)
    cs = _run(att, d, 30, att.s)
    assert cs == [8.0] * 30
    assert att.last_aligned is True and att.last_alignment == d
    sd = att.state_dict()
    assert sd["threshold"] == alignment_threshold(d) and sd["c"] == 8.0


def test_variants_in_craft():
    d, n = 600, 4
    w0 = torch.zeros(d)
    g = 0.01 * torch.randn(d, generator=gen(12))
    plain = PoisonedFLAttack(d, PoisonedFLOptions(), seed=5)
    noisy = PoisonedFLAttack(d, PoisonedFLOptions(noise_gamma=0.5), seed=5)
    split = PoisonedFLAttack(d, PoisonedFLOptions(partition=True), seed=5)
    flip = PoisonedFLAttack(d, PoisonedFLOptions(flip_p=0.1), seed=5)
    outs = {}
    for name, att in [("plain", plain), ("noisy", noisy), ("split", split), ("flip", flip)]:
        att.craft(0, n, w0)
        att.observe(0, w0 + g)
        outs[name] = att.craft(1, n, w0 + g)
    m = outs["plain"][0]
    lam = plain.state_dict()["lam"]
    assert torch.allclose(torch.linalg.vector_norm(outs["noisy"] - m, dim=1), torch.full((n,), 0.5 * lam), rtol=1e-4)
    assert torch.allclose(outs["split"].mean(dim=0), m, atol=1e-6)
    assert torch.count_nonzero(outs["split"] != 0, dim=0).max() == 1  # disjoint supports
    base = flip.s.clone()
    frac = (torch.sign(outs["flip"][0]) != flip.s).float().mean().item()
    assert 0.03 < frac < 0.2 and torch.equal(flip.s, base)
