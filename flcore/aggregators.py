"""Server aggregation rules over a ``[n_clients x d]`` tensor of client updates.

Every client sends a model delta (local model minus global model); the server
adds the rule's output to the global model with server learning rate 1. Each
rule is written twice:

* a small **pure function** (tensor in, tensor out) holding the maths, with a
  NumPy docstring that cites the paper, states the rule, its parameters, the
  reference defaults and the degenerate cases;
* a thin **registered adapter** ``fn(updates, weights, opts, state)`` returning
  ``(aggregate [d], effective_weights [n] or None)``. ``effective_weights`` is
  the per-client weight when the rule is a weighted combination of the client
  updates (FedAvg, the Krum family, ProDiGy), else ``None`` (coordinate-wise
  rules, SparseFed). The engine logs which clients were kept from it.

=====================  ==================================  ==========================================
name                   rule                                paper
=====================  ==================================  ==========================================
``fedavg``             data-size weighted mean             McMahan et al., AISTATS 2017
``krum``               Krum (one update)                   Blanchard et al., NeurIPS 2017
``multikrum``          Multi-Krum (mean of m updates)      Blanchard et al., NeurIPS 2017
``bulyan_reference``   the LeadFL code's "Bulyan"          LeadFL reference code (not El Mhamdi et al.)
``bulyan``             Bulyan                              El Mhamdi, Guerraoui, Rouault, ICML 2018
``median``             coordinate-wise median              Yin et al., ICML 2018
``trimmed_mean``       coordinate-wise trimmed mean        Yin et al., ICML 2018
``norm_clip``          L2 norm clipping, then the mean     Sun et al., arXiv 1911.07963 (2019)
``sparsefed``          clipping + global top-k + feedback  Panda et al., AISTATS 2022
``prodigy``            proximity/dissimilarity trust       Ergisi, Massny, Bitar, FLTA 2025
=====================  ==================================  ==========================================

Options are frozen dataclasses of JSON scalars with the reference defaults; their
``check(n)`` raises :class:`~flcore.errors.ConfigError` naming the option, its
value and the valid range when the options cannot work with ``n`` clients per
aggregation.

Distances. Pairwise squared distances come from a float64 Gram matrix of the
centred updates (:func:`gram_sq_dists`, one matrix product: about 20 ms at
n = 36, d = 139,960 on one CPU thread), with a rigorous bound on their
deviation from direct differences (:func:`pairwise_sq_dists_direct`, the
former method, about ten times slower). Centring makes them exact enough for
updates that carry large constant offsets (the BatchNorm batch counters of the
LeadFL reference, see ``leadfl-protocol`` §5), and identical rows get distance
exactly 0. Every rule that chooses clients from distances (Krum, Multi-Krum,
both Bulyans, ProDiGy) checks with the bound that the direct differences make
the same choice, and recomputes from direct differences when a near tie leaves
it undecided: the clients chosen are always those of the direct differences.
Coordinate-wise sorts run in NumPy on the CPU (the same values as
``torch.sort``, several times faster along the first dimension).

Ties. Krum-style rankings order clients by (score, sum of squared distances to
all others, client index). The reference code breaks ties by client index
alone; both orders agree unless two *different* updates have exactly equal
scores, and the second key keeps the result independent of the clients' order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flcore.errors import ConfigError
from flcore.registry import get, register

__all__ = [
    "KrumOptions", "MultiKrumOptions", "BulyanReferenceOptions", "BulyanOptions",
    "MedianOptions", "TrimmedMeanOptions", "SparseFedOptions", "ProDiGyOptions",
    "NormClipOptions", "Distances", "pairwise_sq_dists", "pairwise_sq_dists_direct", "gram_sq_dists",
    "weighted_sum", "fedavg", "krum_scores", "krum_order", "krum_select", "multikrum", "krum", "bulyan_reference", "bulyan_select", "bulyan",
    "coordinate_median", "trimmed_mean", "trim_count", "clip_l2", "sparsefed_step",
    "norm_clip_mean", "prodigy_scores", "prodigy_weights", "prodigy", "aggregate",
]


# --------------------------------------------------------------------------- option checks


def _n_clients(n: Any) -> int:
    """Clients per aggregation, from an int or from a configuration object."""
    if isinstance(n, int) and not isinstance(n, bool):
        return n
    for attr in ("clients_per_aggregation", "clients_per_round"):
        value = getattr(n, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise TypeError(f"check() needs the number of clients per aggregation, got {n!r}")


def _int_option(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return value


def _float_option(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _check_krum_f(key: str, rule: str, f: Any, n: int) -> int:
    f = _int_option(key, f)
    if f < 0 or not n > 2 * f + 2:
        if n < 3:
            raise ConfigError(f"{key} = {f} is invalid: {rule} needs n > 2f + 2, "
                              f"so at least 3 clients per aggregation (got n = {n})")
        raise ConfigError(f"{key} = {f} is invalid for n = {n} clients per aggregation: "
                          f"{rule} needs n > 2f + 2, so f must be in [0, {(n - 3) // 2}]")
    return f


# --------------------------------------------------------------------------- shared helpers

_UNIT = 2.0 ** -53  # unit roundoff of float64


def pairwise_sq_dists_direct(updates: Tensor) -> Tensor:
    """Squared Euclidean distances between all pairs of rows from direct differences, in float64.

    ``torch.cdist`` in its no-matrix-product mode (float64, then squared): every
    ``||u_i - u_j||^2`` is summed from the coordinate differences, exact to a
    few float64 ulps relative to the distance itself; identical rows give
    exactly 0. Cost O(n^2 d) without a matrix product (about 0.2 s at n = 36,
    d = 139,960 on one CPU thread). The reference for :func:`pairwise_sq_dists`
    and what the rules fall back to when the faster distances cannot decide.
    """
    x = updates.detach().to(torch.float64)
    dists = torch.cdist(x, x, p=2.0, compute_mode="donot_use_mm_for_euclid_dist").square()
    dists = (dists + dists.T) / 2
    dists.fill_diagonal_(0.0)
    return dists


@dataclass
class Distances:
    """Pairwise squared distances of a round's updates, with what decides whether they can be trusted.

    Fields
    ------
    sq : Tensor
        ``[n, n]`` float64, symmetric, zero diagonal.
    err : Tensor
        ``[n, n]`` float64 bound on ``|sq - direct|`` where ``direct`` is
        :func:`pairwise_sq_dists_direct` (zero for the direct distances themselves
        and for identical rows).
    rep : list[int]
        ``rep[i]``: the smallest index of a row bit-for-bit identical to row ``i``.
    exact : bool
        True for the direct distances (the reference), False for the Gram ones.
    x, c, xc, gram : Tensor or None
        float64 updates, their mean row, the centred updates and their Gram
        matrix (Gram distances only; ProDiGy reads them).
    """

    sq: Tensor
    err: Tensor
    rep: list[int]
    exact: bool
    x: Tensor | None = None
    c: Tensor | None = None
    xc: Tensor | None = None
    gram: Tensor | None = None

    @classmethod
    def direct(cls, updates: Tensor) -> "Distances":
        """The reference distances (:func:`pairwise_sq_dists_direct`)."""
        sq = pairwise_sq_dists_direct(updates)
        return cls(sq, torch.zeros_like(sq), _identical_rows(sq), exact=True)


def _identical_rows(sq: Tensor) -> list[int]:
    """``rep[i]`` = the smallest j with a zero distance to i (zero only between identical rows)."""
    n = sq.shape[0]
    rep = list(range(n))
    zero = (sq == 0).tolist()
    for i in range(n):
        rep[i] = zero[i].index(True)
    return rep


def gram_sq_dists(updates: Tensor) -> Distances:
    """Pairwise squared distances from a float64 Gram matrix of centred updates.

    ``c`` = the mean row; ``X_c = X - c``; ``G = X_c X_c^T``;
    ``D_ij = G_ii + G_jj - 2 G_ij``. Distances do not depend on ``c``, and
    centring removes what the updates share (large common offsets such as
    BatchNorm batch counters), so the cancellation in ``D_ij`` is only
    relative to the spread of the updates. One matrix product: about 20 ms at
    n = 36, d = 139,960 on one CPU thread, against about 200 ms for direct
    differences.

    Error bound. With ``u = 2^-53`` and the centred norms ``r_i = ||X_c,i||``,
    every ``|D_ij - direct_ij| <= 4 (d + 10) u ((r_i + r_j)^2 + D_ij)``, which
    covers the rounding of the centring, of the product (at most ``d u`` per
    entry relative to ``r_i r_j``, whatever the summation order) and of the
    direct differences themselves. Pairs whose distance is not above its bound
    (identical or nearly identical rows) are recomputed from direct
    differences, so identical rows have distance exactly 0; the distance rows
    of identical updates are then made bit-for-bit equal (as they are with
    direct differences), so that rankings break their ties the same way.
    """
    x = updates.detach().to(torch.float64)
    n, d = x.shape
    c = x.mean(dim=0)
    xc = x - c
    gram = xc @ xc.T
    diag = gram.diagonal()
    sq = diag[:, None] + diag[None, :] - 2 * gram
    sq = ((sq + sq.T) / 2).clamp_(min=0.0)
    sq.fill_diagonal_(0.0)
    r = diag.clamp(min=0.0).sqrt()
    k = 4.0 * (d + 10) * _UNIT
    err = k * ((r[:, None] + r[None, :]).square() + sq)
    err.fill_diagonal_(0.0)
    # pairs the bound cannot tell from 0: direct differences
    ii, jj = torch.triu_indices(n, n, 1, device=x.device)
    near = sq[ii, jj] <= err[ii, jj]
    ii, jj = ii[near], jj[near]
    for s in range(0, len(ii), 32):
        a, b = ii[s:s + 32], jj[s:s + 32]
        v = (x[a] - x[b]).square().sum(dim=1)
        sq[a, b], sq[b, a] = v, v
        err[a, b], err[b, a] = k * v, k * v
    rep = _identical_rows(sq)
    for i, r_i in enumerate(rep):
        if r_i != i:  # identical to an earlier row: copy its distances (D[i, r_i] = 0 keeps the zeros)
            sq[i] = sq[r_i]
            sq[:, i] = sq[:, r_i]
            err[i] = err[r_i]
            err[:, i] = err[:, r_i]
    return Distances(sq, err, rep, exact=False, x=x, c=c, xc=xc, gram=gram)


def pairwise_sq_dists(updates: Tensor) -> Tensor:
    """Squared Euclidean distances between all pairs of rows, in float64.

    Parameters
    ----------
    updates : Tensor
        ``[n, d]`` client updates.

    Returns
    -------
    Tensor
        ``[n, n]`` float64, symmetric, zero diagonal; ``D[i, j] = ||u_i - u_j||^2``.

    Notes
    -----
    From the Gram matrix of the centred updates (:func:`gram_sq_dists`): within
    ``4 (d + 10) 2^-53 ((r_i + r_j)^2 + D_ij)`` of the direct differences
    (:func:`pairwise_sq_dists_direct`), with ``r_i`` the distance of update i to
    the mean update; identical rows give exactly 0, and a large common offset
    does not cost precision. The rules use the bound to check that every
    choice they make is the one the direct differences give.
    """
    return gram_sq_dists(updates).sq


def _separated(left: list[int], right: list[int], key: Tensor, key_err: Tensor, rep: list[int]) -> bool:
    """True when every ``left`` client's key is below every ``right`` client's by more than
    both error bounds, identical updates excepted (their keys are equal in every
    computation and their order is the same)."""
    if not left or not right:
        return True
    lt = torch.tensor(left, device=key.device)
    rt = torch.tensor(right, device=key.device)
    reps = torch.tensor(rep, device=key.device)
    below = (key[lt] + key_err[lt])[:, None] < (key[rt] - key_err[rt])[None, :]
    same = reps[lt][:, None] == reps[rt][None, :]
    return bool((below | same).all())


def weighted_sum(updates: Tensor, w: Tensor) -> Tensor:
    """``sum_i w_i u_i`` accumulated in float64, returned in the updates' dtype."""
    out = w.to(torch.float64) @ updates.detach().to(torch.float64)
    return out.to(updates.dtype)


