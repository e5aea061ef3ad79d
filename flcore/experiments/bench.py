"""Benchmark: one LeadFL round on Fashion-MNIST, our engine against a naive one and the FLOP floor.

``python -m flcore bench [--quick]`` prints the JSON of :func:`bench` as its last line.

The round measured is round 0 of the paper protocol (``leadfl-protocol.md``): the
paper schedule's 10 clients (5 malicious: 55, 46, 76, 44, 87), 9-pixel backdoor
with MGDA, LeadFL (variant ``code``) on the 5 benign clients, Multi-Krum over
the full state, evaluation with BatchNorm in train mode on all 10,000 test images
and their triggered copy. Default: the paper's 10 local epochs (380 steps of
batch 16 per client); ``quick``: 1 local epoch, everything else the same.

Three implementations run the same round in the same process:

* ``ours`` -- the engine's own round: the steps of :class:`flcore.sim.engine.Simulation`
  (selection, local training, attack and aggregation, evaluation) that
  :func:`flcore.sim.engine.simulate` runs, executor ``loop`` (the clients one after another:
  what every CPU run uses; each client's training timed on its own);
* ``batched`` -- the same round with executor ``batched`` (the clients that can share a
  step trained as rows of one :class:`flcore.sim.engine.Rows`) for the training; aggregation
  and evaluation are the same work as ``ours`` and are not re-timed;
* ``naive`` -- the same round written the way the reference code (FLTK /
  backdoors101 style) writes it, here in :class:`NaiveRound`: one model and one
  ``torch.optim.SGD(lr=0.01, momentum=0.1)`` per client, a ``DataLoader`` per
  client over PIL images with a per-sample ``ToTensor``, a deep copy of the
  global state per client, host (NumPy) copies of every gradient each step,
  MGDA from per-task gradient lists with per-layer ``.item()`` dot products
  and a third backward pass on the combined loss (as the backdoor library
  does), LeadFL's second step through autograd on the regulariser,
  Multi-Krum over ``state_dict`` s, evaluation through a ``DataLoader``, the networks
  in torch's default NCHW layout.

Reported: ``round_s`` of each, ``speedup_vs_naive`` (naive / ours) and
``speedup_batched_vs_naive``; ``flop_efficiency`` = counted FLOPs of the round
(forward + backward of every training step, and the evaluation forwards, by
``torch.utils.flop_counter.FlopCounterMode``; the optimizer and the defenses'
element-wise work are not counted) / the attainable FP32 rate (the best of a
few 2048x2048 matrix products on the same device and threads, measured in the
same run, at its start and at its end) / the round's time, so 1.0 is the
physical limit; ``eval_share``; per-phase times and milliseconds per step of
each kind of client.

Threads: the CPU benchmark runs on ``threads`` intra-op threads (default 1:
on a machine whose cores are shared, more threads than idle cores makes every
small operation wait on its slowest thread). On a CPU every time is also given
as this process's CPU time (``cpu_time``), which other work on the machine
inflates far less than wall time. ``thp_alloc`` records whether torch was
started with ``THP_MEM_ALLOC_ENABLE=1`` (large tensors on transparent huge
pages), which decides how much of the evaluation goes into page faults.
"""
from __future__ import annotations

import copy
import os
import platform
import random
import time

import numpy as np
import torch
from torch import Tensor, nn

from flcore.core import config, registry
from flcore.methods.attacks import apply_trigger, trigger_values
from flcore.core.constants import ROOT, client_seed
from flcore.sim.engine import (EVAL_SUBSET_SEED, ClientState, FlatModel, Run, Simulation, Trainer, eval_sets, evaluate,
                               group_rows, pick_device, split_clients)
from flcore.methods.models import build_model

#: Round sizes. ``tiny`` exists for the structure test only.
SIZES = {
    "full": {"local_epochs": 10, "samples_per_client": None, "test_samples": 10000},
    "quick": {"local_epochs": 1, "samples_per_client": None, "test_samples": 10000},
    "tiny": {"local_epochs": 1, "samples_per_client": 32, "test_samples": 500},
}


# ----------------------------------------------------------------------------- timing helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    """Seconds of a block: wall clock (``s``, with device synchronisation at both
    ends) and this process's CPU time (``cpu``). On a CPU shared with other work,
    CPU time is what the block itself cost; wall time includes waiting for a core."""

    def __init__(self, device: torch.device):
        self.device, self.s, self.cpu = device, 0.0, 0.0

    def __enter__(self):
        _sync(self.device)
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        _sync(self.device)
        self.s = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0


def attainable_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """Best FP32 rate of an n x n matrix product on ``device`` (GFLOP/s), by wall
    clock and by CPU time (the latter is meaningful for one CPU thread only)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    a @ b
    wall = cpu = float("inf")
    for _ in range(repeats):
        with _Clock(device) as c:
            a @ b
        wall, cpu = min(wall, c.s), min(cpu, c.cpu)
    flop = 2 * n ** 3 / 1e9
    return flop / wall, flop / max(cpu, 1e-9)


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- the naive round


class _PILImages(torch.utils.data.Dataset):
    """Images kept as uint8 arrays, turned into PIL images and then tensors one at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        from torchvision import transforms

        self.images, self.labels = images, labels
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class _ClientSampler(torch.utils.data.Sampler):
    """A client's own indices, reshuffled each epoch with Python's ``random`` seeded rank + 10."""

    def __init__(self, indices: list[int], rank: int):
        self.indices, self.rng = list(indices), random.Random(rank + 10)

    def __iter__(self):
        order = list(self.indices)
        self.rng.shuffle(order)
        return iter(order)

    def __len__(self) -> int:
        return len(self.indices)


def _reference_layout(net: nn.Module) -> nn.Module:
    """The network in torch's default NCHW layout, as the reference code builds it."""
    return net.to(memory_format=torch.contiguous_format)


