"""The schedule ``consistent``: the same number of malicious clients in every round.

Zhu, Roos, Chen, LeadFL, ICML 2023 (the reference code ``chaoyitud/LeadFL``,
``selection_method 'consistent'``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flcore.core.constants import selection_seed
from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import LEADFL, _mixed, _split


@dataclass(frozen=True)
class ConsistentOptions:
    """A fixed number of malicious clients in every round."""

    malicious_per_round: int = 2

    def check(self, cfg) -> None:
        if not (0 <= self.malicious_per_round <= min(cfg.clients_per_round, cfg.malicious_clients)):
            raise ConfigError(
                f"consistent.malicious_per_round ({self.malicious_per_round}) must be between 0 and "
                f"min(clients_per_round, malicious_clients) = {min(cfg.clients_per_round, cfg.malicious_clients)}")


@register("schedule", "consistent", options=ConsistentOptions, paper=LEADFL + " (selection_method 'consistent')")
def consistent_schedule(cfg, rnd: int, ids: np.ndarray, malicious: np.ndarray) -> np.ndarray:
    """The reference's 'consistent' selection: the same number of malicious clients every round."""
    opts = cfg.options("consistent")
    rs = np.random.RandomState(selection_seed(rnd))
    benign, mal = _split(ids, malicious)
    return _mixed(rs, benign, mal, cfg.clients_per_round, opts.malicious_per_round)
