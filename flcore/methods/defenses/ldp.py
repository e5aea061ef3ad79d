"""LDP: Laplace noise added to the "weight" entries after each SGD step.

Local differential privacy noise, as in the LeadFL reference code
(``chaoyitud/LeadFL``; Zhu, Roos, Chen, ICML 2023); no clipping.
"""
from __future__ import annotations

from torch import Tensor

from flcore.core.registry import register

from .common import ClientBehaviour, NoiseOptions, add_at, laplace_from_uniform


@register("client_defense", "ldp", options=NoiseOptions, paper="local differential privacy noise, as in the LeadFL reference code")
class LDP(ClientBehaviour):
    """After each SGD step: W += lr * xi on "weight" entries, xi ~ Laplace(0, s); no clipping."""

    def step(self, b: int, x: Tensor, y: Tensor) -> None:
        super().step(b, x, y)
        r = self.r
        if b > 0:
            xi = laplace_from_uniform(r.uniform(r.weight_index.numel()), self.opts.scale)
            add_at(r.W, r.weight_index, xi, r.lr)
