"""ProDiGy: client weights from proximity and dissimilarity trusts, the f lowest zeroed.

Ergisi, Massny, Bitar, "ProDiGy: Proximity- and Dissimilarity-Based
Byzantine-Robust Federated Learning", FLTA 2025 (arXiv 2509.09534). Falls back
to the coordinate-wise median (:mod:`flcore.methods.aggregators.median`) when
every thresholded trust is zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import (_UNIT, Distances, _int_option, _n_clients, _opts, gram_sq_dists, pairwise_sq_dists_direct,
                     weighted_sum)
from .median import coordinate_median


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


@register("aggregator", "prodigy", options=ProDiGyOptions, paper="Ergisi, Massny, Bitar, FLTA 2025 (arXiv 2509.09534)")
def _prodigy(updates: Tensor, weights: Tensor, opts: ProDiGyOptions, state: dict) -> tuple[Tensor, Tensor | None]:
    """ProDiGy (:func:`prodigy`)."""
    opts = _opts(opts, ProDiGyOptions, updates.shape[0])
    return prodigy(updates, opts.f)