def _selection_weights(n: int, chosen: list[int], like: Tensor) -> Tensor:
    w = torch.zeros(n, dtype=torch.float64, device=like.device)
    w[chosen] = 1.0 / len(chosen)
    return w


def _stable_argsort_columns(values: Tensor) -> Tensor:
    """Indices that sort every column ascending, equal values in their original order
    (NumPy's stable sort on the CPU; the same indices as ``torch.sort(stable=True)``)."""
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.argsort(values.numpy(), axis=0, kind="stable"))
    return torch.sort(values, dim=0, stable=True).indices


def _sort_columns(values: Tensor) -> Tensor:
    """Every column sorted ascending. On the CPU by NumPy (about ten times faster than
    ``torch.sort`` along the first dimension of a ``[36, 139960]`` tensor; the
    same values)."""
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.sort(values.numpy(), axis=0))
    return torch.sort(values, dim=0).values


# --------------------------------------------------------------------------- FedAvg


def fedavg(updates: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Federated averaging: mean of the updates weighted by client data size.

    McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient
    Learning of Deep Networks from Decentralized Data", AISTATS 2017.

    Parameters
    ----------
    updates : Tensor
        ``[n, d]`` client updates.
    weights : Tensor
        ``[n]`` non-negative client data sizes ``n_i``.

    Returns
    -------
    aggregate : Tensor
        ``sum_i n_i u_i / sum_i n_i``, shape ``[d]``.
    effective_weights : Tensor
        ``[n]`` float32, ``n_i / sum_j n_j``.

    Notes
    -----
    Not robust: one client can move the aggregate anywhere. Negative sizes or a
    zero total raise ``ValueError`` (there is no meaningful average then).
    """
    w = weights.detach().to(device=updates.device, dtype=torch.float64).reshape(-1)
    if w.shape[0] != updates.shape[0]:
        raise ValueError(f"fedavg: {w.shape[0]} weights for {updates.shape[0]} updates")
    if bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError("fedavg: client weights must be non-negative with a positive sum")
    w = w / w.sum()
    return weighted_sum(updates, w), w.to(torch.float32)


# --------------------------------------------------------------------------- Krum family


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


def krum(updates: Tensor, f: int) -> tuple[Tensor, Tensor]:
    """Krum: the single update with the lowest Krum score (Multi-Krum with ``m = 1``).

    Blanchard et al., NeurIPS 2017. score(i) = sum of squared distances to the
    ``n - f - 2`` nearest other updates; requires ``n > 2f + 2``. The LeadFL
    reference uses the 5 nearest at n = 10, i.e. f = 3.
    """
    return multikrum(updates, f, 1)


@dataclass(frozen=True)
class KrumOptions:
    """Krum. ``f``: assumed Byzantine count; the score sums the ``n - f - 2``
    nearest. Default 3 = the reference's 5 nearest at n = 10."""

    f: int = 3

    def check(self, n: Any) -> None:
        _check_krum_f("krum.f", "Krum", self.f, _n_clients(n))


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


# --------------------------------------------------------------------------- Bulyan (reference code)


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


# --------------------------------------------------------------------------- Bulyan (El Mhamdi et al.)


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


# --------------------------------------------------------------------------- coordinate-wise rules


def _sorted_median(values: Tensor, lower: bool) -> Tensor:
    n = values.shape[0]
    if n % 2 == 1 or lower:
        return values[(n - 1) // 2]
    return (values[n // 2 - 1] + values[n // 2]) / 2


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
class MedianOptions:
    """Coordinate-wise median. ``lower``: for even n take the lower middle value
    (the reference's ``torch.median``) instead of the mean of the two (default)."""

    lower: bool = False

    def check(self, n: Any) -> None:
        _n_clients(n)
        if not isinstance(self.lower, bool):
            raise ConfigError(f"median.lower must be true or false, got {self.lower!r}")


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


# --------------------------------------------------------------------------- SparseFed


def clip_l2(updates: Tensor, clip: float) -> Tensor:
    """Scale each row to L2 norm at most ``clip``: ``u * min(1, clip / ||u||)`` (float64).

    A zero row stays zero.
    """
    x = updates.detach().to(torch.float64)
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    scale = torch.clamp(clip / torch.clamp(norms, min=torch.finfo(torch.float64).tiny), max=1.0)
    return x * scale


def sparsefed_step(updates: Tensor, error: Tensor, momentum_buf: Tensor, *, k: int, clip: float,
                   rho: float) -> tuple[Tensor, Tensor, Tensor]:
    """One SparseFed server step (Panda, Mahloujifar, Bhagoji, Chakraborty, Mittal,
    "SparseFed: Mitigating Model Poisoning Attacks in Federated Learning with
    Sparsification", AISTATS 2022).

    Rule, with server momentum ``m`` and error accumulator ``e`` kept across rounds:

    1. clip every client update to L2 norm ``clip``; ``g = mean`` of the clipped updates;
    2. ``m <- rho * m + g``;  ``e <- e + m``  (server learning rate 1);
    3. ``Delta = top_k(e)``: the ``k`` coordinates of largest ``|e|``, others 0;
    4. ``e`` and ``m`` are zeroed on those ``k`` coordinates;
    5. the server applies ``Delta``.

    Parameters
    ----------
    updates : Tensor
        ``[n, d]`` client updates.
    error, momentum_buf : Tensor
        ``[d]`` accumulator and momentum from the previous round (zeros at the start).
    k : int
        Coordinates extracted per round, ``1 <= k <= d``.
    clip : float
        Per-client L2 bound, ``> 0``.
    rho : float
        Server momentum in ``[0, 1)``; ``rho = 0`` is plain error feedback
        (``e <- e + g``).

    Returns
    -------
    delta : Tensor
        ``[d]`` aggregate in the updates' dtype, non-zero on at most ``k`` coordinates.
    error, momentum_buf : Tensor
        New float64 states (the inputs are not modified).

    Notes
    -----
    Equal magnitudes at the k-th place are resolved by ``torch.topk``.
    """
    g = clip_l2(updates, clip).mean(dim=0)
    mom = rho * momentum_buf.to(torch.float64) + g
    err = error.to(torch.float64) + mom
    idx = torch.topk(err.abs(), k).indices
    delta = torch.zeros_like(err)
    delta[idx] = err[idx]
    err = err.clone()
    err[idx] = 0.0
    mom = mom.clone()
    mom[idx] = 0.0
    return delta.to(updates.dtype), err, mom


@dataclass(frozen=True)
class SparseFedOptions:
    """SparseFed (Panda et al., AISTATS 2022): per-client L2 clipping, server
    momentum and error accumulation, global top-k extraction.

    Fields
    ------
    k_fraction : float
        Share of the ``d`` coordinates extracted per round,
        ``k = max(1, floor(k_fraction * d))``; in (0, 1]. Default 0.1.
    clip : float
        Per-client L2 clipping bound, > 0. Default 10.0.
    momentum : float
        Server momentum ``rho`` in [0, 1). Default 0.9.

    Assumptions
    -----------
    The LeadFL paper reports SparseFed in its tables but gives none of its
    parameters, and neither LeadFL repository contains it; these defaults are
    ours, not the paper's. The rule is our reading of the SparseFed algorithm:
    the server-side momentum and error accumulation of FetchSGD (on which
    SparseFed's code is built) with exact ("true") top-k instead of a sketch,
    so momentum and accumulator are both zeroed on the extracted coordinates
    ("momentum stopping"). Whether the paper's Algorithm 1 zeroes the momentum
    too, and which momentum it uses, is to be confirmed against the paper;
    ``momentum = 0`` gives plain error-feedback top-k, the variant without
    that question. ``momentum = 0.9`` is the usual server momentum of that
    family. ``k_fraction = 0.1`` keeps 10% of the coordinates each round.
    ``clip = 10.0`` is meant to be loose (binding on boosted updates rather
    than ordinary ones); check it against the update norms of the actual runs.
    Integer buffers (BatchNorm batch counters, whose deltas are in the
    hundreds) would dominate the norm: aggregate trainable parameters only
    with SparseFed, or expect the clipping to act on the counters.
    """

    k_fraction: float = 0.1
    clip: float = 10.0
    momentum: float = 0.9

    def check(self, n: Any) -> None:
        _n_clients(n)
        kf = _float_option("sparsefed.k_fraction", self.k_fraction)
        clip = _float_option("sparsefed.clip", self.clip)
        rho = _float_option("sparsefed.momentum", self.momentum)
        if not 0 < kf <= 1:
            raise ConfigError(f"sparsefed.k_fraction = {kf} is invalid: the share of coordinates "
                              f"extracted per round must be in (0, 1]")
        if not clip > 0:
            raise ConfigError(f"sparsefed.clip = {clip} is invalid: the L2 clipping bound must be > 0")
        if not 0 <= rho < 1:
            raise ConfigError(f"sparsefed.momentum = {rho} is invalid: the server momentum must be in [0, 1)")

    def k(self, d: int) -> int:
        """Coordinates extracted per round for ``d`` coordinates."""
        return max(1, min(d, int(math.floor(self.k_fraction * d))))


# --------------------------------------------------------------------------- ProDiGy


def _check_prodigy_f(n: int, f: int) -> None:
    if f < 2 or not n > 2 * f:
        raise ValueError(f"ProDiGy needs f >= 2 and n > 2f, got f = {f}, n = {n}")


def _prodigy_groups(sq: Tensor, f: int) -> tuple[Any, Tensor, Tensor]:
    """Each client's neighbours by increasing distance (stable: ties by index), ``Prox(k)``
    and the ``[n, n]`` 0/1 membership matrix of the groups ``S_k``."""
    n = sq.shape[0]
    others = sq.clone()
    others.fill_diagonal_(float("inf"))
    ranked = torch.sort(others, dim=1, stable=True)
    # proximity: neighbours ranked f .. n-f-1 (1-based) -> positions f-1 .. n-f-2
    prox = ranked.values[:, f - 1:n - f - 1].sum(dim=1)
    # S_k = {k} + its f-1 nearest
    group = torch.cat([torch.arange(n, device=sq.device)[:, None], ranked.indices[:, :f - 1]], dim=1)
    member = torch.zeros((n, n), dtype=torch.float64, device=sq.device)
    member.scatter_(1, group, 1.0)
    return ranked, prox, member


def _group_pair_sums(member: Tensor, sq: Tensor) -> Tensor:
    """``sum_{i<j in S_k} D_ij`` for every k (the sum over i, j counts each pair twice)."""
    return ((member @ sq) * member).sum(dim=1) / 2


def _prodigy_terms_direct(updates: Tensor, f: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(||sigma_k||, ||mu_k||, Prox(k))`` from direct differences, float64 (the reference).

    ``||sigma_k||^2 = (1/f^2) sum_{i<j in S_k} D_ij`` (population std), ``mu_k``
    summed from the updates.
    """
    _check_prodigy_f(updates.shape[0], f)
    x = updates.detach().to(torch.float64)
    dists = pairwise_sq_dists_direct(updates)
    _, prox, member = _prodigy_groups(dists, f)
    sigma = torch.sqrt(torch.clamp(_group_pair_sums(member, dists), min=0.0)) / f
    mu = torch.linalg.vector_norm(member @ x, dim=1) / f
    return sigma, mu, prox


def _prodigy_terms_gram(dist: Distances, f: int) -> tuple[Tensor, Tensor, Tensor, bool]:
    """``(||sigma_k||, ||mu_k||, Prox(k), certified)`` from the Gram distances.

    ``||mu_k||^2 = ||c||^2 + (2/f) sum_{i in S_k} c.xc_i + (1/f^2) sum_{i,j in S_k} G_ij``
    (``mu_k = c + mean of the centred updates of S_k``), so nothing of size
    ``[n, d]`` is formed beyond the Gram matrix. ``certified`` is True when the
    error bounds of :func:`gram_sq_dists` guarantee that the direct differences
    give the same groups ``S_k``, the same zeroed clients and no zero
    ``||mu_k||`` (see :func:`_prodigy_certified`); the values then differ from
    :func:`_prodigy_terms_direct` by rounding only.
    """
    sq, err, n = dist.sq, dist.err, dist.sq.shape[0]
    d = dist.x.shape[1]
    ranked, prox, member = _prodigy_groups(sq, f)
    # the groups: the f-1 nearest of every client are the direct distances' f-1 nearest
    vals, idx = ranked.values[:, :n - 1], ranked.indices[:, :n - 1]
    errs = err.gather(1, idx)
    reps = torch.tensor(dist.rep, device=sq.device)[idx]
    apart = (vals + errs)[:, :f - 1, None] < (vals - errs)[:, None, f - 1:]
    same = reps[:, :f - 1, None] == reps[:, None, f - 1:]
    groups_ok = bool((apart | same).all())

    pair_sums = _group_pair_sums(member, sq)
    sigma = torch.sqrt(torch.clamp(pair_sums, min=0.0)) / f
    p = dist.xc @ dist.c
    cc = dist.c @ dist.c
    # sum_{i,j in S_k} G_ij is twice the pair sum of G (diagonal included)
    mu2 = cc + (2.0 / f) * (member @ p) + _group_pair_sums(member, dist.gram) * (2.0 / f ** 2)
    mu = torch.sqrt(torch.clamp(mu2, min=0.0))
    if not groups_ok:
        return sigma, mu, prox, False

    bounds = {
        "pair_sums": pair_sums,
        "pair_err": _group_pair_sums(member, err) + 4 * f * f * _UNIT * pair_sums,
        "mu2": mu2,
        "mu2_err": 16.0 * (d + n + 10) * _UNIT
        * (torch.sqrt(cc) + member @ dist.gram.diagonal().clamp(min=0.0).sqrt() / f).square(),
        "prox_err": (n - 2 * f) * err.max(dim=1).values + 4 * n * _UNIT * prox,
    }
    return sigma, mu, prox, _prodigy_certified(sigma, mu, prox, bounds, dist.rep, f)


def _prodigy_certified(sigma: Tensor, mu: Tensor, prox: Tensor, bounds: dict, rep: list[int], f: int) -> bool:
    """True when the trusts' error intervals guarantee the direct differences' choice.

    From the bounds on the group pair sums, ``||mu_k||^2`` and ``Prox(k)``, every
    trust gets an interval that contains the trust of the direct differences.
    Certified when (1) no ``||mu_k||`` can be 0 unless ``||sigma_k||`` is exactly 0
    (a zero mean with spread is the infinite-trust case), (2) the clients at the
    threshold ``tau`` are identical updates or exact (their trusts are equal in
    both computations), and (3) the intervals of the zeroed clients lie below those
    of the kept ones, and those strictly below ``tau`` below the ones at ``tau``.
    """
    f2 = float(f * f)
    ps, pe = bounds["pair_sums"], bounds["pair_err"]
    mu2, me = bounds["mu2"], bounds["mu2_err"]
    exact_sigma = (ps == 0) & (pe == 0)  # identical members: sigma is 0 in both computations
    mu2_lo, mu2_hi = torch.clamp(mu2 - me, min=0.0), mu2 + me
    if bool((~exact_sigma & (mu2_lo == 0)).any()):
        return False
    safe_lo = torch.where(mu2_lo > 0, mu2_lo, torch.ones_like(mu2_lo))
    dis_lo = torch.where(exact_sigma, torch.zeros_like(ps), torch.sqrt(torch.clamp(ps - pe, min=0.0) / f2 / mu2_hi))
    dis_hi = torch.where(exact_sigma, torch.zeros_like(ps), torch.sqrt((ps + pe) / f2 / safe_lo))
    prox_lo, prox_hi = prox - bounds["prox_err"], prox + bounds["prox_err"]
    maybe_zero = prox_lo <= 0  # Prox may be 0 for the direct distances: trust 0 there
    exact_zero = (prox == 0) & (bounds["prox_err"] == 0)
    inf = torch.full_like(prox, float("inf"))
    t_lo = torch.where(maybe_zero, torch.zeros_like(prox), dis_lo / torch.where(maybe_zero, inf, prox_hi))
    t_hi = torch.where(maybe_zero, inf, dis_hi / torch.where(maybe_zero, inf, prox_lo))
    t_hi = torch.where(exact_zero, torch.zeros_like(prox), t_hi)
    exact = (t_lo == t_hi)
    t_lo, t_hi = t_lo * (1 - 64 * _UNIT), t_hi * (1 + 64 * _UNIT)  # rounding of the ratios themselves

    trust = _trust(_dis(sigma, mu), prox)
    tau = torch.sort(trust).values[f - 1]
    zeroed, at_tau = trust <= tau, trust == tau
    at = torch.nonzero(at_tau).flatten().tolist()
    if len({rep[k] for k in at}) > 1 and not bool(exact[at_tau].all()):
        return False
    below = zeroed & ~at_tau
    if bool(below.any()) and not float(t_hi[below].max()) < float(t_lo[at_tau].min()):
        return False
    kept = ~zeroed
    return not bool(kept.any()) or float(t_hi[zeroed].max()) < float(t_lo[kept].min())


def _prodigy_terms(updates: Tensor, f: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(||sigma_k||, ||mu_k||, Prox(k))`` for every client, float64.

    From the Gram distances when their bounds certify the direct differences'
    choices (:func:`_prodigy_terms_gram`), else from direct differences
    (:func:`_prodigy_terms_direct`).
    """
    _check_prodigy_f(updates.shape[0], f)
    sigma, mu, prox, certified = _prodigy_terms_gram(gram_sq_dists(updates), f)
    if certified:
        return sigma, mu, prox
    return _prodigy_terms_direct(updates, f)


def _dis(sigma: Tensor, mu: Tensor) -> Tensor:
    zero_mu = mu == 0
    safe = torch.where(zero_mu, torch.ones_like(mu), mu)
    dis = sigma / safe
    dis = torch.where(zero_mu & (sigma > 0), torch.full_like(dis, float("inf")), dis)
    return torch.where(zero_mu & (sigma == 0), torch.zeros_like(dis), dis)


def _trust(dis: Tensor, prox: Tensor) -> Tensor:
    safe = torch.where(prox > 0, prox, torch.ones_like(prox))
    return torch.where(prox > 0, dis / safe, torch.zeros_like(dis))


def prodigy_scores(updates: Tensor, f: int) -> tuple[Tensor, Tensor, Tensor]:
    """ProDiGy's per-client dissimilarity, proximity and trust (float64).

    Ergisi, Massny, Bitar, "ProDiGy: Proximity- and Dissimilarity-Based
    Byzantine-Robust Federated Learning", FLTA 2025 (arXiv 2509.09534).

    With ``D_kj = ||g_k - g_j||^2`` and ``pi_k`` the other clients by
    increasing ``D_kj``:

    * ``S_k = {k} + pi_k(1 .. f-1)``; ``mu_k`` its mean, ``sigma_k`` its
      per-coordinate population std; ``Dis(k) = ||sigma_k|| / ||mu_k||``
      (near 0 for a clique of near-identical colluders);
    * ``Prox(k) = sum_{r=f}^{n-f-1} D_{k, pi_k(r)}`` (skip the f-1 nearest, add the next n-2f);
    * ``trust(k) = Dis(k) / Prox(k)``.

    Parameters
    ----------
    updates : Tensor
        ``[n, d]`` client updates.
    f : int
        Assumed Byzantine count, ``f >= 2`` and ``n > 2f``.

    Returns
    -------
    dis, prox, trust : Tensor
        ``[n]`` float64 each.

    Notes
    -----
    Degenerate cases (never NaN):

    * ``||mu_k|| = 0`` and ``||sigma_k|| = 0`` (the group is all-zero
      updates, e.g. fake clients that send nothing): ``Dis = 0``, the group is
      as similar as it can be.
    * ``||mu_k|| = 0`` and ``||sigma_k|| > 0`` (the group cancels out, e.g.
      ``g`` and ``-g``): ``Dis = +inf``, the limit of the ratio, and
      ``trust = +inf`` (see :func:`prodigy_weights` for how it is weighted).
    * ``Prox(k) = 0`` (k equals all the neighbours it is compared with; then
      its f-1 nearest equal it too and ``Dis`` is 0): ``trust = 0``.

    Computed from the Gram distances when their error bounds guarantee the
    groups, the zeroed clients and the degenerate cases of the direct
    differences (then the values differ from those of direct differences by
    rounding, a relative 1e-12 or less), else from direct differences.
    """
    sigma, mu, prox = _prodigy_terms(updates, f)
    dis = _dis(sigma, mu)
    return dis, prox, _trust(dis, prox)


def prodigy_weights(updates: Tensor, f: int) -> Tensor | None:
    """ProDiGy's normalised client weights, or ``None`` when every trust is zeroed.

    Rule: ``tau`` = f-th smallest trust; every trust ``<= tau`` is set to 0
    (ties included, so more than f clients may be zeroed); weights =
    trusts / their sum.

    Degenerate cases: if some surviving trusts are infinite (a zero group mean
    with non-zero spread), the weight goes to those clients only, in
    proportion to ``||sigma_k|| / Prox(k)`` — the limit of the weighted mean
    when their zero ``||mu_k||`` are replaced by a common ``eps -> 0``. If
    the thresholded trusts sum to 0 (e.g. all clients identical, or tau is
    infinite), returns ``None``: the caller falls back to the coordinate-wise
    median (:func:`prodigy`).
    """
    sigma, mu, prox = _prodigy_terms(updates, f)
    trust = _trust(_dis(sigma, mu), prox)
    tau = torch.sort(trust).values[f - 1]
    s = torch.where(trust <= tau, torch.zeros_like(trust), trust)
    infinite = torch.isinf(s)
    if bool(infinite.any()):
        s = torch.where(infinite, sigma / torch.where(prox > 0, prox, torch.ones_like(prox)),
                        torch.zeros_like(s))
    total = s.sum()
    if not float(total) > 0:
        return None
    return s / total


def prodigy(updates: Tensor, f: int) -> tuple[Tensor, Tensor | None]:
    """ProDiGy aggregate: ``sum_k s_k g_k / sum_k s_k`` with the thresholded trusts.

    See :func:`prodigy_scores` and :func:`prodigy_weights`. Invariant to a
    common rescaling ``c > 0`` of all updates (Dis is scale-free, Prox scales
    by ``c^2`` for everyone) and to a global sign flip.

    Returns
    -------
    aggregate : Tensor
        ``[d]``. When all thresholded trusts are zero, the coordinate-wise median
        (mean of the two middle values for even n) instead.
    effective_weights : Tensor or None
        ``[n]`` float32 normalised weights; ``None`` on the median fallback.
    """
    w = prodigy_weights(updates, f)
    if w is None:
        return coordinate_median(updates), None
    return weighted_sum(updates, w), w.to(torch.float32)


@dataclass(frozen=True)
class ProDiGyOptions:
    """ProDiGy. ``f``: assumed Byzantine count (default 2); needs f >= 2 and n > 2f."""

    f: int = 2

    def check(self, n: Any) -> None:
        n = _n_clients(n)
        f = _int_option("prodigy.f", self.f)
        if f < 2 or not n > 2 * f:
            hi = (n - 1) // 2
            valid = f"[2, {hi}]" if hi >= 2 else "empty: ProDiGy needs at least 5 clients per aggregation"
            raise ConfigError(f"prodigy.f = {f} is invalid for n = {n} clients per aggregation: "
                              f"ProDiGy needs f >= 2 and n > 2f, so f must be in {valid}")


# --------------------------------------------------------------------------- registered adapters


def _opts(opts, cls, n: int):
    opts = cls() if opts is None else opts
    opts.check(n)
    return opts


@register("aggregator", "fedavg", paper="McMahan et al., AISTATS 2017")
def _fedavg(updates: Tensor, weights: Tensor, opts: None, state: dict) -> tuple[Tensor, Tensor | None]:
    """FedAvg: data-size weighted mean (:func:`fedavg`)."""
    return fedavg(updates, weights)


@register("aggregator", "krum", options=KrumOptions, paper="Blanchard et al., NeurIPS 2017")
def _krum(updates: Tensor, weights: Tensor, opts: KrumOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """Krum (:func:`krum`)."""
    opts = _opts(opts, KrumOptions, updates.shape[0])
    return krum(updates, opts.f)


@register("aggregator", "multikrum", options=MultiKrumOptions, paper="Blanchard et al., NeurIPS 2017")
def _multikrum(updates: Tensor, weights: Tensor, opts: MultiKrumOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """Multi-Krum (:func:`multikrum`)."""
    opts = _opts(opts, MultiKrumOptions, updates.shape[0])
    return multikrum(updates, opts.f, opts.m)


@register("aggregator", "bulyan_reference", options=BulyanReferenceOptions,
          paper="LeadFL reference code (chaoyitud/LeadFL); not El Mhamdi et al.'s Bulyan")
def _bulyan_reference(updates: Tensor, weights: Tensor, opts: BulyanReferenceOptions,
                      state: dict) -> tuple[Tensor, Tensor | None]:
    """The reference code's "Bulyan" (:func:`bulyan_reference`)."""
    opts = _opts(opts, BulyanReferenceOptions, updates.shape[0])
    return bulyan_reference(updates, opts.nearest, opts.rank_start, opts.rank_end)


@register("aggregator", "bulyan", options=BulyanOptions, paper="El Mhamdi, Guerraoui, Rouault, ICML 2018")
def _bulyan(updates: Tensor, weights: Tensor, opts: BulyanOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """Bulyan (:func:`bulyan`)."""
    opts = _opts(opts, BulyanOptions, updates.shape[0])
    return bulyan(updates, opts.f), None


@register("aggregator", "median", options=MedianOptions, paper="Yin et al., ICML 2018")
def _median(updates: Tensor, weights: Tensor, opts: MedianOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """Coordinate-wise median (:func:`coordinate_median`)."""
    opts = _opts(opts, MedianOptions, updates.shape[0])
    return coordinate_median(updates, opts.lower), None


@register("aggregator", "trimmed_mean", options=TrimmedMeanOptions, paper="Yin et al., ICML 2018")
def _trimmed_mean(updates: Tensor, weights: Tensor, opts: TrimmedMeanOptions,
                  state: dict) -> tuple[Tensor, Tensor | None]:
    """Coordinate-wise trimmed mean (:func:`trimmed_mean`)."""
    opts = _opts(opts, TrimmedMeanOptions, updates.shape[0])
    if opts.oracle:
        n, t = updates.shape[0], int(state.get("n_fake", 0))
        return trimmed_mean(updates, (t + 0.5) / n if 2 * t < n else 0.0), None
    return trimmed_mean(updates, opts.beta), None


# --------------------------------------------------------------------------- norm clipping


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


@register("aggregator", "sparsefed", options=SparseFedOptions, paper="Panda et al., AISTATS 2022")
def _sparsefed(updates: Tensor, weights: Tensor, opts: SparseFedOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """SparseFed (:func:`sparsefed_step`); keeps ``state["error"]`` and ``state["momentum"]``."""
    opts = _opts(opts, SparseFedOptions, updates.shape[0])
    d = updates.shape[1]
    zeros = torch.zeros(d, dtype=torch.float64, device=updates.device)
    error = state.get("error", zeros)
    mom = state.get("momentum", zeros)
    if error.shape != (d,) or mom.shape != (d,):
        raise ValueError(f"sparsefed: stored state has shape {tuple(error.shape)}, updates have d = {d}")
    delta, state["error"], state["momentum"] = sparsefed_step(
        updates, error.to(updates.device), mom.to(updates.device),
        k=opts.k(d), clip=opts.clip, rho=opts.momentum)
    return delta, None


@register("aggregator", "prodigy", options=ProDiGyOptions, paper="Ergisi, Massny, Bitar, FLTA 2025 (arXiv 2509.09534)")
def _prodigy(updates: Tensor, weights: Tensor, opts: ProDiGyOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """ProDiGy (:func:`prodigy`)."""
    opts = _opts(opts, ProDiGyOptions, updates.shape[0])
    return prodigy(updates, opts.f)


def aggregate(name: str, updates: Tensor, weights: Tensor | None = None, opts: Any = None,
              state: dict | None = None) -> tuple[Tensor, Tensor | None]:
    """Run the registered aggregator ``name``.

    ``weights`` defaults to equal data sizes, ``state`` to a fresh dict (pass
    the same dict every round for stateful rules), ``opts`` to the rule's
    defaults; a mapping is turned into the rule's options dataclass.
    """
    method = get("aggregator", name)
    if updates.ndim != 2:
        raise ValueError(f"updates must be [n_clients, d], got shape {tuple(updates.shape)}")
    if weights is None:
        weights = torch.ones(updates.shape[0], dtype=updates.dtype, device=updates.device)
    if isinstance(opts, dict):
        if method.options is None:
            if opts:
                raise ConfigError(f"aggregator {name!r} has no options, got {sorted(opts)}")
            opts = None
        else:
            opts = method.options(**opts)
    return method.fn(updates, weights, opts, {} if state is None else state)