class _NaiveClient:
    def __init__(self, rank: int, indices: list[int], train: _PILImages, malicious: bool, cfg, device,
                 model_name: str):
        self.rank, self.malicious, self.cfg, self.device = rank, malicious, cfg, device
        self.net = _reference_layout(build_model(model_name)).to(device)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        self.loader = torch.utils.data.DataLoader(train, batch_size=cfg.batch_size,
                                                  sampler=_ClientSampler(indices, rank))
        self.criterion = nn.CrossEntropyLoss()
        self.grad_history: list[list[np.ndarray]] = []

    def train(self, global_state: dict, trigger: Tensor, target: int, leadfl) -> tuple[dict, int]:
        self.net.load_state_dict(copy.deepcopy(global_state), strict=True)
        self.net.train()
        steps = 0
        for _ in range(self.cfg.local_epochs):
            prev_w = prev_g = None
            for i, (inputs, labels) in enumerate(self.loader):
                inputs, labels = inputs.to(self.device), labels.to(self.device)
                if self.malicious:
                    self._backdoor_step(inputs, labels, trigger, target)
                else:
                    prev_w, prev_g = self._benign_step(i, inputs, labels, leadfl, prev_w, prev_g)
                steps += 1
        return copy.deepcopy(self.net.state_dict()), steps

    def _benign_step(self, i, inputs, labels, leadfl, prev_w, prev_g):
        self.optimizer.zero_grad()
        loss = self.criterion(self.net(inputs), labels)
        loss.backward()
        # the reference keeps host copies of the gradients (FL-WBC-style bookkeeping)
        self.grad_history = [[p.grad.detach().cpu().numpy().copy() for p in self.net.parameters()]]
        self.optimizer.step()
        named = list(self.net.named_parameters())
        if i > 0:
            reg = 0
            for (name, p), wp, gp in zip(named, prev_w, prev_g):
                if "weight" in name:
                    reg = reg + torch.norm(p - wp - gp - self.cfg.lr * torch.ones_like(p))
            reg = leadfl.alpha * reg
            reg.backward()
            for _, p in named:
                p.grad.data.clamp_(-leadfl.q, leadfl.q)
            self.optimizer.step()
        return [p.detach().clone() for _, p in named], [p.grad.detach().clone() for _, p in named]

    def _backdoor_step(self, inputs, labels, trigger, target):
        params = [p for p in self.net.parameters() if p.requires_grad]
        losses, grads = {}, {}
        for task in ("normal", "backdoor"):
            x, y = inputs, labels
            if task == "backdoor":
                x, y = apply_trigger(inputs, trigger), torch.full_like(labels, target)
            losses[task] = self.criterion(self.net(x), y)
            grads[task] = [g.detach().clone() for g in torch.autograd.grad(losses[task], params, retain_graph=True)]
        # MGDA, two tasks, 'loss' normalisation, per-layer dot products on the host
        scaled = {t: [g / (min(losses[t].item(), 10.0) + 1e-5) for g in grads[t]] for t in grads}
        a, b = scaled["backdoor"], scaled["normal"]
        aa = sum(torch.dot(x.view(-1), x.view(-1)).item() for x in a)
        ab = sum(torch.dot(x.view(-1), y.view(-1)).item() for x, y in zip(a, b))
        bb = sum(torch.dot(y.view(-1), y.view(-1)).item() for y in b)
        c = 0.999 if ab >= aa else 0.001 if ab >= bb else (bb - ab) / (aa + bb - 2 * ab)
        loss = c * losses["backdoor"] + (1 - c) * losses["normal"]
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def _naive_multikrum(states: list[dict], f: int, m: int) -> dict:
    """Multi-Krum over state_dicts: pairwise squared distances key by key, sum of the
    n - f - 2 nearest, mean of the m best."""
    n = len(states)
    dist = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            d = 0.0
            for k in states[i]:
                d += float(((states[i][k].double() - states[j][k].double()) ** 2).sum())
            dist[i][j] = dist[j][i] = d
    scores = [sum(sorted(dist[i][j] for j in range(n) if j != i)[:n - f - 2]) for i in range(n)]
    chosen = sorted(range(n), key=lambda i: scores[i])[:m]
    return {k: sum(states[i][k].double() for i in chosen) / m for k in states[0]}


