"""Krum: the single update with the lowest Krum score, and the Krum scores and ranking
that Multi-Krum, the reference code's "Bulyan" and Bulyan build on.

Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries:
Byzantine Tolerant Gradient Descent", NeurIPS 2017.

The ranking comes from the Gram distances and falls back to direct differences
when their error bound cannot decide (:func:`krum_select`); ties are broken by
(score, sum of squared distances to all others, client index), see
:mod:`flcore.methods.aggregators`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import _UNIT, Distances, _int_option, _n_clients, _opts, _separated, gram_sq_dists


def _check_krum_f(key: str, rule: str, f: Any, n: int) -> int:
    f = _int_option(key, f)
    if f < 0 or not n > 2 * f + 2:
        if n < 3:
            raise ConfigError(f"{key} = {f} is invalid: {rule} needs n > 2f + 2, "
                              f"so at least 3 clients per aggregation (got n = {n})")
        raise ConfigError(f"{key} = {f} is invalid for n = {n} clients per aggregation: "
                          f"{rule} needs n > 2f + 2, so f must be in [0, {(n - 3) // 2}]")
    return f


def krum_scores(dists: Tensor, nearest: int) -> Tensor:
    """Krum score of every client: sum of squared distances to its ``nearest`` closest others.

    Parameters
    ----------
    dists : Tensor
        ``[n, n]`` squared distances (see :func:`pairwise_sq_dists`).
    nearest : int
        How many of the other ``n - 1`` clients enter each score (0 gives all zeros).

    Returns
    -------
    Tensor
        ``[n]`` float64 scores; lower is more central.
    """
    n = dists.shape[0]
    if not 0 <= nearest <= n - 1:
        raise ValueError(f"nearest must be in [0, {n - 1}], got {nearest}")
    others = dists.to(torch.float64).clone()
    others.fill_diagonal_(float("inf"))
    return torch.sort(others, dim=1).values[:, :nearest].sum(dim=1)


def krum_order(dists: Tensor, nearest: int) -> list[int]:
    """Clients from most to least central by Krum score.

    Ties are broken by the sum of squared distances to all others, then by
    client index (see the module docstring).
    """
    scores = krum_scores(dists, nearest).tolist()
    totals = dists.to(torch.float64).sum(dim=1).tolist()
    return sorted(range(len(scores)), key=lambda i: (scores[i], totals[i], i))


def _krum_score_err(dist: Distances, nearest: int) -> tuple[Tensor, Tensor]:
    """Scores and a bound on their deviation from the scores of the direct distances.

    A sum of the ``nearest`` smallest entries of a row moves by at most
    ``nearest`` times the largest change of an entry; the summation itself
    rounds by at most ``n u`` relative.
    """
    n = dist.sq.shape[0]
    scores = krum_scores(dist.sq, nearest)
    err = nearest * dist.err.max(dim=1).values + 4 * n * _UNIT * scores
    return scores, err


def _krum_ranking(dist: Distances, nearest: int, cuts: tuple[int, ...]) -> tuple[list[int], bool]:
    """:func:`krum_order` on ``dist`` and whether its splits at the positions ``cuts`` are
    the splits the direct distances give (always True for those)."""
    order = krum_order(dist.sq, nearest)
    if dist.exact:
        return order, True
    scores, err = _krum_score_err(dist, nearest)
    ok = all(_separated(order[:p], order[p:], scores, err, dist.rep) for p in cuts)
    return order, ok


def krum_select(updates: Tensor, nearest: int, start: int, stop: int) -> list[int]:
    """Clients at positions ``start .. stop - 1`` (0-based) of the Krum ranking.

    The ranking comes from the Gram distances (:func:`gram_sq_dists`); if their
    error bounds cannot guarantee that the direct differences
    (:func:`pairwise_sq_dists_direct`) select the same clients (a near tie at
    ``start`` or ``stop``), it is recomputed from the direct differences. The
    selection is therefore always the one of the direct differences.
    """
    order, ok = _krum_ranking(gram_sq_dists(updates), nearest, (start, stop))
    if not ok:
        order, _ = _krum_ranking(Distances.direct(updates), nearest, ())
    return order[start:stop]


def krum(updates: Tensor, f: int) -> tuple[Tensor, Tensor]:
    """Krum: the single update with the lowest Krum score (Multi-Krum with ``m = 1``).

    Blanchard et al., NeurIPS 2017. score(i) = sum of squared distances to the
    ``n - f - 2`` nearest other updates; requires ``n > 2f + 2``. The LeadFL
    reference uses the 5 nearest at n = 10, i.e. f = 3.
    """
    from .multikrum import multikrum  # multikrum imports this module: import it when called

    return multikrum(updates, f, 1)


@dataclass(frozen=True)
class KrumOptions:
    """Krum. ``f``: assumed Byzantine count; the score sums the ``n - f - 2``
    nearest. Default 3 = the reference's 5 nearest at n = 10."""

    f: int = 3

    def check(self, n: Any) -> None:
        _check_krum_f("krum.f", "Krum", self.f, _n_clients(n))


@register("aggregator", "krum", options=KrumOptions, paper="Blanchard et al., NeurIPS 2017")
def _krum(updates: Tensor, weights: Tensor, opts: KrumOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """Krum (:func:`krum`)."""
    opts = _opts(opts, KrumOptions, updates.shape[0])
    return krum(updates, opts.f)
