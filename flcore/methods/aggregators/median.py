"""Coordinate-wise median.

Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import _n_clients, _opts, _sort_columns, _sorted_median


def coordinate_median(updates: Tensor, lower: bool = False) -> Tensor:
    """Coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust
    Distributed Learning: Towards Optimal Statistical Rates", ICML 2018).

    Parameters
    ----------
    updates : Tensor
        ``[n, d]`` client updates.
    lower : bool
        For even ``n``: ``False`` (default, textbook) averages the two middle
        values; ``True`` takes the lower one, as ``torch.median`` does in the
        LeadFL reference code. No effect for odd ``n``.

    Returns
    -------
    Tensor
        ``[d]`` median of each coordinate. While fewer than half of the clients
        are adversarial, each coordinate lies within the honest clients' range.
    """
    values = _sort_columns(updates.detach())
    if lower or updates.shape[0] % 2 == 1:
        return _sorted_median(values, lower=True)
    return _sorted_median(values.to(torch.float64), lower=False).to(updates.dtype)


@dataclass(frozen=True)
class MedianOptions:
    """Coordinate-wise median. ``lower``: for even n take the lower middle value
    (the reference's ``torch.median``) instead of the mean of the two (default)."""

    lower: bool = False

    def check(self, n: Any) -> None:
        _n_clients(n)
        if not isinstance(self.lower, bool):
            raise ConfigError(f"median.lower must be true or false, got {self.lower!r}")


@register("aggregator", "median", options=MedianOptions, paper="Yin et al., ICML 2018")
def _median(updates: Tensor, weights: Tensor, opts: MedianOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """Coordinate-wise median (:func:`coordinate_median`)."""
    opts = _opts(opts, MedianOptions, updates.shape[0])
    return coordinate_median(updates, opts.lower), None