def _naive_evaluate(net: nn.Module, loader, device, trigger: Tensor | None, target: int) -> float:
    net.train()  # the reference never switches BatchNorm to eval mode
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in loader:
            inputs, labels = inputs.to(device), labels.to(device)
            if trigger is not None:
                inputs, labels = apply_trigger(inputs, trigger), torch.full_like(labels, target)
            _, predicted = torch.max(net(inputs).data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return correct / total


def _to_uint8(x: Tensor) -> np.ndarray:
    """[N, 1, H, W] float images in [0, 1] (exactly k/255) back to uint8 [N, H, W]."""
    return (x.cpu() * 255).round().to(torch.uint8).squeeze(1).numpy()


class NaiveRound:
    """The round in the reference code's style (see the module docstring)."""

    def __init__(self, cfg, data, selected, malicious, client_idx, global_state, device, eval_idx):
        self.cfg, self.device = cfg, device
        model_name = config.resolve_model(cfg)
        train = _PILImages(_to_uint8(data.train_x), data.train_y.cpu().numpy())
        test_x, test_y = data.test_x[eval_idx], data.test_y[eval_idx]
        self.test_loader = torch.utils.data.DataLoader(_PILImages(_to_uint8(test_x), test_y.cpu().numpy()),
                                                       batch_size=cfg.eval.batch, shuffle=False)
        self.clients = [_NaiveClient(c, client_idx[c].tolist(), train, c in malicious, cfg, device, model_name)
                        for c in selected]
        self.global_net = _reference_layout(build_model(model_name)).to(device)
        self.global_net.load_state_dict(global_state)
        opts = cfg.options("backdoor")
        self.target = opts.target
        self.trigger = trigger_values(cfg.dataset, opts.trigger, data.mean, data.std).to(device)
        self.leadfl = cfg.options("leadfl")
        self.krum = cfg.options("multikrum")

    def run(self) -> dict:
        dev = self.device
        times = {"benign": 0.0, "malicious": 0.0}
        steps = {"benign": 0, "malicious": 0}
        states = []
        with _Clock(dev) as c_train:
            for client in self.clients:
                with _Clock(dev) as c:
                    state, k = client.train(self.global_net.state_dict(), self.trigger, self.target, self.leadfl)
                states.append(state)
                kind = "malicious" if client.malicious else "benign"
                times[kind] += c.s
                steps[kind] += k
        with _Clock(dev) as c_agg:
            new = _naive_multikrum(states, self.krum.f, self.krum.m)
            self.global_net.load_state_dict({k: v.to(self.global_net.state_dict()[k].dtype) for k, v in new.items()})
        with _Clock(dev) as c_eval:
            main = _naive_evaluate(self.global_net, self.test_loader, dev, None, self.target)
            backdoor = _naive_evaluate(self.global_net, self.test_loader, dev, self.trigger, self.target)
        return {**_phases(c_train, c_agg, c_eval),
                "ms_per_step": {k: 1000 * times[k] / max(steps[k], 1) for k in times},
                "main_acc": main, "backdoor_acc": backdoor}

    def warm_up(self) -> None:
        """A couple of steps of each kind of client, so one-time initialisation is not timed."""
        dev = self.device
        x, y = next(iter(self.clients[0].loader))
        x, y = x.to(dev), y.to(dev)
        for client in (next(c for c in self.clients if c.malicious), next(c for c in self.clients if not c.malicious)):
            saved = copy.deepcopy(client.net.state_dict()), copy.deepcopy(client.optimizer.state_dict())
            if client.malicious:
                client._backdoor_step(x, y, self.trigger, self.target)
            else:
                pw, pg = client._benign_step(0, x, y, self.leadfl, None, None)
                client._benign_step(1, x, y, self.leadfl, pw, pg)
            client.net.load_state_dict(saved[0])
            client.optimizer.load_state_dict(saved[1])


# ----------------------------------------------------------------------------- our round


def _phases(train: _Clock, agg: _Clock, ev: _Clock) -> dict:
    out = {}
    for suffix, attr in (("s", "s"), ("cpu_s", "cpu")):
        t, a, e = getattr(train, attr), getattr(agg, attr), getattr(ev, attr)
        out.update({f"train_{suffix}": t, f"aggregate_{suffix}": a, f"eval_{suffix}": e, f"round_{suffix}": t + a + e})
    return out


def _client_states(cfg, ids) -> dict[int, ClientState]:
    """Client states seeded as :func:`flcore.sim.engine.simulate` seeds them."""
    return {r: ClientState(None, torch.Generator(device="cpu").manual_seed(client_seed(cfg.seed, int(r))))
            for r in ids}


def _cut(run: Run, samples_per_client: int | None) -> Run:
    """``run`` with its clients cut to their first ``samples_per_client`` images where given
    (the ``tiny`` size)."""
    if samples_per_client:
        run.client_idx = {r: v[:samples_per_client] for r, v in run.client_idx.items()}
    return run


def _engine_run(sim: Simulation, cfg, samples_per_client: int | None) -> Run:
    """A fresh run of ``cfg`` in the simulation ``sim`` (:meth:`flcore.sim.engine.Simulation.new_run`),
    cut as :func:`_cut`."""
    return _cut(sim.new_run(cfg), samples_per_client)


def _our_round(sim: Simulation, run: Run, batched: bool) -> dict:
    """Round 0 of ``run`` through the steps of :class:`flcore.sim.engine.Simulation`, as
    :func:`flcore.sim.engine.simulate` runs them: selection, local training (``batched``: the
    rows that can share a step as one group; else one client after another, each timed),
    attack and aggregation, evaluation, the round's record. Per-phase times; the batched round
    stops after the training (aggregation and evaluation are the same work as the loop's)."""
    dev, cfg = sim.device, run.cfg
    t0 = time.perf_counter()
    [rows] = sim.select(0, [run])
    times = {"benign": 0.0, "malicious": 0.0}
    steps = {"benign": 0, "malicious": 0}
    with _Clock(dev) as c_train:
        if batched:
            new_ws = sim.train(rows, batched=True)
        else:
            out = []
            for row in rows:
                with _Clock(dev) as t:
                    out.append(sim.train([row], batched=False))
                kind = "malicious" if row.malicious else "benign"
                times[kind] += t.s
                steps[kind] += cfg.local_epochs * -(-len(row.indices) // cfg.batch_size)
            new_ws = torch.cat(out)
    res = {"train_s": c_train.s, "train_cpu_s": c_train.cpu, "new_ws": new_ws}
    if batched:
        return res
    with _Clock(dev) as c_agg:
        recs = sim.aggregate(0, [run], [rows], new_ws)
    with _Clock(dev) as c_eval:
        metrics = sim.evaluate(0, [run])
    [rec] = sim.close(0, [run], recs, metrics, t0)
    res.update(**_phases(c_train, c_agg, c_eval),
               ms_per_step={k: 1000 * times[k] / max(steps[k], 1) for k in times},
               main_acc=rec["main_acc"], backdoor_acc=rec["backdoor_acc"])
    return res


# ----------------------------------------------------------------------------- where the time goes

#: Operator categories of :func:`op_breakdown`, by substring of the ATen operator name
#: (the first match wins; self time of each operator, so nothing is counted twice).
OP_CATEGORIES = (
    ("conv backward", ("convolution_backward",)),
    ("conv forward", ("convolution",)),
    ("batch norm", ("batch_norm",)),
    ("max pool", ("max_pool",)),
    ("relu", ("threshold_backward", "clamp_min", "relu")),
    ("linear", ("addmm", "aten::mm", "aten::bmm")),
    ("copies and fills", ("copy_", "fill_", "zero_", "aten::empty", "contiguous", "aten::clone")),
)


def categorise(op: str) -> str:
    """The :data:`OP_CATEGORIES` name of an ATen operator, else ``element-wise and other``."""
    for name, needles in OP_CATEGORIES:
        if any(n in op for n in needles):
            return name
    return "element-wise and other"


def op_breakdown(fn, device: torch.device) -> dict:
    """Where ``fn``'s time goes: the share of each operator category (self time, by
    :mod:`torch.profiler`) of the wall time of ``fn``, plus ``outside operators`` (Python,
    autograd bookkeeping and profiler overhead: wall time not inside any operator)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        with _Clock(device) as clock:
            fn()
    totals: dict[str, float] = {}
    for ev in prof.key_averages():
        t = ev.self_device_time_total if device.type == "cuda" else ev.self_cpu_time_total
        cat = categorise(ev.key)
        totals[cat] = totals.get(cat, 0.0) + t / 1e6
    wall = clock.s
    shares = {k: round(v / wall, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    shares["outside operators"] = round(max(0.0, 1 - sum(totals.values()) / wall), 4)
    return {"wall_s": round(wall, 3), "shares": shares}


# ----------------------------------------------------------------------------- the benchmark


def bench(quick: bool = False, device: str = "auto", *, size: str | None = None, threads: int | None = 1) -> dict:
    """Run the benchmark (see the module docstring); return its record.

    ``size``: ``full`` (default), ``quick`` (what ``quick=True`` selects) or
    ``tiny`` (two steps per client and 500 test images, for tests only).
    ``threads``: CPU intra-op threads (None keeps torch's setting).
    """
    size = size or ("quick" if quick else "full")
    dev = pick_device(device)
    return _on_threads(threads, dev, lambda: _bench(size, SIZES[size], dev))


def _on_threads(threads: int | None, dev: torch.device, fn):
    """``fn()`` with ``threads`` CPU intra-op threads on a CPU (None keeps torch's setting)."""
    old_threads = torch.get_num_threads()
    if threads is not None and dev.type == "cpu":
        torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(old_threads)


def _bench(size: str, spec: dict, dev: torch.device) -> dict:
    t_start = time.perf_counter()
    thp_alloc = os.environ.get("THP_MEM_ALLOC_ENABLE", "0")  # as torch started (the setup's memory.tune sets it)
    cfg = config.load(None, {"dataset": "fmnist", "schedule": "paper", "attack": "backdoor",
                             "client_defense": "leadfl", "leadfl.variant": "code", "aggregator": "multikrum",
                             "local_epochs": spec["local_epochs"], "eval.test_samples": spec["test_samples"]})
    peak_wall, peak_cpu = attainable_gflops(dev)

    # ---- the engine's setup (simulate's): data, network, trainer; a probe run for the round's setting
    sim = Simulation([cfg], dev, rounds=1, executor="loop")
    data, flat, trainer = sim.data, sim.flat, sim.trainer
    probe = _cut(sim.runs[0], spec["samples_per_client"])
    global_w, client_idx, mal, sets = probe.global_w, probe.client_idx, probe.mal, probe.sets
    flat.w.copy_(global_w)
    global_state = {k: v.detach().clone() for k, v in flat.module.state_dict().items()}
    sim.select(0, [probe])
    selected = probe.selected
    n_eval = len(sets["main"][1])
    # the test images of the evaluation subset, chosen as eval_sets chooses them
    perm = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(EVAL_SUBSET_SEED))
    eval_idx = perm[:n_eval].sort().values if n_eval < len(data.test_y) else torch.arange(n_eval)

    # ---- FLOPs of one step of each kind, and of the evaluation (exact per sample)
    bs = cfg.batch_size
    x, y = data.train_x[:bs], data.train_y[:bs]
    w0 = flat.w.clone()
    step_flops = count_flops(lambda: torch.nn.functional.cross_entropy(flat.module(x), y).backward())
    eval_batch = min(cfg.eval.batch, n_eval)
    with torch.no_grad():
        eval_flops_batch = count_flops(lambda: flat.module(data.test_x[:eval_batch]))
    flat.w.copy_(w0)
    per_sample = {"train_fwd_bwd": step_flops / bs, "eval_fwd": eval_flops_batch / eval_batch}
    samples = {c: cfg.local_epochs * len(client_idx[c]) for c in selected}
    train_flops = sum(per_sample["train_fwd_bwd"] * samples[c] * (2 if c in mal else 1) for c in selected)
    eval_flops = per_sample["eval_fwd"] * n_eval * 2  # main and triggered sets
    round_flops = train_flops + eval_flops

    # ---- warm-up (one-time initialisation of kernels is not part of the round)
    scratch = _client_states(cfg, [0])[0]
    few = client_idx[selected[0]][:2 * bs]
    trainer.train(global_w, few, scratch, False, cfg.lr)
    trainer.train(global_w, few, scratch, True, cfg.lr)
    evaluate(flat, cfg, sets["main"][0][:eval_batch], sets["main"][1][:eval_batch])

    # ---- ours: the engine's round, clients one after another (what every run uses)
    ours = _our_round(sim, _engine_run(sim, cfg, spec["samples_per_client"]), batched=False)
    # plain benign steps (no defense) of the first benign client, for the per-step table
    cfg_plain = config.load(None, {"dataset": cfg.dataset, "client_defense": "none", "local_epochs": 1})
    plain = Trainer(cfg_plain, flat, data)
    benign0 = next(c for c in selected if c not in mal)
    with _Clock(dev) as c_plain:
        plain.train(global_w, client_idx[benign0], _client_states(cfg, [benign0])[benign0], False, cfg.lr)
    plain_steps = -(-len(client_idx[benign0]) // bs)

    # ---- ours: the engine's round with batched rows (training only; aggregation and evaluation
    # are the same work)
    batched = _our_round(sim, _engine_run(sim, cfg, spec["samples_per_client"]), batched=True)
    batched_diff = float((batched["new_ws"] - ours["new_ws"]).abs().max())

    # ---- where the time of our round goes: a LeadFL client, a malicious client, one evaluation batch
    benign_c = next(c for c in selected if c not in mal)
    mal_c = next((c for c in selected if c in mal), benign_c)
    part = client_idx[benign_c][:min(len(client_idx[benign_c]), 20 * bs)]
    breakdown = {
        "leadfl_client": op_breakdown(lambda: trainer.train(global_w, part, scratch, False, cfg.lr), dev),
        "malicious_client": op_breakdown(lambda: trainer.train(global_w, part, scratch, mal_c in mal, cfg.lr), dev),
        "eval_batch": op_breakdown(lambda: evaluate(flat, cfg, sets["main"][0][:eval_batch],
                                                    sets["main"][1][:eval_batch]), dev),
    }

    # ---- naive
    naive_round = NaiveRound(cfg, data, selected, mal, {c: client_idx[c].cpu() for c in selected}, global_state,
                             dev, eval_idx)
    naive_round.warm_up()
    naive = naive_round.run()

    # the attainable rate again at the end; the best of both (other work on a shared
    # machine can only lower a measurement, so the best is the nearest to the truth)
    peak_wall, peak_cpu = (max(a, b) for a, b in zip((peak_wall, peak_cpu), attainable_gflops(dev, repeats=3)))

    def eff(seconds: float, rate: float) -> float:
        return round_flops / (rate * 1e9) / seconds

    batched_round = {"s": batched["train_s"] + ours["aggregate_s"] + ours["eval_s"],
                     "cpu_s": batched["train_cpu_s"] + ours["aggregate_cpu_s"] + ours["eval_cpu_s"]}
    n_steps = {c: cfg.local_epochs * -(-len(client_idx[c]) // bs) for c in selected}
    r3 = lambda v: round(v, 3)  # noqa: E731

    def timing_figures(unit: str, peak: float) -> dict:
        """Round and phase times, speedups, FLOP efficiencies and eval share, all from one
        kind of time: ``unit`` ``"s"`` (wall clock) or ``"cpu_s"`` (this process's CPU time)."""
        phases = ("train", "aggregate", "eval")
        o, n, b = ours[f"round_{unit}"], naive[f"round_{unit}"], batched_round[unit]
        return {"round_s": {"ours": r3(o), "batched": r3(b), "naive": r3(n)},
                "phases_s": {"ours": {k: r3(ours[f"{k}_{unit}"]) for k in phases},
                             "batched": {"train": r3(batched[f"train_{unit}"])},
                             "naive": {k: r3(naive[f"{k}_{unit}"]) for k in phases}},
                "speedup_vs_naive": r3(n / o), "speedup_batched_vs_naive": r3(n / b),
                "flop_efficiency": round(eff(o, peak), 4), "flop_efficiency_batched": round(eff(b, peak), 4),
                "flop_efficiency_naive": round(eff(n, peak), 4),
                "eval_share": round(ours[f"eval_{unit}"] / o, 4)}
    record = {
        "benchmark": "LeadFL round 0, Fashion-MNIST, paper protocol" + ("" if size == "full" else f" ({size})"),
        "size": size,
        "config": {"dataset": cfg.dataset, "model": config.resolve_model(cfg), "selected": selected,
                   "malicious": [c for c in selected if c in mal], "local_epochs": cfg.local_epochs,
                   "batch_size": bs, "steps_per_client": sorted(set(n_steps.values())),
                   "client_defense": "leadfl (code)", "aggregator": "multikrum (full state)",
                   "eval_images": 2 * n_eval, "eval_batch": cfg.eval.batch, "eval_bn": cfg.eval.bn},
        "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "thp_alloc": thp_alloc,
        "attainable_gflops_fp32": r3(peak_wall),
        "flops": {"per_sample_train_fwd_bwd": per_sample["train_fwd_bwd"],
                  "per_sample_eval_fwd": per_sample["eval_fwd"],
                  "train": train_flops, "eval": eval_flops, "round": round_flops},
        **timing_figures("s", peak_wall),
        "ms_per_step": {"benign": r3(1000 * c_plain.s / plain_steps),
                        "leadfl": r3(ours["ms_per_step"]["benign"]),
                        "malicious": r3(ours["ms_per_step"]["malicious"]),
                        "batched_per_client_step": r3(1000 * batched["train_s"] / sum(n_steps.values())),
                        "naive_leadfl": r3(naive["ms_per_step"]["benign"]),
                        "naive_malicious": r3(naive["ms_per_step"]["malicious"])},
        "eval_share_naive": round(naive["eval_s"] / naive["round_s"], 4),
        "accuracy": {"ours": {"main": ours["main_acc"], "backdoor": ours["backdoor_acc"]},
                     "naive": {"main": naive["main_acc"], "backdoor": naive["backdoor_acc"]}},
        "batched_vs_loop_max_abs_diff": batched_diff,
        "time_breakdown": breakdown,
    }
    if dev.type == "cpu":
        # the same figures by this process's CPU time: robust to other work on a shared machine
        record["cpu_time"] = {"attainable_gflops_fp32": r3(peak_cpu), **timing_figures("cpu_s", peak_cpu)}
    record["total_s"] = round(time.perf_counter() - t_start, 2)
    return record


# ----------------------------------------------------------------------------- aggregation rules at n = 36

#: Options of each rule at the official PoisonedFL scale (36 updates per round, 6 of them fakes).
AGGREGATOR_OPTIONS = {
    "fedavg": None, "krum": {"f": 6}, "multikrum": {"f": 6, "m": 30}, "bulyan_reference": {},
    "bulyan": {"f": 6}, "median": {}, "trimmed_mean": {"beta": 0.1}, "norm_clip": {},
    "sparsefed": {}, "prodigy": {"f": 6},
}


def _aggregator_round(n: int, d: int, n_fake: int, seed: int) -> Tensor:
    """Float32 updates shaped like a PoisonedFL round: genuine updates around a common
    direction, then ``n_fake`` identical fakes far from them."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(d, generator=g) * 1e-3
    x = common + 3e-3 * torch.randn(n, d, generator=g)
    x[n - n_fake:] = -8 * x[:n - n_fake].mean(0)
    return x.contiguous()


def _best_ms(fn, repeats: int) -> float:
    fn()  # warm-up: first calls initialise kernels and allocate
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return round(1000 * best, 2)


def bench_aggregators(n: int = 36, d: int = 139_960, n_fake: int = 6, repeats: int = 5, seed: int = 0,
                      threads: int | None = 1) -> dict:
    """Milliseconds per call of every aggregation rule (best of ``repeats``) on float32
    updates of a PoisonedFL-shaped round, and the distances of Multi-Krum and ProDiGy
    by direct differences (the former method) against the Gram matrix, in the same run.

    ``rounding``: the largest difference between the current rules and the same rules
    on direct-difference distances (selections must be equal; ProDiGy's weights and
    aggregate may differ by rounding only).
    """
    from flcore.methods import aggregators as agg

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        x = _aggregator_round(n, d, n_fake, seed)
        f = AGGREGATOR_OPTIONS["multikrum"]["f"] if n == 36 else max(1, (n - 3) // 4)
        opts = dict(AGGREGATOR_OPTIONS)
        if n != 36:
            opts.update(krum={"f": f}, multikrum={"f": f, "m": n - f}, bulyan={"f": f},
                        prodigy={"f": max(2, min(f, (n - 1) // 2))}, bulyan_reference={"nearest": min(6, n - 1)})
        ms = {name: _best_ms(lambda: agg.aggregate(name, x, opts=o, state={}), repeats) for name, o in opts.items()}
        mk_f, mk_m = opts["multikrum"]["f"], opts["multikrum"]["m"]
        pf = opts["prodigy"]["f"]

        def multikrum_direct():
            order, _ = agg._krum_ranking(agg.Distances.direct(x), n - mk_f - 2, ())
            w = agg._selection_weights(n, order[:mk_m], x)
            return agg.weighted_sum(x, w), w

        def prodigy_direct():
            sigma, mu, prox = agg._prodigy_terms_direct(x, pf)
            trust = agg._trust(agg._dis(sigma, mu), prox)
            s = torch.where(trust <= torch.sort(trust).values[pf - 1], torch.zeros_like(trust), trust)
            w = s / s.sum()
            return agg.weighted_sum(x, w), w.to(torch.float32)

        distances = {"direct_ms": _best_ms(lambda: agg.pairwise_sq_dists_direct(x), repeats),
                     "gram_ms": _best_ms(lambda: agg.gram_sq_dists(x), repeats)}
        old = {"multikrum": _best_ms(multikrum_direct, repeats), "prodigy": _best_ms(prodigy_direct, repeats)}
        mk_new, mk_old = agg.aggregate("multikrum", x, opts=opts["multikrum"]), multikrum_direct()
        pd_new, pd_old = agg.aggregate("prodigy", x, opts=opts["prodigy"]), prodigy_direct()
        direct = agg.pairwise_sq_dists_direct(x)
        gram = agg.gram_sq_dists(x)
        rounding = {
            "distances_max_rel": float(((gram.sq - direct).abs() / direct.clamp(min=1e-300)).max()),
            "multikrum_same_clients": bool(torch.equal(mk_new[1] > 0, mk_old[1] > 0)),
            "multikrum_aggregate_max_abs": float((mk_new[0] - mk_old[0]).abs().max()),
            "prodigy_same_zeroed": bool(torch.equal(pd_new[1] == 0, pd_old[1] == 0)),
            "prodigy_weights_max_abs": float((pd_new[1] - pd_old[1]).abs().max()),
            "prodigy_aggregate_max_abs": float((pd_new[0] - pd_old[0]).abs().max()),
        }
        return {"benchmark": f"aggregation rules, n = {n}, d = {d} (float32, {n_fake} identical fakes)",
                "n": n, "d": d, "threads": torch.get_num_threads(), "torch": torch.__version__,
                "device": "cpu", "device_name": _cpu_name(), "options": opts, "ms_per_call": ms,
                "distances": distances,
                "direct_vs_gram": {name: {"direct_ms": old[name], "gram_ms": ms[name],
                                          "speedup": round(old[name] / ms[name], 2)} for name in old},
                "rounding": rounding}
    finally:
        torch.set_num_threads(old_threads)


# ----------------------------------------------------------------------------- memory layout


def bench_layout(dataset: str = "fmnist", repeats: int = 8, threads: int | None = 1) -> dict:
    """The engine's own local training and evaluation with the networks channels-last (as every
    run computes, :data:`flcore.methods.models.MEMORY_FORMAT`) against the same networks in NCHW, in one
    process, interleaved (so a change of the machine's load hits both alike): one benign epoch
    (LeadFL, 38 steps of batch 16) and one malicious epoch of a paper-protocol client, and one
    evaluation of 2,000 test images. Medians of ``repeats``; ``ratio`` = channels-last / NCHW."""
    from flcore.sim.data import load_dataset

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        cfg = config.load(None, [f"dataset={dataset}", "local_epochs=1", "client_defense=leadfl"])
        model = config.resolve_model(cfg)
        data = load_dataset(dataset, "cpu")
        client = split_clients(cfg, len(data.train_y), data.train_y)[3]
        xs, ys = eval_sets(cfg, data, "cpu")["main"]
        xs, ys = xs[:2000], ys[:2000]
        layouts = {}
        for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
            flat = FlatModel(build_model(model).to(memory_format=fmt), "cpu")
            layouts[name] = (flat, Trainer(cfg, flat, data), flat.w.clone())

        def train(name, malicious):
            flat, trainer, w0 = layouts[name]
            trainer.train(w0, client, ClientState(None, torch.Generator().manual_seed(1)), malicious, cfg.lr)

        def evaluation(name):
            flat, _, w0 = layouts[name]
            flat.w.copy_(w0)
            evaluate(flat, cfg, xs, ys)

        work = {"benign_epoch": lambda n: train(n, False), "malicious_epoch": lambda n: train(n, True),
                "eval_2000": evaluation}
        times = {(n, k): [] for n in layouts for k in work}
        for rep in range(repeats + 1):
            for n in layouts:
                for k, fn in work.items():
                    t0 = time.perf_counter()
                    fn(n)
                    if rep:  # the first pass warms up
                        times[(n, k)].append(time.perf_counter() - t0)
        med = {key: float(np.median(v)) for key, v in times.items()}
        return {"benchmark": f"memory layout of {model} in the engine (one client, batch {cfg.batch_size})",
                "threads": torch.get_num_threads(), "torch": torch.__version__, "device_name": _cpu_name(),
                "repeats": repeats,
                "ms": {n: {k: round(1000 * med[(n, k)], 1) for k in work} for n in layouts},
                "ratio": {k: round(med[("channels_last", k)] / med[("nchw", k)], 3) for k in work}}
    finally:
        torch.set_num_threads(old_threads)


# ----------------------------------------------------------------------------- one official-scale PoisonedFL round


def official_poisonedfl_config(overrides: dict | None = None):
    """The ProDiGy-under-PoisonedFL configuration of ``params/poisonedfl_official.yaml`` (seed 0),
    with ``overrides`` (dotted keys) on top."""
    from flcore.experiments import sweep

    path = ROOT / "params" / "poisonedfl_official.yaml"
    cfg = next(c for c in sweep.expand(path) if c.aggregator == "prodigy" and c.attack == "poisonedfl"
               and c.seed == 0 and c.options("prodigy").f == 6 and c.options("poisonedfl") == c.options("poisonedfl").__class__(fake_clients=240)
               and c.lr_decay.kind == "constant")
    if overrides:
        cfg = config.from_dict(_with_overrides(cfg.to_dict(), overrides))
    return cfg


def _with_overrides(tree: dict, overrides: dict) -> dict:
    tree = copy.deepcopy(tree)
    for key, value in overrides.items():
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def bench_poisonedfl(rounds: int = 6, overrides: dict | None = None, threads: int | None = 1,
                     profile_rounds: int = 0, device: str = "cpu", executor: str | None = None) -> dict:
    """Time of one official-scale PoisonedFL round against ProDiGy, measured with the engine's
    own round (:func:`flcore.sim.engine.simulate` for ``rounds`` rounds), and the extrapolated
    time of the whole run.

    simulate evaluates round 0 and the last round; the rounds in between are plain rounds
    (local training of the 30 genuine clients, the 6 fakes, ProDiGy, the attack's
    bookkeeping). ``round_s`` = median of the plain rounds; ``eval_s`` = median wall time of
    the evaluated rounds minus ``round_s``; ``aggregation_ms`` = the ProDiGy calls of the
    plain rounds, timed inside the same run. The extrapolation: setup + R rounds +
    (evaluations: every ``eval.every`` rounds and the last) x ``eval_s``.
    ``profile_rounds`` > 0 adds a :func:`op_breakdown` of that many more rounds (CPU).
    On a GPU (``device``) the round's clients train as batched rows (``executor`` batched: the
    genuine clients of equal number of batches in one group, :class:`flcore.sim.engine.Rows`), on a
    CPU one after another (``loop``, as the runs of the CPU store); ``executor`` overrides it.
    """
    import dataclasses
    import statistics

    from flcore.sim.engine import simulate

    from flcore.sim.engine import pick_device

    cfg = official_poisonedfl_config(overrides)
    dev = pick_device(device)
    executor = executor or ("batched" if dev.type == "cuda" else "loop")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    method = registry.get("aggregator", cfg.aggregator)
    agg_s: list[float] = []

    def timed(*args):
        t0 = time.perf_counter()
        out = method.fn(*args)
        _sync(dev)
        agg_s.append(time.perf_counter() - t0)
        return out

    registry.REGISTRY["aggregator"][cfg.aggregator] = dataclasses.replace(method, fn=timed)
    try:
        t0 = time.perf_counter()
        res = simulate(cfg, device=dev, progress=False, rounds=rounds, executor=executor)
        _sync(dev)
        total = time.perf_counter() - t0
        breakdown = None
        if profile_rounds and dev.type == "cpu":
            breakdown = op_breakdown(lambda: simulate(cfg, device="cpu", progress=False, rounds=profile_rounds),
                                     torch.device("cpu"))
    finally:
        registry.REGISTRY["aggregator"][cfg.aggregator] = method
        torch.set_num_threads(old_threads)
    recs = res["rounds"]
    floor = poisonedfl_flop_floor(cfg, dev, threads)
    walls = [r["wall_s"] for r in recs]
    plain = [r["wall_s"] for r in recs[1:-1] if r.get("main_acc") is None] or walls
    round_s = statistics.median(plain)
    evals = [r["wall_s"] for r in recs if r.get("main_acc") is not None]
    eval_s = max(0.0, statistics.median(evals) - round_s)
    setup_s = total - sum(walls)
    R, every = cfg.rounds, cfg.eval.every
    n_evals = len(range(0, R, every)) + (0 if (R - 1) % every == 0 else 1)
    agg_plain = [a for a, r in zip(agg_s, recs) if r.get("main_acc") is None][1:] or agg_s
    full_s = setup_s + R * round_s + n_evals * eval_s
    return {"benchmark": "one official-scale PoisonedFL round against ProDiGy (engine's own round)",
            "config": {"clients": cfg.clients, "clients_per_round": cfg.clients_per_round,
                       "fake_clients": cfg.options("poisonedfl").fake_clients,
                       "fakes_per_round": sorted({r["fake_clients"] for r in recs}),
                       "local_epochs": cfg.local_epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
                       "split": f"{cfg.split.kind} {cfg.split.bias}", "model": config.resolve_model(cfg),
                       "aggregator": f"prodigy (f = {cfg.options('prodigy').f})", "rounds": R,
                       "eval_every": every, "eval_images": cfg.eval.test_samples, "hash": cfg.hash},
            "threads": threads if threads is not None else torch.get_num_threads(), "torch": torch.__version__,
            "device": dev.type, "executor": executor,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
            "measured_rounds": len(recs),
            "round_wall_s": [round(w, 3) for w in walls],
            "round_s": round(round_s, 3), "eval_s": round(eval_s, 3), "setup_s": round(setup_s, 2),
            "aggregation_ms": round(1000 * statistics.median(agg_plain), 1),
            "aggregation_share": round(statistics.median(agg_plain) / round_s, 4),
            "evaluations": n_evals,
            "extrapolated_run_s": round(full_s, 1), "extrapolated_run_h": round(full_s / 3600, 2),
            **floor, "flop_efficiency": round(floor["flop_floor_round_s"] / round_s, 4),
            "flop_floor_run_s": round(R * floor["flop_floor_round_s"], 1),
            "time_breakdown": breakdown}


def poisonedfl_flop_floor(cfg, dev: torch.device, threads: int | None) -> dict:
    """The FLOP floor of one round's local training at ``cfg``'s scale: the counted FLOPs of a
    training sample (forward and backward, ``torch.utils.flop_counter``, at the run's batch size)
    times the samples a round trains (``clients_per_round x local_epochs`` clients of the mean
    size ``n_train / clients``; the fakes do not train), over the attainable FP32 rate of a matrix
    product on ``dev`` with ``threads`` threads. The aggregation, the attack's bookkeeping and
    the evaluations come on top of it."""
    from flcore.sim.data import load_dataset

    data = load_dataset(cfg.dataset, "cpu")
    net = build_model(config.resolve_model(cfg)).to(dev)
    bs = cfg.batch_size
    x, y = data.train_x[:bs].to(dev), data.train_y[:bs].to(dev)
    per_sample = count_flops(lambda: torch.nn.functional.cross_entropy(net(x), y).backward()) / bs
    samples = cfg.clients_per_round * cfg.local_epochs * len(data.train_y) / cfg.clients
    gflops, _ = _on_threads(threads, dev, lambda: attainable_gflops(dev, repeats=3))
    flops = per_sample * samples
    return {"train_flops_per_sample": int(per_sample), "train_samples_per_round": round(samples, 1),
            "train_gflop_per_round": round(flops / 1e9, 3), "attainable_gflops_fp32": round(gflops, 2),
            "flop_floor_round_s": round(flops / (gflops * 1e9), 4)}


# ----------------------------------------------------------------------------- packs of runs


def bench_pack(runs: int = 8, device: str = "auto", *, size: str = "full", threads: int | None = 1) -> dict:
    """One round of ``runs`` paper-protocol runs computed as a pack (:func:`flcore.sim.engine.simulate_pack`'s
    training: every selected client of every run a row, the rows of equal behaviour batched)
    against the same rows trained one after another (the loop), in the same process.

    The runs are round 0 of Table I's Multi-Krum cells at the paper protocol, cycling through
    the client defenses none, LDP, FL-WBC and LeadFL and the seeds (so a pack holds the
    mixture a sweep packs). ``size`` as :func:`bench` (``tiny``: two steps per client). The
    loop is timed on the rows of the first ``min(runs, 4)`` runs and scaled to all (its cost
    is linear in the rows). Reported: the pack's training seconds, client-steps per second and
    rounds per second (a round of every run), the loop's, their ratio, peak device memory
    (CUDA), and the largest difference between the two results (float rounding)."""
    dev = pick_device(device)
    return _on_threads(threads, dev, lambda: _bench_pack(runs, size, SIZES[size], dev))


def _bench_pack(n_runs: int, size: str, spec: dict, dev: torch.device) -> dict:
    if n_runs < 1:
        raise ValueError(f"runs must be >= 1, got {n_runs}")
    defenses = ("none", "ldp", "flwbc", "leadfl")
    cfgs = [config.load(None, {"dataset": "fmnist", "schedule": "paper", "attack": "backdoor",
                               "client_defense": defenses[i % 4], "aggregator": "multikrum", "seed": i // 4,
                               "local_epochs": spec["local_epochs"], "eval.test_samples": spec["test_samples"]})
            for i in range(n_runs)]
    sim = Simulation(cfgs[:1], dev, rounds=1, executor="batched")  # the engine's setup: data, network, trainer
    sim.runs.clear()  # each plan makes its runs afresh (none kept alive: the peak memory is the rows')
    trainer = sim.trainer

    def plan(k: int = n_runs) -> list:
        """Round 0's rows of the first ``k`` runs (the simulation's selection step), from fresh client states."""
        runs = [_engine_run(sim, cfg, spec["samples_per_client"]) for cfg in cfgs[:k]]
        return [row for rows in sim.select(0, runs) for row in rows]

    # warm-up: kernels, allocator
    warm = plan(1)
    trainer.train_rows(warm[:2], batched=True)
    trainer.train_row(warm[0])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rows = plan()
    with _Clock(dev) as c_pack:
        packed = trainer.train_rows(rows, batched=True)
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    n_loop_runs = min(n_runs, 4)
    loop_rows = plan(n_loop_runs)
    with _Clock(dev) as c_loop:
        looped = torch.stack([trainer.train_row(r) for r in loop_rows])
    loop_s = c_loop.s * len(rows) / len(loop_rows)
    steps = sum(r.cfg.local_epochs * -(-len(r.indices) // r.cfg.batch_size) * (2 if r.malicious else 1)
                for r in rows)
    r3 = lambda v: round(v, 3)  # noqa: E731
    return {"benchmark": f"round 0 of {n_runs} paper-protocol runs as one pack, Fashion-MNIST"
                         + ("" if size == "full" else f" ({size})"),
            "size": size, "runs": n_runs, "rows": len(rows), "groups": len(group_rows(rows, True)),
            "client_defenses": sorted({c.client_defense for c in cfgs}),
            "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "train_s": {"pack": r3(c_pack.s), "loop": r3(loop_s), "loop_measured_runs": n_loop_runs},
            "client_steps_per_s": {"pack": r3(steps / c_pack.s), "loop": r3(steps / loop_s)},
            "rounds_per_s": {"pack": r3(1 / c_pack.s), "loop": r3(1 / loop_s)},
            "speedup_pack_vs_loop": r3(loop_s / c_pack.s),
            "peak_memory_gib": None if peak is None else r3(peak / 2**30),
            "pack_vs_loop_max_abs_diff": float((packed[:len(loop_rows)] - looped).abs().max())}
