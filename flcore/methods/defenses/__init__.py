"""Client-side defenses, applied by benign clients only: ``none``, ``leadfl``, ``ldp``, ``flwbc``.

Each defense is written once, row-wise: it drives a stack of C client rows
(:class:`flcore.sim.engine.Rows`; one row per client, the per-client loop is C = 1)
through the protocol every client behaviour follows, ``begin_epoch()`` at each
epoch start and ``step(b, x, y)`` for batch ``b`` (``x`` [C, batch, ...]). As in
the reference, a defense acts on every batch except the first of each epoch.
The maths is in small pure functions, one per equation, each on ``[C, P]``
tensors (one row per client) and tested in ``tests/test_methods.py``.

Notation (rows of flat vectors over the trainable parameters): W_i weights
before step i, W~ = W_i - lr*v after the normal momentum-SGD step, g the
cross-entropy gradient of the batch, lr the learning rate. "weight" entries are
those of parameters whose name contains "weight" (conv and linear weights, BN
gamma). A segment ``(offset, length)`` is one parameter tensor's place in a row.

Layout. One module per defense, with its pure functions, its options and its
registered class: :mod:`~flcore.methods.defenses.none`,
:mod:`~flcore.methods.defenses.leadfl`, :mod:`~flcore.methods.defenses.ldp`,
:mod:`~flcore.methods.defenses.flwbc`. :mod:`~flcore.methods.defenses.common` holds
the protocol (:class:`ClientBehaviour`, which the attacks' local training follows
too), the Laplace noise, ``add_at`` and :class:`NoiseOptions`, which LDP and FL-WBC
share. This package re-exports them all.
"""
from __future__ import annotations

from .common import ClientBehaviour, NoiseOptions, add_at, laplace, laplace_from_uniform
from .flwbc import FLWBC, flwbc_mask
from .ldp import LDP
from .leadfl import (LEADFL, LeadFL, LeadFLOptions, leadfl_code_regulariser_grad, leadfl_corrected_direction,
                     leadfl_paper_direction, segment_unit)
from .none import NoDefense

__all__ = [
    "ClientBehaviour", "NoiseOptions", "add_at", "laplace", "laplace_from_uniform",
    "NoDefense",
    "LEADFL", "LeadFL", "LeadFLOptions", "segment_unit", "leadfl_code_regulariser_grad",
    "leadfl_paper_direction", "leadfl_corrected_direction",
    "LDP",
    "FLWBC", "flwbc_mask",
]
