"""Client-side defenses, applied by benign clients only: ``none``, ``leadfl``, ``ldp``, ``flwbc``.

Each defense is written once, row-wise: it drives a stack of C client rows
(:class:`flcore.engine.Rows`; one row per client, the per-client loop is C = 1)
through the protocol every client behaviour follows, ``begin_epoch()`` at each
epoch start and ``step(b, x, y)`` for batch ``b`` (``x`` [C, batch, ...]). As in
the reference, a defense acts on every batch except the first of each epoch.
The maths is in the pure functions at the top, one per equation, each on
``[C, P]`` tensors (one row per client) and tested in ``tests/test_methods.py``.

Notation (rows of flat vectors over the trainable parameters): W_i weights
before step i, W~ = W_i - lr*v after the normal momentum-SGD step, g the
cross-entropy gradient of the batch, lr the learning rate. "weight" entries are
those of parameters whose name contains "weight" (conv and linear weights, BN
gamma). A segment ``(offset, length)`` is one parameter tensor's place in a row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from flcore.errors import ConfigError
from flcore.registry import register

LEADFL = "Zhu, Roos, Chen: LeadFL: Client Self-Defense against Model Poisoning in Federated Learning, ICML 2023"
FLWBC = "Sun et al.: FL-WBC: Enhancing Robustness against Model Poisoning Attacks in FL from a Client Perspective, NeurIPS 2021"

# ----------------------------------------------------------------------------- maths


def segment_unit(d: Tensor, segments: list[tuple[int, int]]) -> Tensor:
    """Gradient of sum_t ||d_t||_F over tensors t (flat segments of each row of ``d`` [C, P]):
    d_t / ||d_t||_F per row. A segment whose norm is zero has zero gradient (the
    subgradient 0); entries outside every segment are zero."""
    out = torch.zeros_like(d)
    for off, n in segments:
        seg = d[:, off:off + n]
        norm = torch.linalg.vector_norm(seg, dim=1, keepdim=True)
        out[:, off:off + n] = torch.where(norm > 0, seg / norm, out.new_zeros(()))
    return out


def leadfl_code_regulariser_grad(w_tilde: Tensor, w_prev: Tensor, g_prev: Tensor, lr: float, alpha: float,
                                 segments: list[tuple[int, int]]) -> Tensor:
    """What the reference computes (variant ``code``): the gradient of
    R = alpha * sum_t ||D_t||_F with D = W~ - W_prev - G_prev - lr*1, where W_prev,
    G_prev are the weights and (clipped) gradient stored at the previous batch.
    dR/dW~ = alpha * D_t / ||D_t||_F on "weight" tensors, 0 elsewhere."""
    d = w_tilde - w_prev - g_prev - lr
    return alpha * segment_unit(d, segments)


def leadfl_paper_direction(w_i: Tensor, w_tilde: Tensor, dw_i: Tensor, segments) -> Tensor:
    """Variant ``paper``: gradient w.r.t. W~ of sum_t ||1 - lr*H~||_t with the printed
    H~ = (W~ - W_i - dW_i)/lr, i.e. D = 1 - (W~ - W_i - dW_i) and dD/dW~ = -1."""
    d = 1 - (w_tilde - w_i - dw_i)
    return -segment_unit(d, segments)


def leadfl_corrected_direction(w_i: Tensor, w_tilde: Tensor, dw_i: Tensor, segments) -> Tensor:
    """Variant ``corrected`` (seed report Eq. 6): H~ = (W_i - W~ + dW_i)/lr, which
    equals g_i - g_{i-1} for plain SGD; D = 1 - (W_i - W~ + dW_i), dD/dW~ = +1."""
    d = 1 - (w_i - w_tilde + dw_i)
    return segment_unit(d, segments)


def laplace_from_uniform(u: Tensor, scale: float) -> Tensor:
    """Laplace(0, scale) samples from U(0, 1) samples ``u`` by the inverse CDF."""
    u = u - 0.5
    u = u.clamp_min(-0.5 + torch.finfo(u.dtype).eps / 2)  # rand() == 0 would give log1p(-1) = -inf
    return -scale * torch.sign(u) * torch.log1p(-2 * u.abs())


def laplace(shape, scale: float, generator: torch.Generator, device) -> Tensor:
    """Laplace(0, scale) samples by inverse CDF (so a seeded generator drives them).

    Drawn on the generator's device (a client's CPU generator) and moved to ``device``,
    so a run on a GPU adds the same noise as on the CPU."""
    u = torch.rand(shape, generator=generator, device=generator.device).to(device)
    return laplace_from_uniform(u, scale)


def add_at(w: Tensor, index: Tensor, values: Tensor, alpha: float) -> None:
    """w[:, index] += alpha * values, row by row (``w`` [C, P], ``values`` [C, len(index)]),
    in place; each row as ``index_add_`` adds into a vector (the per-client engine's numbers)."""
    for row, v in zip(w, values):
        row.index_add_(0, index, v, alpha=alpha)


def flwbc_mask(xi: Tensor, g: Tensor, g_prev: Tensor) -> Tensor:
    """FL-WBC: keep the noise only where consecutive gradients change by at most
    |xi| (|g_b - g_{b-1}| <= |xi|); elsewhere it is zeroed."""
    return torch.where((g - g_prev).abs() > xi.abs(), torch.zeros_like(xi), xi)


# ----------------------------------------------------------------------------- defenses


@dataclass(frozen=True)
class LeadFLOptions:
    """LeadFL regulariser.

    variant: ``code`` (the reference's per-step procedure), ``paper`` (the
      equations as printed), ``corrected`` (the seed report's Eq. 6).
    alpha: regularisation strength (paper: 0.4 Fashion-MNIST, 0.25 CIFAR-10;
      reference configs 0.15 on CIFAR-10); alpha = 0 with ``code`` is the
      ablation "doubled, clipped CE step alone".
    q: element-wise clipping threshold (0.2; in the reference the same knob as
      the LDP/FL-WBC noise scale).
    """

    variant: Literal["code", "paper", "corrected"] = "code"
    alpha: float = 0.4
    q: float = 0.2

    def check(self, cfg) -> None:
        if not (0 <= self.alpha <= 10):
            raise ConfigError(f"leadfl.alpha must be in [0, 10] (a regularisation strength), got {self.alpha}")
        if not (self.q > 0):
            raise ConfigError(f"leadfl.q must be a positive clipping threshold, got {self.q}")


class ClientBehaviour:
    """The protocol of every client behaviour (a client defense, or an attack's malicious
    local training): constructed once per local training with the rows ``r``
    (:class:`flcore.engine.Rows`) and the method's options; ``begin_epoch()`` at each epoch
    start; ``step(b, x, y)`` does the whole local step of batch ``b`` on every row.

    What a behaviour may use of ``r``: ``r.W`` (the rows' trainable parameters ``[C, P]``,
    changed in place), ``r.grad(x, y)`` (per-row cross-entropy losses ``[C]`` and gradients
    ``[C, P]``), ``r.sgd_step(g)`` (momentum SGD with each row's persistent buffer),
    ``r.lr``, ``r.uniform(k)`` (``[C, k]`` U(0, 1) draws, each row from its client's
    generator), ``r.weight_segments`` / ``r.param_segments`` / ``r.weight_index``."""

    def __init__(self, r, opts):
        self.r, self.opts = r, opts

    def begin_epoch(self) -> None:
        pass

    def step(self, b: int, x: Tensor, y: Tensor) -> None:
        r = self.r
        _, g = r.grad(x, y)
        r.sgd_step(g)


@register("client_defense", "none", paper="no client-side defense")
class NoDefense(ClientBehaviour):
    """Plain local momentum SGD."""

    ragged = True  # only grad and sgd_step: rows of other sample counts may share its steps


@register("client_defense", "leadfl", options=LeadFLOptions, paper=LEADFL)
class LeadFL(ClientBehaviour):
    """LeadFL's second, regularising step after each normal SGD step.

    ``code``: g <- clip(g_CE + dR/dW~, q) element-wise over all parameters, a
    second momentum-SGD step with it, then store G_prev = that clipped gradient
    and W_prev = the weights (at batch 0: the raw CE gradient and the weights
    after the normal step). ``paper``/``corrected``: W <- W~ - lr*alpha*clip(dir, q)
    with the direction of the printed or corrected Hessian estimate, over all
    trainable parameters, without momentum.
    """

    def __init__(self, r, opts: LeadFLOptions):
        super().__init__(r, opts)
        self.code = opts.variant == "code"
        self.segments = r.weight_segments if self.code else r.param_segments

    def begin_epoch(self) -> None:
        self.w_prev = self.g_prev = self.w_i = self.w_im1 = None

    def step(self, b: int, x: Tensor, y: Tensor) -> None:
        r, o = self.r, self.opts
        if not self.code:
            self.w_im1, self.w_i = self.w_i, r.W.clone()
        _, g = r.grad(x, y)
        r.sgd_step(g)
        if self.code:
            if b > 0:
                g.add_(leadfl_code_regulariser_grad(r.W, self.w_prev, self.g_prev, r.lr, o.alpha, self.segments))
                g.clamp_(-o.q, o.q)
                r.sgd_step(g)
            self.g_prev, self.w_prev = g.clone(), r.W.clone()
        elif b > 0:
            fn = leadfl_paper_direction if o.variant == "paper" else leadfl_corrected_direction
            direction = fn(self.w_i, r.W, self.w_i - self.w_im1, self.segments)
            r.W.add_(direction.clamp_(-o.q, o.q), alpha=-r.lr * o.alpha)


@dataclass(frozen=True)
class NoiseOptions:
    """Scale s of the Laplace(0, s) noise (reference pert_strength = 0.2)."""

    scale: float = 0.2

    def check(self, cfg) -> None:
        if not (self.scale >= 0):
            raise ConfigError(f"noise scale must be >= 0, got {self.scale}")


@register("client_defense", "ldp", options=NoiseOptions, paper="local differential privacy noise, as in the LeadFL reference code")
class LDP(ClientBehaviour):
    """After each SGD step: W += lr * xi on "weight" entries, xi ~ Laplace(0, s); no clipping."""

    def step(self, b: int, x: Tensor, y: Tensor) -> None:
        super().step(b, x, y)
        r = self.r
        if b > 0:
            xi = laplace_from_uniform(r.uniform(r.weight_index.numel()), self.opts.scale)
            add_at(r.W, r.weight_index, xi, r.lr)


@register("client_defense", "flwbc", options=NoiseOptions, paper=FLWBC)
class FLWBC(ClientBehaviour):
    """After each SGD step: xi ~ Laplace(0, s) on "weight" entries, zeroed where
    |g_b - g_{b-1}| > |xi| (consecutive raw CE gradients), then W += lr * xi."""

    def begin_epoch(self) -> None:
        self.g_prev = None

    def step(self, b: int, x: Tensor, y: Tensor) -> None:
        r = self.r
        _, g = r.grad(x, y)
        r.sgd_step(g)
        g = g[:, r.weight_index]
        if b > 0:
            xi = laplace_from_uniform(r.uniform(g.shape[1]), self.opts.scale)
            add_at(r.W, r.weight_index, flwbc_mask(xi, g, self.g_prev), r.lr)
        self.g_prev = g
