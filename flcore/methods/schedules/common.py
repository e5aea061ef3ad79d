"""What the schedules share: the malicious set, the benign/malicious split and draws, :func:`plan`.

See :mod:`flcore.methods.schedules` for the conventions (1-based ids, seeding).
"""
from __future__ import annotations

import numpy as np

from flcore.core.constants import MALICIOUS_SET_SEED


LEADFL = "Zhu, Roos, Chen: LeadFL, ICML 2023 (reference code chaoyitud/LeadFL)"


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


def plan(cfg) -> list[dict]:
    """Selected and malicious client ids for every round (no training)."""
    from flcore.core import registry

    fn = registry.get("schedule", cfg.schedule).fn
    ids = np.arange(1, cfg.clients + 1)
    malicious = malicious_set(cfg.clients, cfg.malicious_clients)
    mal = set(malicious.tolist())
    out = []
    for rnd in range(cfg.rounds):
        sel = [int(c) for c in fn(cfg, rnd, ids, malicious)]
        out.append({"round": rnd, "selected": sel, "malicious": [c for c in sel if c in mal]})
    return out
