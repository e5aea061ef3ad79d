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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flcore.constants import MALICIOUS_SET_SEED, selection_seed
from flcore.errors import ConfigError
from flcore.registry import register

LEADFL = "Zhu, Roos, Chen: LeadFL, ICML 2023 (reference code chaoyitud/LeadFL)"
SEED_REPORT = "the seed report (Guthmann, Tan), Fig. 1/2/5/6"


def malicious_set(clients: int, malicious: int) -> np.ndarray:
    """The reference's malicious ids: legacy seed 0, choice without replacement."""
    rs = np.random.RandomState(MALICIOUS_SET_SEED)
    return np.sort(rs.choice(np.arange(1, clients + 1), malicious, replace=False))


def _split(ids: np.ndarray, malicious: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mal = np.isin(ids, malicious)
    return ids[~mal], ids[mal]


def _mixed(rs: np.random.RandomState, benign: np.ndarray, mal: np.ndarray, n: int, m: int) -> np.ndarray:
    """m malicious and n-m benign, benign drawn first (the reference's order)."""
    b = rs.choice(benign, n - m, replace=False)
    a = rs.choice(mal, m, replace=False)
    return np.concatenate([b, a])


@register("schedule", "random", paper=LEADFL + "; seed report Fig. 7/8")
def random_schedule(cfg, rnd: int, ids: np.ndarray, malicious: np.ndarray) -> np.ndarray:
    """Uniform choice of ``clients_per_round`` clients every round, seeded with
    ``round + 100`` (the reference's seeding) and no override: the malicious
    share varies freely from round to round."""
    rs = np.random.RandomState(selection_seed(rnd))
    return rs.choice(ids, cfg.clients_per_round, replace=False)


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


@register("schedule", "legacy", paper="older reference code (chaoyitud/RFL-WBC 36120a6)")
def legacy_schedule(cfg, rnd: int, ids: np.ndarray, malicious: np.ndarray) -> np.ndarray:
    """Older code's seeding, ``np.random.seed(round)``: round 0 draws with the same
    seed as the malicious set and selects all 10 malicious clients; rounds 7 and
    72 have 6."""
    rs = np.random.RandomState(rnd)
    return rs.choice(ids, cfg.clients_per_round, replace=False)


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


def plan(cfg) -> list[dict]:
    """Selected and malicious client ids for every round (no training)."""
    from flcore import registry

    fn = registry.get("schedule", cfg.schedule).fn
    ids = np.arange(1, cfg.clients + 1)
    malicious = malicious_set(cfg.clients, cfg.malicious_clients)
    mal = set(malicious.tolist())
    out = []
    for rnd in range(cfg.rounds):
        sel = [int(c) for c in fn(cfg, rnd, ids, malicious)]
        out.append({"round": rnd, "selected": sel, "malicious": [c for c in sel if c in mal]})
    return out
