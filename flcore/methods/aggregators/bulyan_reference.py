"""What the LeadFL reference code calls Bulyan: the mean of the clients ranked
``rank_start .. rank_end`` by Krum score. NOT El Mhamdi et al.'s Bulyan.

LeadFL reference code (``chaoyitud/LeadFL``, ``fltk/strategy/aggregation/bulyan.py``),
the code of Zhu, Roos, Chen, "LeadFL: Client Self-Defense against Model Poisoning
in Federated Learning", ICML 2023. The scores and the ranking are Krum's
(:mod:`flcore.methods.aggregators.krum`); compare
:mod:`flcore.methods.aggregators.bulyan` for the published rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import _int_option, _n_clients, _opts, _selection_weights, weighted_sum
from .krum import krum_select


def bulyan_reference(updates: Tensor, nearest: int, rank_start: int, rank_end: int) -> tuple[Tensor, Tensor]:
    """What the LeadFL reference code calls Bulyan. NOT El Mhamdi et al.'s Bulyan.

    Rule (``chaoyitud/LeadFL``, ``fltk/strategy/aggregation/bulyan.py``):
    score(i) = sum of squared distances to the ``nearest`` closest other
    updates (a Krum score); rank clients by score; average uniformly the
    clients ranked ``rank_start .. rank_end`` (1-based, inclusive). The
    reference uses 6 nearest and ranks 2..4: the most central update is
    skipped, and there is no coordinate-wise trimming stage. Compare
    :func:`bulyan` for the published rule.

    Parameters
    ----------
    updates : Tensor
        ``[n, d]`` client updates.
    nearest : int
        Others entering each score, ``1 <= nearest <= n - 1`` (reference 6; the
        reference sums its 7 smallest distances, its own zero included).
    rank_start, rank_end : int
        1-based inclusive rank range averaged, ``1 <= rank_start <= rank_end <= n``
        (reference 2 and 4).

    Returns
    -------
    aggregate : Tensor
        ``[d]`` uniform mean of the chosen updates.
    effective_weights : Tensor
        ``[n]`` float32, ``1 / (rank_end - rank_start + 1)`` for the chosen clients.
    """
    n = updates.shape[0]
    w = _selection_weights(n, krum_select(updates, nearest, rank_start - 1, rank_end), updates)
    return weighted_sum(updates, w), w.to(torch.float32)


@dataclass(frozen=True)
class BulyanReferenceOptions:
    """The reference code's "Bulyan": ``nearest`` others per score (default 6),
    average the clients ranked ``rank_start`` .. ``rank_end`` (1-based,
    inclusive; default 2 .. 4, skipping the best)."""

    nearest: int = 6
    rank_start: int = 2
    rank_end: int = 4

    def check(self, n: Any) -> None:
        n = _n_clients(n)
        nearest = _int_option("bulyan_reference.nearest", self.nearest)
        start = _int_option("bulyan_reference.rank_start", self.rank_start)
        end = _int_option("bulyan_reference.rank_end", self.rank_end)
        if not 1 <= nearest <= n - 1:
            raise ConfigError(f"bulyan_reference.nearest = {nearest} is invalid for n = {n} clients "
                              f"per aggregation: it must be in [1, n - 1] = [1, {n - 1}]")
        if not 1 <= start <= n:
            raise ConfigError(f"bulyan_reference.rank_start = {start} is invalid for n = {n} clients "
                              f"per aggregation: it must be in [1, {n}]")
        if not start <= end <= n:
            raise ConfigError(f"bulyan_reference.rank_end = {end} is invalid for n = {n} clients per "
                              f"aggregation and rank_start = {start}: it must be in [{start}, {n}]")


@register("aggregator", "bulyan_reference", options=BulyanReferenceOptions,
          paper="LeadFL reference code (chaoyitud/LeadFL); not El Mhamdi et al.'s Bulyan")
def _bulyan_reference(updates: Tensor, weights: Tensor, opts: BulyanReferenceOptions,
                      state: dict) -> tuple[Tensor, Tensor | None]:
    """The reference code's "Bulyan" (:func:`bulyan_reference`)."""
    opts = _opts(opts, BulyanReferenceOptions, updates.shape[0])
    return bulyan_reference(updates, opts.nearest, opts.rank_start, opts.rank_end)
