"""The schedule ``legacy``: the older reference code's seeding, ``np.random.seed(round)``.

Older reference code, ``chaoyitud/RFL-WBC`` at 36120a6.
"""
from __future__ import annotations

import numpy as np

from flcore.core.registry import register


@register("schedule", "legacy", paper="older reference code (chaoyitud/RFL-WBC 36120a6)")
def legacy_schedule(cfg, rnd: int, ids: np.ndarray, malicious: np.ndarray) -> np.ndarray:
    """Older code's seeding, ``np.random.seed(round)``: round 0 draws with the same
    seed as the malicious set and selects all 10 malicious clients; rounds 7 and
    72 have 6."""
    rs = np.random.RandomState(rnd)
    return rs.choice(ids, cfg.clients_per_round, replace=False)
