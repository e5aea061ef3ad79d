"""The engine's one training path, :class:`flcore.sim.engine.Rows`: batched rows against single
rows, one row against a plain per-client reference, and packs of runs against runs alone.

Batched rows (C > 1, vmap over stacked weights) and single rows (C = 1, the shared network)
sum convolutions in different orders; in float32 max-pooling can amplify that rounding (a
2x2 window whose two largest values differ by ~1e-7 may route the gradient to the other
pixel), so the semantic checks run in float64, where any difference (a draw out of order, a
defense step on the wrong batch, a counter off by one) shows at once against 1e-9. One
float32 case checks the production precision.
"""
from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from flcore.core import config
from flcore.methods.attacks import apply_trigger, trigger_values
from flcore.sim.data import CIFAR_MEAN, CIFAR_STD, Dataset, load_dataset
from flcore.sim.engine import ClientState, FlatModel, Row, Trainer, group_rows, simulate, simulate_pack
from flcore.core.errors import DataError
from flcore.methods.models import build_model

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
            rounds: int = 2):
    """Max abs difference of the returned states and of the momentum buffers, single rows vs
    batched rows, and the batched rows' counter increments."""
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
            a = trainer.train_rows([Row(cfg, w_loop, i, s, m, cfg.lr) for i, s, m in zip(indices, loop_states, malicious)])
            b = trainer.train_rows([Row(cfg, w_batch, i, s, m, cfg.lr) for i, s, m in zip(indices, batch_states, malicious)],
                                   batched=True)
            assert b.shape == a.shape and b.dtype == a.dtype
            diff = max(diff, float((a - b).abs().max()))
            w_loop, w_batch = a.mean(0), b.mean(0)
        mom = max(float((s.momentum - t.momentum).abs().max()) for s, t in zip(loop_states, batch_states))
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
def test_batched_rows_match_single_rows_for_every_defense(fmnist, overrides):
    diff, mom, counters = compare(fmnist, {**SMALL, "local_epochs": 2, **overrides}, SIZES, [False] * 5)
    assert diff < 1e-9 and mom < 1e-9, (diff, mom)


def test_malicious_and_mixed_roles_match_single_rows(fmnist):
    malicious = [True, False, True, True, False]
    diff, mom, counters = compare(fmnist, {**SMALL, "local_epochs": 2, "client_defense": "leadfl"}, SIZES, malicious)
    assert diff < 1e-9 and mom < 1e-9, (diff, mom)
    # 2 epochs x 3 batches, two forwards per step for malicious clients (the 19-sample one too)
    per_client = [12 if m else 6 for m in malicious]
    assert float((counters - counters.round()).abs().max()) < 1e-9
    assert counters.round().tolist() == [[float(c)] * counters.shape[1] for c in per_client]


def test_float32_batched_rows_match_single_rows_to_1e5(fmnist, monkeypatch):
    """Float32, both on NCHW networks, so that they run the same convolution kernels. (With the
    engine's channels-last networks single rows round differently from vmap's grouped NCHW
    convolutions; this toy federation, 40 images per client from the initial model, amplifies
    that 1e-7 to ~1e-3 within one epoch, as it amplifies any float32 change: the float64 tests
    above are the check of semantics.)"""
    import flcore.methods.models

    monkeypatch.setattr(flcore.methods.models, "MEMORY_FORMAT", torch.contiguous_format)
    diff, mom, _ = compare(fmnist, {"local_epochs": 1, "client_defense": "leadfl"}, [40, 40, 40, 40],
                           [False, False, True, True], dtype=torch.float32, rounds=2)
    assert diff < 1e-5, diff


def test_cifar_augmentation_and_loss_plus_normaliser_match_single_rows():
    data = synthetic_cifar(48)
    overrides = {"dataset": "cifar10", "local_epochs": 1, "batch_size": 4, "client_defense": "flwbc"}
    diff, mom, _ = compare(data, overrides, [8, 8, 8, 8], [False, False, True, True], rounds=1)
    assert diff < 1e-9 and mom < 1e-9, (diff, mom)


def test_rows_group_by_sample_count_behaviour_options_and_lr():
    cfg = config.load("params/smoke.yaml", {"client_defense": "leadfl"})
    other = config.load("params/smoke.yaml", {"client_defense": "leadfl", "leadfl.alpha": 0.2})
    w, st = torch.zeros(3), ClientState(None, torch.Generator())

    def row(n, malicious=False, c=cfg, lr=0.01):
        return Row(c, w, torch.arange(n), st, malicious, lr)

    rows = [row(600), row(600, True), row(599), row(600), row(600, True), row(600, c=other), row(600, lr=0.02)]
    assert group_rows(rows, batched=True) == [[0, 3], [1, 4], [2], [5], [6]]
    assert group_rows(rows, batched=False) == [[i] for i in range(len(rows))]


