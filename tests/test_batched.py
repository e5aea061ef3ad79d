"""The batched executor (flcore.batched) against the per-client loop (Trainer.train).

Both are run from the same global state with client states seeded alike, for two
rounds (the second from the mean of the first round's results, so that the
momentum buffers carried between rounds are exercised); the returned flat
states and the momentum buffers must agree.

Most cases run in float64: the two executors sum convolutions in different
orders, and in float32 max-pooling can amplify that rounding (a 2x2 window whose
two largest values differ by ~1e-7 may route the gradient to the other pixel),
so long float32 comparisons are at the mercy of such near ties. In float64 any
semantic difference (a draw out of order, a defense step on the wrong batch, a
counter off by one) shows at once, against a tolerance of 1e-9. One float32
case on real Fashion-MNIST checks the production precision against 1e-5.
"""
from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from flcore import config
from flcore.batched import group_clients, rows_segment_unit, segment_ids, train_clients_batched
from flcore.data import CIFAR_MEAN, CIFAR_STD, Dataset, load_dataset
from flcore.defenses import segment_unit
from flcore.engine import ClientState, FlatModel, Trainer
from flcore.errors import DataError
from flcore.models import build_model

N_IMAGES = 600


@pytest.fixture(scope="module")
def fmnist() -> Dataset:
    try:
        ds = load_dataset("fmnist")
    except DataError as e:
        pytest.skip(str(e))
    return dataclasses.replace(ds, train_x=ds.train_x[:N_IMAGES].clone(), train_y=ds.train_y[:N_IMAGES].clone(),
                               test_x=ds.test_x[:10].clone(), test_y=ds.test_y[:10].clone())


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def synthetic_cifar(n: int) -> Dataset:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset("cifar10", x, y, x[:4], y[:4], source="synthetic", label="synthetic",
                   mean=CIFAR_MEAN, std=CIFAR_STD)


def compare(data: Dataset, overrides: dict, sizes: list[int], malicious: list[bool], dtype=torch.float64,
            rounds: int = 2) -> tuple[float, float]:
    """Max abs difference of the returned states and of the momentum buffers, loop vs batched."""
    with default_dtype(dtype):
        cfg = config.load("params/smoke.yaml", overrides)
        data = dataclasses.replace(data, train_x=data.train_x.to(dtype))
        torch.manual_seed(0)
        flat = FlatModel(build_model("cifar10_cnn" if data.name == "cifar10" else "fmnist_cnn"), "cpu")
        trainer = Trainer(cfg, flat, data)
        n_clients = len(sizes)
        indices = [torch.arange(r, len(data.train_y), n_clients)[:k] for r, k in zip(range(n_clients), sizes)]

        def states():
            return [ClientState(None, torch.Generator().manual_seed(100 + r)) for r in range(n_clients)]

        loop_states, batch_states = states(), states()
        w_loop = w_batch = flat.w.clone()
        diff = 0.0
        for _ in range(rounds):
            start = w_batch
            a = torch.stack([trainer.train(w_loop, i, s, m, cfg.lr)
                             for i, s, m in zip(indices, loop_states, malicious)])
            b = train_clients_batched(trainer, w_batch, indices, batch_states, malicious, cfg.lr)
            assert b.shape == a.shape and b.dtype == a.dtype
            diff = max(diff, float((a - b).abs().max()))
            w_loop, w_batch = a.mean(0), b.mean(0)
        mom = max(float((s.momentum - t.momentum).abs().max()) for s, t in zip(loop_states, batch_states))
        # the counters are exact: one per training forward pass
        counters = b[:, flat.counter_slice] - start[flat.counter_slice]
        return diff, mom, counters


# batches of 8: four clients of 20 samples (batches 8, 8, 4) share a step, one of 19 trains alone
SIZES = [20, 20, 19, 20, 20]
SMALL = {"batch_size": 8}


@pytest.mark.parametrize("overrides", [
    {"client_defense": "none"},
    {"client_defense": "leadfl", "leadfl.variant": "code"},
    {"client_defense": "leadfl", "leadfl.variant": "paper"},
    {"client_defense": "leadfl", "leadfl.variant": "corrected"},
    {"client_defense": "ldp"},
    {"client_defense": "flwbc"},
], ids=lambda o: "-".join(str(v) for v in o.values()))
def test_benign_defenses_match_loop(fmnist, overrides):
    diff, mom, counters = compare(fmnist, {**SMALL, "local_epochs": 2, **overrides}, SIZES, [False] * 5)
    assert diff < 1e-9 and mom < 1e-9, (diff, mom)


