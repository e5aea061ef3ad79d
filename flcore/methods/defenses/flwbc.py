"""FL-WBC: Laplace noise on the "weight" entries, kept only where consecutive gradients barely change.

Sun et al., "FL-WBC: Enhancing Robustness against Model Poisoning Attacks in
Federated Learning from a Client Perspective", NeurIPS 2021.
"""
from __future__ import annotations

import torch
from torch import Tensor

from flcore.core.registry import register

from .common import ClientBehaviour, NoiseOptions, add_at, laplace_from_uniform


FLWBC = "Sun et al.: FL-WBC: Enhancing Robustness against Model Poisoning Attacks in FL from a Client Perspective, NeurIPS 2021"


def flwbc_mask(xi: Tensor, g: Tensor, g_prev: Tensor) -> Tensor:
    """FL-WBC: keep the noise only where consecutive gradients change by at most
    |xi| (|g_b - g_{b-1}| <= |xi|); elsewhere it is zeroed."""
    return torch.where((g - g_prev).abs() > xi.abs(), torch.zeros_like(xi), xi)


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
