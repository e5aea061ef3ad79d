"""Coordinate-wise trimmed mean.

Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import _float_option, _n_clients, _opts, _sort_columns


def trim_count(beta: float, n: int) -> int:
    """Values trimmed from each side: ``floor(beta * n)`` as evaluated in floating point."""
    return int(math.floor(beta * n))


def trimmed_mean(updates: Tensor, beta: float) -> Tensor:
    """Coordinate-wise trimmed mean (Yin et al., ICML 2018).

    Rule: for every coordinate, sort the ``n`` values, drop the
    ``t = floor(beta * n)`` smallest and the ``t`` largest, average the rest.

    Parameters
    ----------
    updates : Tensor
        ``[n, d]`` client updates.
    beta : float
        Fraction trimmed from EACH side, ``0 <= beta < 0.5`` (so at least one
        value remains). Default 0.4: the LeadFL reference always trims 0.4
        because of a bug (the configured value never reaches the rule); at
        n = 10 that leaves the two middle values, i.e. the median.

    Returns
    -------
    Tensor
        ``[d]``. ``beta = 0`` is the mean. While at most ``t`` clients are
        adversarial, each coordinate lies within the honest clients' range.
    """
    n = updates.shape[0]
    t = trim_count(beta, n)
    if n - 2 * t < 1:
        raise ValueError(f"trimmed_mean: beta = {beta} trims every one of {n} values")
    # sorting before the (exact, order-preserving) conversion to float64 gives the same values
    values = _sort_columns(updates.detach())[t:n - t].to(torch.float64)
    return values.mean(dim=0).to(updates.dtype)


@dataclass(frozen=True)
class TrimmedMeanOptions:
    """Coordinate-wise trimmed mean. ``beta``: fraction trimmed from each side,
    in [0, 0.5); default 0.4, the value the reference always uses."""

    beta: float = 0.4
    # oracle: trim exactly the round's number of fake clients from each side
    # (the knowledge PoisonedFL's official trimmed mean is given); beta is then unused.
    oracle: bool = False

    def check(self, n: Any) -> None:
        _n_clients(n)
        if not isinstance(self.oracle, bool):
            raise ConfigError(f"trimmed_mean.oracle must be true or false, got {self.oracle!r}")
        beta = _float_option("trimmed_mean.beta", self.beta)
        if not 0 <= beta < 0.5:
            raise ConfigError(f"trimmed_mean.beta = {beta} is invalid: the fraction trimmed from "
                              f"each side must be in [0, 0.5)")


@register("aggregator", "trimmed_mean", options=TrimmedMeanOptions, paper="Yin et al., ICML 2018")
def _trimmed_mean(updates: Tensor, weights: Tensor, opts: TrimmedMeanOptions,
                  state: dict) -> tuple[Tensor, Tensor | None]:
    """Coordinate-wise trimmed mean (:func:`trimmed_mean`)."""
    opts = _opts(opts, TrimmedMeanOptions, updates.shape[0])
    if opts.oracle:
        n, t = updates.shape[0], int(state.get("n_fake", 0))
        return trimmed_mean(updates, (t + 0.5) / n if 2 * t < n else 0.0), None
    return trimmed_mean(updates, opts.beta), None
