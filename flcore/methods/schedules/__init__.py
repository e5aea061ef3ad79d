"""Client selection schedules: which clients train in each round, and which of them are malicious.

Client ids are 1-based (1..clients), as in the reference code. The malicious set
is drawn once, as the reference does: numpy's legacy ``np.random.seed(0)`` then
``np.random.choice(ids, malicious_clients, replace=False)``; with 100 clients and
25 malicious this gives {3, 4, 8, 9, 14, 17, 23, 25, 27, 31, 34, 44, 46, 54, 55,
56, 63, 72, 74, 76, 79, 87, 93, 94, 96}.

Every schedule is a function ``(cfg, round, ids, malicious) -> selected ids``,
deterministic in the round number and independent of the run's seed, so every
defense combination sees exactly the same clients per round (as in the
reference, where selection is re-seeded from the round number).

Layout. One module per schedule, with its options and its registered function:
:mod:`~flcore.methods.schedules.random`, :mod:`~flcore.methods.schedules.paper`,
:mod:`~flcore.methods.schedules.legacy`, :mod:`~flcore.methods.schedules.periodic`,
:mod:`~flcore.methods.schedules.consistent`. :mod:`~flcore.methods.schedules.common`
holds the malicious set (:func:`malicious_set`), :func:`plan` and the draws the
schedules share. This package re-exports them.
"""
from __future__ import annotations

from .common import LEADFL, malicious_set, plan
from .consistent import ConsistentOptions, consistent_schedule
from .legacy import legacy_schedule
from .paper import PaperOptions, paper_schedule
from .periodic import SEED_REPORT, PeriodicOptions, periodic_schedule
from .random import random_schedule

__all__ = [
    "malicious_set", "plan", "LEADFL", "SEED_REPORT",
    "random_schedule", "PaperOptions", "paper_schedule", "legacy_schedule",
    "PeriodicOptions", "periodic_schedule", "ConsistentOptions", "consistent_schedule",
]
