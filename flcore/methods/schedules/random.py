"""The schedule ``random``: a uniform choice of clients every round, no override.

Zhu, Roos, Chen, LeadFL, ICML 2023 (the reference code ``chaoyitud/LeadFL``'s
seeding); the seed report's Fig. 7/8.
"""
from __future__ import annotations

import numpy as np

from flcore.core.constants import selection_seed
from flcore.core.registry import register

from .common import LEADFL


@register("schedule", "random", paper=LEADFL + "; seed report Fig. 7/8")
def random_schedule(cfg, rnd: int, ids: np.ndarray, malicious: np.ndarray) -> np.ndarray:
    """Uniform choice of ``clients_per_round`` clients every round, seeded with
    ``round + 100`` (the reference's seeding) and no override: the malicious
    share varies freely from round to round."""
    rs = np.random.RandomState(selection_seed(rnd))
    return rs.choice(ids, cfg.clients_per_round, replace=False)