def test_malicious_and_mixed_roles_match_loop(fmnist):
    malicious = [True, False, True, True, False]
    diff, mom, counters = compare(fmnist, {**SMALL, "local_epochs": 2, "client_defense": "leadfl"}, SIZES, malicious)
    assert diff < 1e-9 and mom < 1e-9, (diff, mom)
    # 2 epochs x 3 batches, two forwards per step for malicious clients (the 39-sample one too)
    per_client = [12 if m else 6 for m in malicious]
    assert float((counters - counters.round()).abs().max()) < 1e-9
    assert counters.round().tolist() == [[float(c)] * counters.shape[1] for c in per_client]


def test_float32_matches_loop_to_1e5(fmnist, monkeypatch):
    """Float32, both executors on NCHW networks, so that they run the same convolution kernels.
    (With the engine's channels-last networks the loop's kernels round differently from vmap's
    grouped NCHW convolutions; this toy federation, 40 images per client from the initial model,
    amplifies that 1e-7 to ~1e-3 within one epoch, as it amplifies any float32 change: the
    float64 tests above are the check of semantics.)"""
    import flcore.models

    monkeypatch.setattr(flcore.models, "MEMORY_FORMAT", torch.contiguous_format)
    diff, mom, _ = compare(fmnist, {"local_epochs": 1, "client_defense": "leadfl"}, [40, 40, 40, 40],
                           [False, False, True, True], dtype=torch.float32, rounds=2)
    assert diff < 1e-5, diff


def test_cifar_augmentation_and_loss_plus_normaliser_match_loop():
    data = synthetic_cifar(48)
    overrides = {"dataset": "cifar10", "local_epochs": 1, "batch_size": 4, "client_defense": "flwbc"}
    diff, mom, _ = compare(data, overrides, [8, 8, 8, 8], [False, False, True, True], rounds=1)
    assert diff < 1e-9 and mom < 1e-9, (diff, mom)


def test_grouping():
    idx = [torch.arange(n) for n in (600, 600, 599, 600, 600)]
    assert group_clients(idx, [False, True, False, False, True]) == [[0, 3], [1, 4], [2]]


def test_rows_segment_unit_is_segment_unit_per_row():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(3, 20, generator=g, dtype=torch.float64)
    d[1, 5:9] = 0  # a zero segment has zero gradient
    segments = [(0, 5), (5, 4), (12, 8)]
    got = rows_segment_unit(d, segment_ids(segments, 20, "cpu"), len(segments))
    want = torch.stack([segment_unit(row, segments) for row in d])
    assert torch.allclose(got, want, atol=1e-15, rtol=0)


def test_diverged_clients_get_nan_rows_like_the_loop(fmnist):
    from flcore.engine import Diverged

    cfg = config.load("params/smoke.yaml", {**SMALL, "local_epochs": 1, "client_defense": "none"})
    torch.manual_seed(0)
    flat = FlatModel(build_model("fmnist_cnn"), "cpu")
    trainer = Trainer(cfg, flat, fmnist)
    indices = [torch.arange(r, N_IMAGES, 5)[:k] for r, k in zip(range(5), SIZES)]
    w = flat.w.clone()
    w[flat.P - 1] = float("inf")  # a blown-up output bias: every loss is non-finite

    def states():
        return [ClientState(None, torch.Generator().manual_seed(100 + r)) for r in range(5)]

    loop = []
    for i, s in zip(indices, states()):
        try:
            loop.append(trainer.train(w, i, s, False, cfg.lr))
        except Diverged:
            loop.append(torch.full_like(w, float("nan")))
    loop = torch.stack(loop)
    batched = train_clients_batched(trainer, w, indices, states(), [False] * 5, cfg.lr)
    assert torch.isnan(loop).all() and torch.isnan(batched).all()  # the group and the single client


def test_laplace_from_uniform_is_the_defenses_sampler():
    from flcore.batched import laplace_from_uniform
    from flcore.defenses import laplace

    for dtype in (torch.float32, torch.float64):
        with default_dtype(dtype):
            want = laplace((1000,), 0.2, torch.Generator().manual_seed(5), "cpu")
            u = torch.rand(1000, generator=torch.Generator().manual_seed(5))
            assert torch.equal(laplace_from_uniform(u, 0.2), want)
            assert torch.isfinite(laplace_from_uniform(torch.zeros(3), 0.2)).all()


def test_laplace_noise_comes_from_the_clients_cpu_generator_on_any_device():
    """A client's generator lives on the CPU; the noise is drawn there and moved, so a
    GPU run adds the CPU run's noise (``meta`` stands in for a GPU on a CPU machine)."""
    from flcore.defenses import laplace

    out = laplace((7, 3), 0.5, torch.Generator().manual_seed(1), torch.device("meta"))
    assert out.device.type == "meta" and out.shape == (7, 3)
    a = laplace((50,), 0.5, torch.Generator().manual_seed(1), "cpu")
    assert torch.equal(a, laplace((50,), 0.5, torch.Generator().manual_seed(1), torch.device("cpu")))