def ragged_compare(data: Dataset, sizes: list[int], direct: bool = False, rounds: int = 2):
    """PoisonedFL's network (no BatchNorm) with momentum, clients of different sample counts:
    the largest difference between single rows and batched rows in float64. ``direct`` trains
    all rows as one :class:`Rows` (whatever their numbers of batches) instead of through the
    trainer's grouping."""
    from flcore.sim.engine import Rows

    with default_dtype(torch.float64):
        cfg = config.load("params/smoke.yaml", {"model": {"name": "mnist_poisonedfl"}, "batch_size": 8,
                                                "local_epochs": 2, "momentum": 0.9, "client_defense": "none"})
        data = dataclasses.replace(data, train_x=data.train_x.double())
        torch.manual_seed(0)
        flat = FlatModel(build_model("mnist_poisonedfl"), "cpu")
        trainer = Trainer(cfg, flat, data)
        indices = [torch.arange(r, len(data.train_y), len(sizes))[:k] for r, k in enumerate(sizes)]

        def states():
            return [ClientState(None, torch.Generator().manual_seed(100 + r)) for r in range(len(sizes))]

        loop_states, batch_states = states(), states()
        w_loop = w_batch = flat.w.clone()
        diff = 0.0
        for _ in range(rounds):
            a = trainer.train_rows([Row(cfg, w_loop, i, s, False, cfg.lr) for i, s in zip(indices, loop_states)])
            rows = [Row(cfg, w_batch, i, s, False, cfg.lr) for i, s in zip(indices, batch_states)]
            b = Rows(flat, data, rows).train() if direct else trainer.train_rows(rows, batched=True)
            diff = max(diff, float((a - b).abs().max()))
            w_loop, w_batch = a.mean(0), b.mean(0)
        mom = max(float((s.momentum - t.momentum).abs().max()) for s, t in zip(loop_states, batch_states))
        return max(diff, mom)


def test_ragged_rows_match_single_rows_without_batchnorm(fmnist, monkeypatch):
    """Rows of different sample counts and the same number of batches train as one group (the
    last batches masked); those with another number of batches train in a group of their own;
    and one group holding rows of 1, 2 and 3 batches (rows without samples in a batch skip its
    step, momentum included) equals the rows alone too."""
    calls = []
    from flcore.sim.engine import Rows

    real = Rows.train

    def counting(self):
        calls.append(self.C)
        return real(self)

    monkeypatch.setattr(Rows, "train", counting)
    assert ragged_compare(fmnist, [20, 17, 24, 13, 20]) < 1e-9
    assert sorted(calls[-2:]) == [1, 4]  # 3 batches of 8 (17, 20, 24, 20 samples) and 2 (13)
    assert ragged_compare(fmnist, [5, 12, 20], direct=True) < 1e-9


def test_ragged_rows_group_by_batches_only_for_behaviours_that_allow_it():
    cfg = config.load("params/smoke.yaml", {"client_defense": "none", "batch_size": 8})
    lead = config.load("params/smoke.yaml", {"client_defense": "leadfl", "batch_size": 8})
    w, st = torch.zeros(3), ClientState(None, torch.Generator())
    rows = [Row(c, w, torch.arange(n), st, False, 0.01) for c, n in
            [(cfg, 17), (cfg, 24), (cfg, 16), (lead, 17), (lead, 24)]]
    assert group_rows(rows, batched=True, ragged=True) == [[0, 1], [2], [3], [4]]
    assert group_rows(rows, batched=True) == [[0], [1], [2], [3], [4]]


def test_ragged_rows_refuse_a_network_with_batchnorm(fmnist):
    from flcore.sim.engine import Rows

    cfg = config.load("params/smoke.yaml", {"client_defense": "none"})
    flat = FlatModel(build_model("fmnist_cnn"), "cpu")
    rows = [Row(cfg, flat.w, torch.arange(n), ClientState(None, torch.Generator()), False, 0.01) for n in (16, 17)]
    with pytest.raises(ValueError, match="BatchNorm"):
        Rows(flat, fmnist, rows)


def test_diverged_rows_are_nan_alone_and_batched(fmnist):
    cfg = config.load("params/smoke.yaml", {**SMALL, "local_epochs": 1, "client_defense": "none"})
    torch.manual_seed(0)
    flat = FlatModel(build_model("fmnist_cnn"), "cpu")
    trainer = Trainer(cfg, flat, fmnist)
    indices = [torch.arange(r, N_IMAGES, 5)[:k] for r, k in zip(range(5), SIZES)]
    w = flat.w.clone()
    w[flat.P - 1] = float("inf")  # a blown-up output bias: every loss is non-finite

    def rows():
        return [Row(cfg, w, i, ClientState(None, torch.Generator().manual_seed(100 + r)), False, cfg.lr)
                for r, i in enumerate(indices)]

    assert torch.isnan(trainer.train_rows(rows())).all()
    assert torch.isnan(trainer.train_rows(rows(), batched=True)).all()  # a group and a single row


