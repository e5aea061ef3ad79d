"""The schedule ``periodic``: bursts of malicious clients, then benign-only rounds.

The seed report (Guthmann, Tan), Fig. 1/2/5/6; not in the reference code.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flcore.core.constants import selection_seed
from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import _mixed, _split


SEED_REPORT = "the seed report (Guthmann, Tan), Fig. 1/2/5/6"


@dataclass(frozen=True)
class PeriodicOptions:
    """Bursts: in each cycle of ``cycle`` rounds the first ``burst`` rounds select
    ``malicious_per_round`` malicious clients, the others benign clients only."""

    cycle: int = 10
    burst: int = 2
    malicious_per_round: int = 6

    def check(self, cfg) -> None:
        if self.cycle < 1 or not (0 <= self.burst <= self.cycle):
            raise ConfigError(f"periodic needs cycle >= 1 and 0 <= burst <= cycle, got cycle={self.cycle}, burst={self.burst}")
        if not (0 <= self.malicious_per_round <= min(cfg.clients_per_round, cfg.malicious_clients)):
            raise ConfigError(
                f"periodic.malicious_per_round ({self.malicious_per_round}) must be between 0 and "
                f"min(clients_per_round, malicious_clients) = {min(cfg.clients_per_round, cfg.malicious_clients)}")
        if cfg.clients - cfg.malicious_clients < cfg.clients_per_round:
            raise ConfigError("periodic needs at least clients_per_round benign clients for its benign-only rounds")


@register("schedule", "periodic", options=PeriodicOptions, paper=SEED_REPORT)
def periodic_schedule(cfg, rnd: int, ids: np.ndarray, malicious: np.ndarray) -> np.ndarray:
    """The seed report's burst schedule (not in the reference code): cycles of 10
    rounds, the first 2 select 6 malicious of 10, the other 8 only benign
    clients. Seeded with ``round + 100`` like the reference."""
    opts = cfg.options("periodic")
    rs = np.random.RandomState(selection_seed(rnd))
    benign, mal = _split(ids, malicious)
    if rnd % opts.cycle < opts.burst:
        return _mixed(rs, benign, mal, cfg.clients_per_round, opts.malicious_per_round)
    return rs.choice(benign, cfg.clients_per_round, replace=False)
