"""LeadFL: a second, regularising step after each normal SGD step.

Zhu, Roos, Chen, "LeadFL: Client Self-Defense against Model Poisoning in
Federated Learning", ICML 2023; three variants: ``code`` (the reference code,
``chaoyitud/LeadFL``), ``paper`` (the equations as printed), ``corrected`` (the
seed report's Eq. 6).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import ClientBehaviour


LEADFL = "Zhu, Roos, Chen: LeadFL: Client Self-Defense against Model Poisoning in Federated Learning, ICML 2023"


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
