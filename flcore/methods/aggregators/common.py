"""What the aggregation rules share: option checks, distances, weighted sums, column sorts.

* option checks: :func:`_n_clients` (clients per aggregation, from an int or a
  configuration), :func:`_int_option`, :func:`_float_option`, and :func:`_opts`
  (the adapters' defaults-then-check);
* distances: :func:`pairwise_sq_dists_direct` (the reference), :class:`Distances`,
  :func:`gram_sq_dists` (the fast ones, with their error bound),
  :func:`pairwise_sq_dists` and :func:`_separated` (whether a split by a key is
  certain under the bounds); see :mod:`flcore.methods.aggregators` for why;
* combinations: :func:`weighted_sum`, :func:`_selection_weights` (uniform weights
  on the chosen clients), :func:`clip_l2` (per-row L2 clipping, used by SparseFed and
  norm clipping);
* coordinate-wise sorts: :func:`_stable_argsort_columns`, :func:`_sort_columns`,
  :func:`_sorted_median` (NumPy on the CPU, the values of ``torch.sort``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flcore.core.errors import ConfigError


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


def _opts(opts, cls, n: int):
    opts = cls() if opts is None else opts
    opts.check(n)
    return opts


# --------------------------------------------------------------------------- distances


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


# --------------------------------------------------------------------------- combinations


def weighted_sum(updates: Tensor, w: Tensor) -> Tensor:
    """``sum_i w_i u_i`` accumulated in float64, returned in the updates' dtype."""
    out = w.to(torch.float64) @ updates.detach().to(torch.float64)
    return out.to(updates.dtype)


def _selection_weights(n: int, chosen: list[int], like: Tensor) -> Tensor:
    w = torch.zeros(n, dtype=torch.float64, device=like.device)
    w[chosen] = 1.0 / len(chosen)
    return w


def clip_l2(updates: Tensor, clip: float) -> Tensor:
    """Scale each row to L2 norm at most ``clip``: ``u * min(1, clip / ||u||)`` (float64).

    A zero row stays zero.
    """
    x = updates.detach().to(torch.float64)
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    scale = torch.clamp(clip / torch.clamp(norms, min=torch.finfo(torch.float64).tiny), max=1.0)
    return x * scale


# --------------------------------------------------------------------------- coordinate-wise sorts


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


def _sorted_median(values: Tensor, lower: bool) -> Tensor:
    n = values.shape[0]
    if n % 2 == 1 or lower:
        return values[(n - 1) // 2]
    return (values[n // 2 - 1] + values[n // 2]) / 2
