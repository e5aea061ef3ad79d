"""The maths of each client defense and of the backdoor attack, function by function
(``flcore.methods.defenses``, ``flcore.methods.attacks``), on rows ``[C, P]`` in float64 against the
definition each docstring states: autograd of the regulariser, a brute-force minimum, the
inverse CDF."""
from __future__ import annotations

import math

import pytest
import torch

from flcore.methods import attacks, defenses

SEGMENTS = [(0, 5), (5, 4), (12, 8)]  # entries 9..11 lie in no segment


def rows(c=3, p=20, seed=0):
    return torch.randn(c, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reg(d: torch.Tensor, segments) -> torch.Tensor:
    """sum over segments of ||d_t||_F, per row."""
    return sum(torch.linalg.vector_norm(d[:, o:o + n], dim=1) for o, n in segments)


def test_segment_unit_is_the_gradient_of_the_sum_of_segment_norms():
    d = rows().requires_grad_(True)
    (g,) = torch.autograd.grad(reg(d, SEGMENTS).sum(), d)
    got = defenses.segment_unit(d.detach(), SEGMENTS)
    assert torch.allclose(got, g, atol=1e-12, rtol=0)
    assert (got[:, 9:12] == 0).all()
    z = rows()
    z[1, 5:9] = 0  # a zero segment has the subgradient 0, not NaN
    out = defenses.segment_unit(z, SEGMENTS)
    assert torch.isfinite(out).all() and (out[1, 5:9] == 0).all()


def test_leadfl_code_gradient_is_autograd_of_its_regulariser():
    w, wp, gp = rows(seed=1), rows(seed=2), rows(seed=3)
    lr, alpha = 0.01, 0.4
    wt = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((alpha * reg(wt - wp - gp - lr, SEGMENTS)).sum(), wt)
    got = defenses.leadfl_code_regulariser_grad(w, wp, gp, lr, alpha, SEGMENTS)
    assert torch.allclose(got, g, atol=1e-12, rtol=0)


@pytest.mark.parametrize("variant", ["paper", "corrected"])
def test_leadfl_paper_and_corrected_directions_are_autograd_of_their_objectives(variant):
    w_i, w_tilde, dw = rows(seed=4), rows(seed=5), rows(seed=6)
    wt = w_tilde.clone().requires_grad_(True)
    d = 1 - (wt - w_i - dw) if variant == "paper" else 1 - (w_i - wt + dw)
    (g,) = torch.autograd.grad(reg(d, SEGMENTS).sum(), wt)
    fn = defenses.leadfl_paper_direction if variant == "paper" else defenses.leadfl_corrected_direction
    assert torch.allclose(fn(w_i, w_tilde, dw, SEGMENTS), g, atol=1e-12, rtol=0)


def test_laplace_from_uniform_is_the_inverse_cdf_and_the_sampler_uses_it():
    s = 0.2
    u = torch.tensor([0.5, 0.75, 0.25, 0.9], dtype=torch.float64)
    want = torch.tensor([0.0, s * math.log(2), -s * math.log(2), s * math.log(5)], dtype=torch.float64)
    assert torch.allclose(defenses.laplace_from_uniform(u, s), want, atol=1e-15, rtol=0)
    assert torch.isfinite(defenses.laplace_from_uniform(torch.zeros(3), s)).all()  # rand() == 0
    a = defenses.laplace((1000,), s, torch.Generator().manual_seed(5), "cpu")
    b = defenses.laplace_from_uniform(torch.rand(1000, generator=torch.Generator().manual_seed(5)), s)
    assert torch.equal(a, b)
    big = defenses.laplace((200_000,), s, torch.Generator().manual_seed(1), "cpu")
    assert abs(float(big.abs().mean()) - s) < 0.005  # E|X| = s


def test_laplace_noise_comes_from_the_clients_cpu_generator_on_any_device():
    out = defenses.laplace((7, 3), 0.5, torch.Generator().manual_seed(1), torch.device("meta"))
    assert out.device.type == "meta" and out.shape == (7, 3)


def test_flwbc_mask_keeps_noise_only_where_gradients_change_little():
    xi = torch.tensor([[0.5, -0.5, 0.125, 0.25, 0.25]])
    g = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0]])
    g_prev = torch.tensor([[0.75, 0.375, 1.0, 1.25, 1.5]])   # changes 0.25, 0.625, 0, 0.25 (= |xi|), 0.5
    assert defenses.flwbc_mask(xi, g, g_prev).tolist() == [[0.5, 0.0, 0.125, 0.25, 0.0]]


def test_add_at_adds_scaled_values_at_the_index_of_every_row():
    w = torch.zeros(2, 5, dtype=torch.float64)
    idx = torch.tensor([0, 3])
    defenses.add_at(w, idx, torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64), 0.5)
    assert w.tolist() == [[0.5, 0, 0, 1.0, 0], [1.5, 0, 0, 2.0, 0]]


def test_min_norm_weight_is_the_minimum_norm_point_of_the_segment():
    a, b = rows(4, 30, seed=7), rows(4, 30, seed=8)
    c = attacks.min_norm_weight(a, b)
    grid = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    for i in range(4):
        norms = torch.linalg.vector_norm(grid[:, None] * a[i] + (1 - grid[:, None]) * b[i], dim=1)
        best = float(grid[norms.argmin()])
        if 0.001 < best < 0.999:
            assert abs(float(c[i]) - best) < 2e-5
    # the library's edge values: c = 0.999 when a.b >= a.a, c = 0.001 when a.b >= b.b
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert attacks.min_norm_weight(x, 3 * x).tolist() == [0.999]
    assert attacks.min_norm_weight(3 * x, x).tolist() == [0.001]


def test_row_dot_of_one_row_and_of_many():
    a, b = rows(1, 50, seed=9), rows(1, 50, seed=10)
    assert attacks.row_dot(a, b).tolist() == [float(a[0] @ b[0])]
    a, b = rows(3, 50, seed=9), rows(3, 50, seed=10)
    assert torch.allclose(attacks.row_dot(a, b), (a * b).sum(1), atol=1e-12, rtol=0)


def test_mgda_normalisers():
    loss = torch.tensor([0.5, 20.0], dtype=torch.float32)
    g = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float32)
    assert torch.allclose(attacks.mgda_normaliser(loss, g, "loss"),
                          torch.tensor([0.5 + 1e-5, 10 + 1e-5], dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.allclose(attacks.mgda_normaliser(loss, g, "loss+"),
                          torch.tensor([2.5 + 1e-5, 10 + 1e-5], dtype=torch.float64), atol=1e-12, rtol=0)


def test_mgda_combine_is_the_convex_combination():
    gb, gc = rows(2, 10, seed=11), rows(2, 10, seed=12)
    c = torch.tensor([0.25, 0.9], dtype=torch.float64)
    want = c[:, None] * gb + (1 - c[:, None]) * gc
    assert torch.allclose(attacks.mgda_combine(gb, gc, c), want, atol=1e-15, rtol=0)


def test_trigger_is_nine_pixels_of_every_channel():
    x = torch.zeros(2, 3, 32, 32)
    values = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    out = attacks.apply_trigger(x, values)
    changed = (out != x).any(1)
    assert int(changed[0].sum()) == 9 and torch.equal(changed[0], changed[1])
    assert float(out[0, 0, 3, 23]) == 1.0 and float(out[0, 0, 3, 24]) == -1.0 and (x == 0).all()
