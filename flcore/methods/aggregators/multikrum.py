"""Multi-Krum: the uniform mean of the ``m`` updates with the lowest Krum scores.

Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries:
Byzantine Tolerant Gradient Descent", NeurIPS 2017. The scores and the ranking
are Krum's (:mod:`flcore.methods.aggregators.krum`); ``m = 1`` is Krum.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import _int_option, _n_clients, _opts, _selection_weights, weighted_sum
from .krum import _check_krum_f, krum_select


def multikrum(updates: Tensor, f: int, m: int) -> tuple[Tensor, Tensor]:
    """Multi-Krum: uniform mean of the ``m`` updates with the lowest Krum scores.

    Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with
    Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017.

    Rule: ``D_ij = ||u_i - u_j||^2``; score(i) = sum of ``D_ij`` over the
    ``n - f - 2`` clients j != i closest to i; keep the ``m`` clients of lowest
    score and average them uniformly. ``m = 1`` is Krum.

    Parameters
    ----------
    updates : Tensor
        ``[n, d]`` client updates.
    f : int
        Assumed number of Byzantine clients; requires ``n > 2f + 2``.
    m : int
        Number of updates averaged, ``1 <= m <= n - f``.

    Returns
    -------
    aggregate : Tensor
        ``[d]`` mean of the kept updates.
    effective_weights : Tensor
        ``[n]`` float32, ``1/m`` for kept clients, 0 otherwise.

    Notes
    -----
    Reference setting (LeadFL code, n = 10): 7 nearest (f = 1) and m = 5. The
    reference sums the 8 smallest entries of each client's distance list, its
    own zero distance included, i.e. the 7 nearest others, as here. The kept
    clients are those of the direct-difference distances (:func:`krum_select`).
    """
    n = updates.shape[0]
    w = _selection_weights(n, krum_select(updates, n - f - 2, 0, m), updates)
    return weighted_sum(updates, w), w.to(torch.float32)


@dataclass(frozen=True)
class MultiKrumOptions:
    """Multi-Krum. ``f``: assumed Byzantine count (score over the ``n - f - 2``
    nearest; default 1 = the reference's 7 nearest at n = 10); ``m``: updates
    averaged (default 5, the reference). ``m = 1`` is Krum."""

    f: int = 1
    m: int = 5

    def check(self, n: Any) -> None:
        n = _n_clients(n)
        f = _check_krum_f("multikrum.f", "Multi-Krum", self.f, n)
        m = _int_option("multikrum.m", self.m)
        if not 1 <= m <= n - f:
            raise ConfigError(f"multikrum.m = {m} is invalid for n = {n} clients per aggregation "
                              f"and f = {f}: m must be in [1, n - f] = [1, {n - f}]")


@register("aggregator", "multikrum", options=MultiKrumOptions, paper="Blanchard et al., NeurIPS 2017")
def _multikrum(updates: Tensor, weights: Tensor, opts: MultiKrumOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """Multi-Krum (:func:`multikrum`)."""
    opts = _opts(opts, MultiKrumOptions, updates.shape[0])
    return multikrum(updates, opts.f, opts.m)