# ----------------------------------------------------------------------------- one row vs a plain client


def reference_client(cfg, module: torch.nn.Module, data: Dataset, indices, gen, malicious: bool, momentum):
    """One client's local training written plainly on the module's own parameters, as the
    reference code does it (no flat state, no rows): momentum SGD, LeadFL ``code`` after each
    step but the first of an epoch, the backdoor's two passes and MGDA, one BN count per
    training forward (torch's own ``num_batches_tracked``). Returns (parameters and buffers as
    a dict, momentum buffers)."""
    params = list(module.parameters())
    if momentum is None:
        momentum = [torch.zeros_like(p) for p in params]
    bd = cfg.options("backdoor")
    trigger = trigger_values(cfg.dataset, bd.trigger, data.mean, data.std)
    opts = cfg.options("leadfl")

    def grads(x, y):
        module.zero_grad()
        loss = F.cross_entropy(module(x), y)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in params]

    def step(gs):
        with torch.no_grad():
            for p, v, g in zip(params, momentum, gs):
                v.mul_(cfg.momentum).add_(g)
                p.sub_(cfg.lr * v)

    module.train()
    n = len(indices)
    for _ in range(cfg.local_epochs):
        order = indices[torch.randperm(n, generator=gen)]
        prev = None
        for b, start in enumerate(range(0, n, cfg.batch_size)):
            idx = order[start:start + cfg.batch_size]
            x, y = data.train_x[idx], data.train_y[idx]
            if malicious:
                lc, gc = grads(x, y)
                lb, gb = grads(apply_trigger(x, trigger), torch.full_like(y, bd.target))
                nc, nb = min(lc, 10.0) + 1e-5, min(lb, 10.0) + 1e-5
                a = [g / nb for g in gb]
                c_ = [g / nc for g in gc]
                aa = sum(float((u * u).sum()) for u in a)
                ab = sum(float((u * v).sum()) for u, v in zip(a, c_))
                bb = sum(float((v * v).sum()) for v in c_)
                c = 0.999 if ab >= aa else 0.001 if ab >= bb else (bb - ab) / (aa + bb - 2 * ab)
                step([c * u + (1 - c) * v for u, v in zip(gb, gc)])
                continue
            _, g = grads(x, y)
            step(g)
            if cfg.client_defense == "leadfl":
                w = [p.detach().clone() for p in params]
                names = [name for name, _ in module.named_parameters()]
                if b > 0:
                    wp, gp = prev
                    reg = []
                    for name, wi, wpi, gpi in zip(names, w, wp, gp):
                        d = wi - wpi - gpi - cfg.lr
                        norm = d.norm()
                        reg.append(opts.alpha * d / norm if "weight" in name and norm > 0 else torch.zeros_like(d))
                    g = [(gi + ri).clamp(-opts.q, opts.q) for gi, ri in zip(g, reg)]
                    step(g)
                    w = [p.detach().clone() for p in params]
                prev = (w, g)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}, momentum


@pytest.mark.parametrize("defense,malicious", [("none", False), ("leadfl", False), ("leadfl", True)])
def test_one_row_equals_a_plain_per_client_implementation_in_float64(fmnist, defense, malicious):
    with default_dtype(torch.float64):
        cfg = config.load("params/smoke.yaml", {**SMALL, "local_epochs": 2, "client_defense": defense,
                                                 "attack": "backdoor"})
        data = dataclasses.replace(fmnist, train_x=fmnist.train_x.double())
        torch.manual_seed(0)
        module = build_model("fmnist_cnn").to(memory_format=torch.contiguous_format)
        import copy

        plain = copy.deepcopy(module)
        flat = FlatModel(module, "cpu")
        trainer = Trainer(cfg, flat, data)
        idx = torch.arange(3, N_IMAGES, 30)
        st = ClientState(None, torch.Generator().manual_seed(11))
        gen, mom = torch.Generator().manual_seed(11), None
        w = flat.w.clone()
        for _ in range(2):  # two rounds: the momentum persists
            w = trainer.train(w, idx, st, malicious, cfg.lr)
            want, mom = reference_client(cfg, plain, data, idx, gen, malicious, mom)
        flat.w.copy_(w)
        got = flat.module.state_dict()
        for k, v in want.items():
            if v.is_floating_point():
                assert torch.allclose(got[k], v, atol=1e-9, rtol=0), k
        # the flat state's counters are the reference's num_batches_tracked
        counts = [float(v) for k, v in want.items() if k.endswith("num_batches_tracked")]
        assert w[flat.counter_slice].tolist() == counts and counts[0] == 2 * 2 * 3 * (2 if malicious else 1)
        assert max(float((a - b).abs().max()) for a, b in
                   zip(mom, [seg.view(st.momentum) for seg in flat.segments])) < 1e-9


