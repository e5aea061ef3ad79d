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
``check(n)`` raises :class:`~flcore.core.errors.ConfigError` naming the option, its
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

Layout. One module per rule, holding the rule's pure function(s), its options
dataclass and its registered adapter: :mod:`~flcore.methods.aggregators.fedavg`,
:mod:`~flcore.methods.aggregators.krum` (with the Krum scores and ranking the
Krum family shares), :mod:`~flcore.methods.aggregators.multikrum`,
:mod:`~flcore.methods.aggregators.bulyan_reference`,
:mod:`~flcore.methods.aggregators.bulyan`, :mod:`~flcore.methods.aggregators.median`,
:mod:`~flcore.methods.aggregators.trimmed_mean`,
:mod:`~flcore.methods.aggregators.norm_clip`,
:mod:`~flcore.methods.aggregators.sparsefed`,
:mod:`~flcore.methods.aggregators.prodigy`; what they share (option checks,
distances, weighted sums, column sorts) is in
:mod:`~flcore.methods.aggregators.common`. A new rule is one new module here.
This package re-exports every rule's public names and holds :func:`aggregate`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import get

from .bulyan import BulyanOptions, bulyan, bulyan_select
from .bulyan_reference import BulyanReferenceOptions, bulyan_reference
from .common import Distances, clip_l2, gram_sq_dists, pairwise_sq_dists, pairwise_sq_dists_direct, weighted_sum
from .fedavg import fedavg
from .krum import KrumOptions, krum, krum_order, krum_scores, krum_select
from .median import MedianOptions, coordinate_median
from .multikrum import MultiKrumOptions, multikrum
from .norm_clip import NormClipOptions, norm_clip_mean
from .prodigy import ProDiGyOptions, prodigy, prodigy_scores, prodigy_weights
from .sparsefed import SparseFedOptions, sparsefed_step
from .trimmed_mean import TrimmedMeanOptions, trim_count, trimmed_mean

# private helpers that flcore.experiments.bench and the tests call through this package
from .bulyan import _bulyan_picks
from .common import _selection_weights
from .krum import _krum_ranking
from .prodigy import _dis, _prodigy_terms_direct, _trust


__all__ = [
    "KrumOptions", "MultiKrumOptions", "BulyanReferenceOptions", "BulyanOptions",
    "MedianOptions", "TrimmedMeanOptions", "SparseFedOptions", "ProDiGyOptions",
    "NormClipOptions", "Distances", "pairwise_sq_dists", "pairwise_sq_dists_direct", "gram_sq_dists",
    "weighted_sum", "fedavg", "krum_scores", "krum_order", "krum_select", "multikrum", "krum", "bulyan_reference", "bulyan_select", "bulyan",
    "coordinate_median", "trimmed_mean", "trim_count", "clip_l2", "sparsefed_step",
    "norm_clip_mean", "prodigy_scores", "prodigy_weights", "prodigy", "aggregate",
]


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
