"""Norm clipping: every update clipped to an L2 norm threshold, then the mean.

Sun, Kairouz, Suresh, McMahan, "Can You Really Backdoor Federated Learning?",
arXiv 1911.07963 (2019).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import _n_clients, _opts, clip_l2


def norm_clip_mean(updates: Tensor, threshold: float) -> Tensor:
    """Norm clipping (Sun, Kairouz, Suresh, McMahan, "Can You Really Backdoor
    Federated Learning?", 2019): clip each update to L2 norm ``threshold``, then
    average. A zero threshold gives the zero update."""
    return clip_l2(updates, threshold).mean(0).to(updates.dtype)


@dataclass(frozen=True)
class NormClipOptions:
    """Norm clipping. ``threshold``: ``median`` = the median update norm of the
    round (a realistic server); ``oracle`` = the mean norm of the genuine
    clients' updates (the knowledge PoisonedFL's official code gives the server)."""

    threshold: str = "median"

    def check(self, n: Any) -> None:
        _n_clients(n)
        if self.threshold not in ("median", "oracle"):
            raise ConfigError(f"norm_clip.threshold = {self.threshold!r} is not valid; valid choices: median, oracle")


@register("aggregator", "norm_clip", options=NormClipOptions, paper="Sun et al., arXiv 1911.07963 (2019)")
def _norm_clip(updates: Tensor, weights: Tensor, opts: NormClipOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """Norm clipping (:func:`norm_clip_mean`); the oracle reads ``state["n_genuine"]``
    (genuine updates come first in the rows)."""
    opts = _opts(opts, NormClipOptions, updates.shape[0])
    norms = torch.linalg.vector_norm(updates.detach().to(torch.float64), dim=1)
    if opts.threshold == "oracle":
        thr = float(norms[: int(state.get("n_genuine", updates.shape[0]))].mean())
    else:
        thr = float(torch.quantile(norms, 0.5))
    return norm_clip_mean(updates, thr), None