# ----------------------------------------------------------------------------- packs of runs


def tiny(**overrides):
    raw = {"experiment": "t", "profile": "smoke", "rounds": 2, "clients": 1000, "local_epochs": 1,
           "schedule": "paper", "attack": "backdoor", "aggregator": "multikrum", "batch_size": 32,
           "eval": {"test_samples": 100, "batch": 100}, **overrides}
    return config.load(None, raw)


def test_a_run_in_a_pack_equals_the_run_alone_exactly_with_the_loop():
    cfgs = [tiny(client_defense="leadfl", seed=0), tiny(client_defense="none", seed=1),
            tiny(client_defense="ldp", seed=0, aggregator="median")]
    packed = simulate_pack(cfgs, device="cpu", progress=False, executor="loop")
    for cfg, rec in zip(cfgs, packed):
        alone = simulate(cfg, device="cpu", progress=False)
        assert rec["pack"] == 3
        for a, b in zip(alone["rounds"], rec["rounds"]):
            assert {k: v for k, v in a.items() if k != "wall_s"} == {k: v for k, v in b.items() if k != "wall_s"}


def test_a_run_in_a_batched_pack_equals_the_run_alone_in_float64(monkeypatch):
    """Batched across runs: the rows of both runs that share behaviour and shape train as one
    group, and both models are tested as one network; in float64 every round's metrics equal
    those of the runs alone and the final states agree to 1e-9."""
    import flcore.sim.engine as engine

    try:
        ds = load_dataset("fmnist")
    except DataError as e:
        pytest.skip(str(e))
    ds = dataclasses.replace(ds, train_x=ds.train_x.double(), test_x=ds.test_x.double())
    monkeypatch.setattr(engine, "load_dataset", lambda name, device: ds)
    cfgs = [tiny(client_defense="leadfl", seed=0), tiny(client_defense="leadfl", seed=1)]
    finals = {}

    def capture(tag):
        def on_round(rnd, w, rec):
            finals[tag] = w.clone()
        return on_round

    def metrics(rec):
        return [(r["main_acc"], r["backdoor_acc"], r["backdoor_nontarget_acc"]) for r in rec["rounds"]]

    calls, evals = [], []
    real_train, real_eval = engine.Rows.train, engine._evaluate_stacked

    def counting_train(self):
        calls.append(self.C)
        return real_train(self)

    def counting_eval(flat, cfg, sets, ws):
        evals.append(ws.shape[0])
        return real_eval(flat, cfg, sets, ws)

    with default_dtype(torch.float64):
        alone = [simulate(cfg, device="cpu", progress=False, on_round=capture(("alone", i)))
                 for i, cfg in enumerate(cfgs)]
        monkeypatch.setattr(engine.Rows, "train", counting_train)
        monkeypatch.setattr(engine, "_evaluate_stacked", counting_eval)
        packed = simulate_pack(cfgs, device="cpu", progress=False, executor="batched",
                               on_round=lambda rnd, w, rec: finals.setdefault("pack", []).append(w.clone()))
    assert max(calls) > 5  # benign rows of both runs shared a group
    assert evals == [2, 2]  # both models tested as one network in each of the two rounds
    for i in range(2):
        assert metrics(packed[i]) == metrics(alone[i])
        # on_round is called run by run in each round: the last two are the runs' final states
        assert float((finals["pack"][-2 + i] - finals[("alone", i)]).abs().max()) < 1e-9


def test_a_pack_refuses_runs_of_different_shapes():
    with pytest.raises(ValueError, match="share dataset, model, rounds"):
        simulate_pack([tiny(), tiny(rounds=3)], device="cpu", progress=False)


def test_many_rows_draw_their_noise_on_threads_with_the_same_numbers(monkeypatch):
    import flcore.sim.engine as engine

    cfg = config.load("params/smoke.yaml", {"client_defense": "ldp"})

    class Data:  # Rows reads only these of a dataset
        mean, std, train_x = (0.0,), (1.0,), torch.zeros(1, 1, 28, 28)

    flat = FlatModel(build_model("fmnist_cnn"), "cpu")

    def uniform(c):
        rows = [Row(cfg, flat.w, torch.arange(4), ClientState(None, torch.Generator().manual_seed(i)), False, 0.01)
                for i in range(c)]
        return engine.Rows(flat, Data(), rows).uniform(1000)

    threaded = uniform(12)
    monkeypatch.setattr(engine, "PARALLEL_DRAWS_FROM", 10**9)
    assert torch.equal(threaded, uniform(12))
    assert torch.equal(threaded[3], torch.rand(1000, generator=torch.Generator().manual_seed(3)))
