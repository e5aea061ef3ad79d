"""The schedule ``paper``: the published code's selection, with rounds forced to 5 benign + 5 malicious.

Zhu, Roos, Chen, LeadFL, ICML 2023 (the reference code ``chaoyitud/LeadFL``,
its federator's hard-coded override).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flcore.core.constants import selection_seed
from flcore.core.errors import ConfigError
from flcore.core.registry import register

from .common import LEADFL, _mixed, _split


@dataclass(frozen=True)
class PaperOptions:
    """Rounds forced to 5 benign + 5 malicious clients (reference: 0, 10, 12).

    Written as a comma-separated string so the option stays a JSON scalar.
    """

    forced_rounds: str = "0,10,12"
    forced_malicious: int = 5

    def rounds(self) -> list[int]:
        return [int(r) for r in self.forced_rounds.split(",") if r.strip()]

    def check(self, cfg) -> None:
        try:
            self.rounds()
        except ValueError:
            raise ConfigError(f"paper.forced_rounds must be comma-separated integers, got {self.forced_rounds!r}") from None
        if self.forced_malicious > min(cfg.clients_per_round, cfg.malicious_clients):
            raise ConfigError(
                f"paper.forced_malicious ({self.forced_malicious}) exceeds clients_per_round "
                f"({cfg.clients_per_round}) or malicious_clients ({cfg.malicious_clients})")


@register("schedule", "paper", options=PaperOptions, paper=LEADFL)
def paper_schedule(cfg, rnd: int, ids: np.ndarray, malicious: np.ndarray) -> np.ndarray:
    """The published code's selection: ``np.random.seed(round + 100)``, uniform
    choice of 10 of 100; then, continuing the same random stream, rounds 0, 10
    and 12 are overridden with 5 random benign + 5 random malicious clients (a
    hard-coded override in the reference federator). At most 5 malicious per
    round; mean 2.55 over 80 rounds."""
    opts = cfg.options("paper") or PaperOptions()
    rs = np.random.RandomState(selection_seed(rnd))
    selected = rs.choice(ids, cfg.clients_per_round, replace=False)
    if rnd in opts.rounds():
        benign, mal = _split(ids, malicious)
        selected = _mixed(rs, benign, mal, cfg.clients_per_round, opts.forced_malicious)
    return selected
