"""Constants shared across flcore, each defined once with where it comes from.

Seeds here decide stored numbers: changing one changes every run that uses it (and so its
results' verification), so each is a named constant or a small function of the run's seed.
Importing this module has no side effects.
"""
from __future__ import annotations

from pathlib import Path

#: The repository: the book, ``params/``, ``notebooks/`` and the default ``results/`` store.
ROOT = Path(__file__).resolve().parents[2]

#: The book's profiles, in order of size: ``smoke`` (minutes, CI), ``default`` (the committed
#: store), ``paper`` (the paper protocol).
PROFILES = ("smoke", "default", "paper")

#: Classes of each dataset (Fashion-MNIST and CIFAR-10 both have ten).
NUM_CLASSES = {"fmnist": 10, "cifar10": 10}

# ------------------------------------------------------------------------------------ seeds

#: The malicious clients are drawn once with numpy's legacy ``np.random.seed(0)`` (the
#: reference code's seeding), whatever the run's seed.
MALICIOUS_SET_SEED = 0

#: The reference code's client selection seeds numpy with ``round + 100`` every round.
SELECTION_SEED_OFFSET = 100

#: A fixed evaluation subset of the test set (``eval.test_samples``), the same for every run.
EVAL_SUBSET_SEED = 12345

#: The order in which the JPEG copy of CIFAR-10 lists its images (a fixed permutation).
CIFAR_JPEG_ORDER_SEED = 0


def selection_seed(rnd: int) -> int:
    """numpy seed of round ``rnd``'s client selection: the reference's ``round + 100``."""
    return rnd + SELECTION_SEED_OFFSET


def client_seed(seed: int, rank: int) -> int:
    """Seed of client ``rank``'s own random stream (data order, noise) in a run of ``seed``:
    distinct for every (run seed, client) of up to 100,003 clients."""
    return seed * 100_003 + rank + 10


def fake_seed(seed: int) -> int:
    """Seed of the stream that draws the number of fake (PoisonedFL) clients per round."""
    return seed + 7


def hessian_seed(seed: int, rnd: int) -> int:
    """Seed of the random directions of the attack-effect analysis at round ``rnd``."""
    return seed * 1_000_003 + rnd
