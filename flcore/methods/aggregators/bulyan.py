"""Bulyan: iterated Krum selects ``n - 2f`` updates, then a coordinate-wise trimmed mean
around their median.

El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed Learning
in Byzantium", ICML 2018. The Krum steps are those of
:mod:`flcore.methods.aggregators.krum`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import (Distances, _int_option, _n_clients, _opts, _sort_columns, _sorted_median,
                     _stable_argsort_columns, gram_sq_dists)
from .krum import _krum_ranking


def bulyan_select(updates: Tensor, f: int) -> list[int]:
    """Bulyan's first stage: ``theta = n - 2f`` clients picked one by one with Krum.

    At each step Krum runs on the clients not yet picked (``r`` of them),
    scoring over the ``max(1, r - f - 2)`` nearest, and its choice is removed
    from the pool. The last steps have ``r <= 2f + 2``, below Krum's own
    requirement; the floor of one neighbour keeps the score meaningful there
    (with zero neighbours every score would be 0). Returned in pick order.
    """
    n = updates.shape[0]
    if f < 0 or n < 4 * f + 3:
        raise ValueError(f"Bulyan needs f >= 0 and n >= 4f + 3, got f = {f}, n = {n}")
    picked, ok = _bulyan_picks(gram_sq_dists(updates), f)
    if not ok:
        picked, _ = _bulyan_picks(Distances.direct(updates), f)
    return picked


def _bulyan_picks(dist: Distances, f: int) -> tuple[list[int], bool]:
    """Iterated Krum on ``dist``; and whether every pick is the one of the direct distances."""
    n = dist.sq.shape[0]
    pool = list(range(n))
    picked: list[int] = []
    for _ in range(n - 2 * f):
        idx = torch.tensor(pool, device=dist.sq.device)
        sub = Distances(dist.sq[idx][:, idx], dist.err[idx][:, idx], [dist.rep[i] for i in pool], dist.exact)
        nearest = min(max(1, len(pool) - f - 2), len(pool) - 1)
        order, ok = _krum_ranking(sub, nearest, (1,))
        if not ok:
            return picked, False
        best = pool[order[0]]
        picked.append(best)
        pool.remove(best)
    return picked, True


def bulyan(updates: Tensor, f: int) -> Tensor:
    """Bulyan (El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of
    Distributed Learning in Byzantium", ICML 2018).

    Rule: (1) select ``theta = n - 2f`` updates by iterated Krum
    (:func:`bulyan_select`); (2) coordinate-wise, among the ``theta`` selected
    values keep the ``beta = theta - 2f`` closest to their median and average
    them.

    Parameters
    ----------
    updates : Tensor
        ``[n, d]`` client updates.
    f : int
        Assumed Byzantine count, ``0 <= f`` and ``n >= 4f + 3`` (default 1).

    Returns
    -------
    Tensor
        ``[d]`` aggregate. Not a weighted combination of whole updates (the
        adapter reports no effective weights).

    Notes
    -----
    The median of an even number of values is the mean of the two middle
    ones, which are then both kept (``beta`` is even whenever ``theta`` is).
    Values equally close to the median are taken smaller-first. ``f = 0``
    gives the plain mean.
    """
    chosen = updates.detach()[bulyan_select(updates, f)].to(torch.float64)
    theta = chosen.shape[0]
    beta = theta - 2 * f
    values = _sort_columns(chosen)
    med = _sorted_median(values, lower=False)
    closeness = (values - med).abs()
    # stable sort on sorted values: equal closeness -> smaller value first
    idx = _stable_argsort_columns(closeness)[:beta]
    return values.gather(0, idx).mean(dim=0).to(updates.dtype)


@dataclass(frozen=True)
class BulyanOptions:
    """El Mhamdi et al.'s Bulyan. ``f``: assumed Byzantine count (default 1);
    requires ``n >= 4f + 3``."""

    f: int = 1

    def check(self, n: Any) -> None:
        n = _n_clients(n)
        f = _int_option("bulyan.f", self.f)
        if f < 0 or n < 4 * f + 3:
            if n < 3:
                raise ConfigError(f"bulyan.f = {f} is invalid: Bulyan needs n >= 4f + 3, "
                                  f"so at least 3 clients per aggregation (got n = {n})")
            raise ConfigError(f"bulyan.f = {f} is invalid for n = {n} clients per aggregation: "
                              f"Bulyan needs n >= 4f + 3, so f must be in [0, {(n - 3) // 4}]")


@register("aggregator", "bulyan", options=BulyanOptions, paper="El Mhamdi, Guerraoui, Rouault, ICML 2018")
def _bulyan(updates: Tensor, weights: Tensor, opts: BulyanOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """Bulyan (:func:`bulyan`)."""
    opts = _opts(opts, BulyanOptions, updates.shape[0])
    return bulyan(updates, opts.f), None
