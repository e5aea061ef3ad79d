"""FedAvg: the data-size weighted mean of the client updates.

McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient
Learning of Deep Networks from Decentralized Data", AISTATS 2017. Not robust;
the baseline of every other rule.
"""
from __future__ import annotations

import torch
from torch import Tensor

from flcore.core.registry import register

from .common import weighted_sum


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


@register("aggregator", "fedavg", paper="McMahan et al., AISTATS 2017")
def _fedavg(updates: Tensor, weights: Tensor, opts: None, state: dict) -> tuple[Tensor, Tensor | None]:
    """FedAvg: data-size weighted mean (:func:`fedavg`)."""
    return fedavg(updates, weights)
