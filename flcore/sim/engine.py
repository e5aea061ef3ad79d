"""The round loop: selection, local training, attacks, aggregation, evaluation.

Read top to bottom: the flat state layout; the one training path, :class:`Rows` (C client
rows trained in lockstep; the per-client loop is C = 1) and :class:`Trainer` (which groups a
round's rows); evaluation; a run's :class:`Selection` (schedule and attack) and its server,
:class:`Run`; :class:`Simulation`, the named steps of several runs in lockstep (setup; per
round selection, local training, attack and aggregation, evaluation); then :func:`simulate`
(the rounds of one run) and :func:`simulate_pack` (several runs, their rows trained together),
which loop over :meth:`Simulation.round`.

Attacks. The engine knows no attack by name: each run asks its attack object
(``registry.get("attack", cfg.attack)``, the protocol of :mod:`flcore.methods.attacks`) which
clients train maliciously and how, and what its fake clients send.

Flat state. The global model is one float vector laid out as
``[parameters (P) | BN running statistics (B) | BN batch counters (K)]`` (each parameter
in its memory order: convolution weights channels-last, see :class:`FlatModel`). The
working network's parameters and buffers are *views* into one such vector, so
loading a client's starting point is one copy, a momentum-SGD step is two
vector operations, and a client's update is a vector difference. The counters
stand for BatchNorm's ``num_batches_tracked`` (one per BN layer, counted by the
trainer: one per training forward pass), which the reference aggregates and
puts into Multi-Krum's distances.

Updates are deltas (client state minus global state) in a [clients x d] tensor;
the aggregator returns a delta that the server adds with ``server_lr``. With
``aggregate_state: full`` (reference) d covers the whole state, with
``trainable`` only the parameters (BN statistics are then averaged over all
selected clients).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from flcore.core import registry
from flcore.methods.attacks import Attack, AttackContext, apply_trigger, trigger_values
from flcore.core.config import Config, resolve_model
from flcore.core.constants import EVAL_SUBSET_SEED, client_seed
from flcore.core.errors import ConfigError
from flcore.sim.data import Dataset, augment_draws, augment_rows, load_dataset, padding_fill
from flcore.sim import memory
from flcore.methods.models import build_model
from flcore.methods.schedules import malicious_set


#: Version of the engine's numbers. Bump it in the commit that changes any stored number of a run at
#: rounding level or above (operation order, a reduction, a random draw, a default), so that
#: ``flcore verify`` can say that a stored run comes from an engine that computes differently.
#: Every new run records it in its provenance (``engine_numerics``); runs without it are version 1.
#: Version 2: the networks compute channels-last, and convolution weights lie in the flat state
#: in that order (:class:`FlatModel`), which changes results at float32 rounding; and the
#: non-target backdoor accuracy is read off the backdoor pass (:func:`evaluate_sets`) instead of
#: a third train-mode pass, which updated the BatchNorm statistics and counters of the global
#: model once more than the reference does.
ENGINE_NUMERICS = 2


# ----------------------------------------------------------------------------- flat state


def memory_order(t: Tensor) -> tuple[int, ...]:
    """The dimensions of ``t`` in the order its elements lie in memory: ``(0, 2, 3, 1)`` for a
    4-D channels-last tensor (O, H, W, I), else ``(0, 1, ...)``."""
    if t.dim() == 4:
        n, c, h, w = t.shape
        if t.stride() == (h * w * c, 1, w * c, c):  # exactly (also where c == 1 leaves it ambiguous)
            return (0, 2, 3, 1)
    if not t.is_contiguous():
        raise ValueError(f"a parameter of strides {t.stride()} is neither contiguous nor channels-last")
    return tuple(range(t.dim()))


@dataclass(frozen=True)
class Segment:
    """Where one parameter tensor lies in the flat vector: ``n`` entries from ``off``, in the
    tensor's memory order ``order`` (its dimensions as stored, see :func:`memory_order`)."""

    name: str
    shape: tuple[int, ...]
    off: int
    n: int
    order: tuple[int, ...]

    def view(self, vec: Tensor) -> Tensor:
        """The tensor (shape ``[..., *shape]``) as a view of ``vec``'s last dimension (``[..., P]``)."""
        lead = vec.shape[:-1]
        stored = vec[..., self.off:self.off + self.n].view(*lead, *(self.shape[d] for d in self.order))
        inverse = sorted(range(len(self.order)), key=self.order.__getitem__)
        return stored.permute(*range(len(lead)), *(len(lead) + d for d in inverse))

    def flatten(self, t: Tensor) -> Tensor:
        """``t`` (shape ``shape``) as the segment's ``n`` entries (the inverse of :meth:`view`)."""
        return t.permute(*self.order).reshape(-1)


def param_segments(module: nn.Module) -> list[Segment]:
    """The :class:`Segment` of each parameter of ``module``, in ``named_parameters`` order."""
    out, off = [], 0
    for name, p in module.named_parameters():
        out.append(Segment(name, tuple(p.shape), off, p.numel(), memory_order(p)))
        off += p.numel()
    return out


class FlatModel:
    """A network whose parameters and floating buffers are views into one vector.

    Each parameter occupies one :class:`Segment`, its entries in the tensor's memory order: the
    convolution weights of the channels-last networks (:data:`flcore.methods.models.MEMORY_FORMAT`) are
    stored as (out, kernel row, kernel column, in), everything else row-major. The layout is
    the same on every device; ``segments`` gives the views (the batched rows of :class:`Rows` and the
    attack-effect analysis use them)."""

    def __init__(self, module: nn.Module, device):
        self.module = module.to(device)
        params = list(module.named_parameters())
        buffers = [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]
        self.bn_layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.P = sum(p.numel() for _, p in params)
        self.B = sum(b.numel() for _, b in buffers)
        self.K = len(self.bn_layers)
        self.d = self.P + self.B + self.K
        self.w = torch.zeros(self.d, device=device)
        self.g = torch.zeros(self.P, device=device)
        self.segments = param_segments(module)
        self.param_segments = [(seg.off, seg.n) for seg in self.segments]
        self.weight_segments = [(seg.off, seg.n) for seg in self.segments if "weight" in seg.name]
        off = self.P
        with torch.no_grad():
            for (_, p), seg in zip(params, self.segments):
                self.w[seg.off:seg.off + seg.n] = seg.flatten(p)
                p.data = seg.view(self.w)
                p.grad = seg.view(self.g)
            for name, b in buffers:
                n = b.numel()
                self.w[off:off + n] = b.reshape(-1)
                owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
                owner._buffers[name.rsplit(".", 1)[-1]] = self.w[off:off + n].view_as(b)
                off += n
        self.counter_slice = slice(self.P + self.B, self.d)
        self.weight_index = torch.cat([torch.arange(o, o + n) for o, n in self.weight_segments]).to(device)

    @property
    def wp(self) -> Tensor:
        return self.w[:self.P]

    def stacked_buffers(self, ws: Tensor) -> dict[str, Tensor]:
        """The floating buffers (BN running statistics) of R flat states ``ws`` [R, d], each a
        contiguous ``[R, *shape]`` copy (vmap updates batched buffers in place only when they
        are contiguous)."""
        out, off = {}, self.P
        for name, b in self.module.named_buffers():
            if b.is_floating_point():
                out[name] = ws[:, off:off + b.numel()].reshape(ws.shape[0], *b.shape).clone()
                off += b.numel()
        assert off == self.P + self.B
        return out

    def stack_states(self, params: Tensor, buffers: dict[str, Tensor], counters: Tensor) -> Tensor:
        """R flat states ``[params | buffers | counters]`` (the inverse of :meth:`stacked_buffers`)."""
        R = params.shape[0]
        return torch.cat([params, *(b.reshape(R, -1) for b in buffers.values()), counters], 1)

    def param_views(self, vec: Tensor) -> dict[str, Tensor]:
        """Every parameter as a view of ``vec`` (``[P]`` or ``[rows, P]``), by name."""
        return {seg.name: seg.view(vec) for seg in self.segments}


# ----------------------------------------------------------------------------- client training


@dataclass
class ClientState:
    """What a client keeps between the rounds it is selected in."""

    momentum: Tensor | None
    gen: torch.Generator


@dataclass
class Row:
    """One client's local training in a round: the run's configuration ``cfg``, the global
    flat state it starts from ``start`` ``[d]``, its training ``indices``, its persistent
    ``state``, its role and the round's learning rate. Rows of several runs (a pack) share a
    :class:`FlatModel` and a dataset."""

    cfg: Config
    start: Tensor
    indices: Tensor
    state: ClientState
    malicious: bool
    lr: float

    def behaviour(self) -> tuple[str, str, object]:
        """The family, name and options of the method that drives this row's training: the
        attack for a malicious row whose attack has a local training
        (:attr:`flcore.methods.attacks.Attack.local_training`), else the client defense."""
        cfg = self.cfg
        if self.malicious and registry.get("attack", cfg.attack).fn.local_training is not None:
            return "attack", cfg.attack, cfg.options(cfg.attack)
        return "client_defense", cfg.client_defense, cfg.options(cfg.client_defense)

    def training(self) -> type:
        """The client behaviour class (:class:`flcore.methods.defenses.ClientBehaviour`) of
        :meth:`behaviour`: the attack's ``local_training`` or the client defense."""
        family, name, _ = self.behaviour()
        fn = registry.get(family, name).fn
        return fn.local_training if family == "attack" else fn

    def group_key(self, ragged: bool = False) -> tuple:
        """Rows with equal keys can share every step (:func:`group_rows`). The sample count is
        part of the key, or with ``ragged`` (and a behaviour that allows it, see
        :func:`ragged_ok`) only the number of batches per epoch: the rows' last batches may
        then differ in size (:class:`Rows` masks the missing samples)."""
        c = self.cfg
        n = len(self.indices)
        size = ("batches", -(-n // c.batch_size)) if ragged and ragged_ok(self) else n
        # the backdoor's options (None without it) stay in the key: benign rows of runs with other
        # options then train in other groups, as they always have (a group's rows round alike)
        return (size, self.behaviour(), self.lr, c.dataset, c.batch_size, c.local_epochs, c.momentum,
                c.options("backdoor"))


def ragged_ok(row: Row) -> bool:
    """Whether ``row``'s behaviour can train beside rows of other sample counts: it declares
    ``ragged = True`` (it changes the rows only through :meth:`Rows.grad` and
    :meth:`Rows.sgd_step`, which mask the missing samples)."""
    return bool(getattr(row.training(), "ragged", False))


def group_rows(rows: list[Row], batched: bool, ragged: bool = False) -> list[list[int]]:
    """Positions of the rows trained together: with ``batched``, the rows of equal
    :meth:`Row.group_key` (same sample count, or with ``ragged`` the same number of batches,
    behaviour and options, learning rate, batch structure); otherwise every row alone (the
    per-client loop)."""
    if not batched:
        return [[i] for i in range(len(rows))]
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row.group_key(ragged), []).append(i)
    return list(groups.values())


class Rows:
    """Local training of C client rows in lockstep: the engine's one training path.

    All rows share the batch structure and the behaviour (a client defense for benign rows,
    the attack for malicious ones, :class:`flcore.methods.defenses.ClientBehaviour`); each row has its
    own start state, data order, random stream (``state.gen``: epoch shuffles, CIFAR-10
    augmentation, noise, drawn in that order), momentum buffer (updated in place) and
    BatchNorm statistics. The per-client loop is the case C = 1, which runs the shared
    network itself, its parameters and buffers views of ``flat.w``; C > 1 runs the C networks
    as one by ``torch.func.vmap`` over ``functional_call`` (grouped convolutions), the
    parameters the rows of one ``[C, P]`` leaf. Everything after the backward pass is
    row-wise vector maths. Results of the two agree to float rounding (the convolutions sum
    in other orders); C = 1 keeps the per-client engine's numbers exactly.

    Reference quirks kept: BatchNorm in train mode during local training; the BN counters
    (+1 per training forward pass: malicious rows make two per step); a client's momentum
    persists across the rounds it is selected in. A row whose loss becomes non-finite is
    flagged (a tensor: no host synchronisation per step) and returned as NaN.

    Ragged rows (sample counts that differ, the same number of batches per epoch: PoisonedFL's
    non-IID split; only for networks without BatchNorm, whose batch statistics the padding
    would change, and behaviours with ``ragged = True``): each row's epoch order is padded to
    the longest, ``mask`` ``[C, b]`` marks a batch's real samples, each row's loss is the mean
    over its real samples and a row without any skips the step (:meth:`sgd_step`), so every
    row computes what it computes alone.
    """

    def __init__(self, flat: FlatModel, data: Dataset, rows: list[Row]):
        self.flat, self.data, self.rows = flat, data, rows
        first = rows[0]
        self.cfg = cfg = first.cfg
        self.lr = first.lr
        self.C = C = len(rows)
        dev = flat.w.device
        P = flat.P
        self.weight_segments, self.param_segments = flat.weight_segments, flat.param_segments
        self.weight_index = flat.weight_index
        self.states = [row.state for row in rows]
        for st in self.states:
            if st.momentum is None:
                st.momentum = torch.zeros(P, device=dev)
        sizes = [len(row.indices) for row in rows]
        self.sizes, self.ragged = sizes, len(set(sizes)) > 1
        if self.ragged and flat.bn_layers:
            raise ValueError("rows of different sample counts cannot share BatchNorm statistics")
        self.mask = self.active = None
        n_max = max(sizes)
        self.indices = torch.stack([F.pad(row.indices.to(dev), (0, n_max - n)) for row, n in zip(rows, sizes)])
        self.valid = ((torch.arange(n_max, device=dev)[None] < torch.tensor(sizes, device=dev)[:, None])
                      .to(flat.w.dtype) if self.ragged else None)                    # [C, n]: 1 = a real sample
        self.diverged = torch.zeros(C, dtype=torch.bool, device=dev)
        self.forwards = 0
        self.augment = cfg.dataset == "cifar10"
        if self.augment:
            self.fill = padding_fill(data.train_x.shape[1], dev, data.train_x.dtype)
        if C == 1:
            flat.w.copy_(first.start)
            self.W = flat.wp.view(1, P)
            self.V = first.state.momentum.view(1, P)
            self._grad = self._grad_module
        else:
            starts = torch.stack([row.start for row in rows])
            self._leaf = starts[:, :P].clone().requires_grad_(True)
            self.W = self._leaf.detach()  # the same storage, for the row-wise maths
            self.V = torch.stack([st.momentum for st in self.states])
            self.counters = starts[:, flat.counter_slice]
            self.buffers = flat.stacked_buffers(starts)  # BN running statistics per row
            module = flat.module
            self._forward = vmap(lambda params, buffers, x: functional_call(module, (params, buffers), (x,)))
            self._grad = self._grad_vmap
        self.behaviour = first.training()(self, first.behaviour()[2])

    # -- what behaviours use

    def grad(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-row mean cross-entropy ``[C]`` of batch (x [C, b, ...], y [C, b]) and its
        gradient ``[C, P]`` with respect to the rows' parameters; BN statistics updated."""
        self.forwards += 1
        loss, g = self._grad(x, y)
        self.diverged |= ~torch.isfinite(loss)
        return loss, g

    def _grad_module(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.flat.g.zero_()
        loss = F.cross_entropy(self.flat.module(x[0]), y[0])
        loss.backward()
        return loss.detach().view(1), self.flat.g.view(1, -1)

    def _grad_vmap(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        params = {seg.name: seg.view(self._leaf) for seg in self.flat.segments}
        logits = self._forward(params, self.buffers, x)                           # [C, b, classes]
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(self.C, -1)
        if self.mask is None:
            loss = ce.mean(1)
        else:  # the mean over each row's real samples (0 for a row without any)
            loss = (ce * self.mask).sum(1) / self.mask.sum(1).clamp(min=1)
        (g,) = torch.autograd.grad(loss.sum(), self._leaf)
        return loss.detach(), g

    @torch.no_grad()
    def sgd_step(self, g: Tensor) -> None:
        """torch's momentum SGD, row-wise: v <- momentum*v + g; W <- W - lr*v (ragged rows:
        only the rows with samples in the batch)."""
        if self.active is not None:
            a = self.active[:, None]
            self.V.copy_(torch.where(a, self.V * self.cfg.momentum + g, self.V))
            self.W.copy_(torch.where(a, self.W - self.lr * self.V, self.W))
            return
        self.V.mul_(self.cfg.momentum).add_(g)
        self.W.add_(self.V, alpha=-self.lr)

    def uniform(self, k: int) -> Tensor:
        """U(0, 1) draws ``[C, k]``, each row from its client's generator (CPU generators, so
        that a run adds the same noise on every device). Many rows draw on several host threads
        (each generator is drawn by one thread, so the numbers are the same)."""
        def draw(s):
            return torch.rand(k, generator=s.gen, device=s.gen.device)

        if self.C >= PARALLEL_DRAWS_FROM:
            u = torch.stack(list(_draw_pool().map(draw, self.states)))
        else:
            u = torch.stack([draw(s) for s in self.states])
        return _to_device(u, self.W.device)

    # -- the local training

    def _augment_draws(self, bs: int) -> tuple[Tensor, Tensor, Tensor]:
        draws = [augment_draws(bs, s.gen) for s in self.states]
        return tuple(_to_device(torch.cat(v), self.W.device) for v in zip(*draws))

    def train(self) -> Tensor:
        """Run the rows' local training; return their new flat states ``[C, d]``."""
        cfg, flat, data, C = self.cfg, self.flat, self.data, self.C
        n, bs = self.indices.shape[1], cfg.batch_size
        flat.module.train()
        with torch.set_grad_enabled(True):
            for _ in range(cfg.local_epochs):
                perms = torch.stack([F.pad(torch.randperm(k, generator=s.gen), (0, n - k))
                                     for k, s in zip(self.sizes, self.states)])
                order = self.indices.gather(1, _to_device(perms, self.indices.device))   # [C, n]
                self.behaviour.begin_epoch()
                for b, start in enumerate(range(0, n, bs)):
                    idx = order[:, start:start + bs]
                    x, y = data.train_x[idx], data.train_y[idx]                        # [C, b, ...], [C, b]
                    if self.ragged:
                        self.mask = self.valid[:, start:start + bs]
                        self.active = self.mask[:, 0] > 0  # a row's real samples come first
                    if self.augment:
                        x = augment_rows(x.flatten(0, 1), *self._augment_draws(idx.shape[1]), self.fill).view_as(x)
                    self.behaviour.step(b, x, y)
        if C == 1:
            flat.w[flat.counter_slice] += self.forwards
            out = flat.w.clone()[None]
        else:
            for st, v in zip(self.states, self.V):
                st.momentum.copy_(v)
            out = flat.stack_states(self.W, self.buffers, self.counters + self.forwards)
        return out.masked_fill_(self.diverged[:, None], float("nan"))


class Trainer:
    """The shared network and dataset of a simulation, training rows (:class:`Row`).

    ``train_rows`` trains a round's rows (one at a time, or in groups with ``batched``);
    ``train_row`` one row (:class:`Rows` of one row: the per-client loop); ``train`` one
    client of ``cfg`` (what the estimator and the benchmark call)."""

    def __init__(self, cfg: Config, flat: FlatModel, data: Dataset):
        self.cfg, self.flat, self.data, self.module = cfg, flat, data, flat.module

    def train(self, global_w: Tensor, indices: Tensor, state: ClientState, malicious: bool, lr: float) -> Tensor:
        """Train from ``global_w`` on the client's ``indices``; return the new flat state
        (NaN where the model blew up)."""
        return self.train_row(Row(self.cfg, global_w, indices, state, malicious, lr))

    def train_row(self, row: Row) -> Tensor:
        """One row's new flat state ``[d]``."""
        return Rows(self.flat, self.data, [row]).train()[0]

    def train_rows(self, rows: list[Row], batched: bool = False) -> Tensor:
        """Every row's new flat state ``[len(rows), d]``, in the rows' order (rows of several
        runs may mix). ``batched``: rows of equal :meth:`Row.group_key` share each step (on a
        network without BatchNorm also rows of different sample counts, see :class:`Rows`)."""
        flat = self.flat
        out = torch.empty(len(rows), flat.d, device=flat.w.device, dtype=flat.w.dtype)
        for members in group_rows(rows, batched, ragged=not flat.bn_layers):
            if len(members) == 1:
                out[members[0]] = self.train_row(rows[members[0]])
            else:
                out[members] = Rows(flat, self.data, [rows[i] for i in members]).train()
        return out


#: Rows from which :meth:`Rows.uniform` draws on a pool of host threads (the noise of LDP and
#: FL-WBC is drawn on the clients' CPU generators: a pack of many rows on a GPU would otherwise
#: wait on one host core).
PARALLEL_DRAWS_FROM = 8
_POOL = None


def _draw_pool():
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=max(1, min(16, (os.cpu_count() or 2) - 1)))
    return _POOL


def _to_device(t: Tensor, device: torch.device) -> Tensor:
    """Host tensor to ``device`` without blocking the host (pinned staging on CUDA)."""
    if t.device == device:
        return t
    if t.device.type == "cpu" and device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(flat: FlatModel, cfg: Config, xs: Tensor) -> Tensor:
    """Predicted labels of the model in ``flat`` for ``xs``, in batches of ``eval.batch``.

    With ``eval.bn: train`` (reference) BatchNorm uses each test batch's
    statistics and updates the running statistics and counters in ``flat.w``.
    """
    flat.module.train(cfg.eval.bn == "train")
    out = []
    for start in range(0, len(xs), cfg.eval.batch):
        out.append(flat.module(xs[start:start + cfg.eval.batch]).argmax(1))
        if cfg.eval.bn == "train":
            flat.w[flat.counter_slice] += 1
    return torch.cat(out)


def accuracy(pred: Tensor, ys: Tensor) -> float:
    return int((pred == ys).sum()) / len(ys)


def evaluate(flat: FlatModel, cfg: Config, xs: Tensor, ys: Tensor) -> float:
    """Accuracy of the model in ``flat`` on (xs, ys) (:func:`predict`)."""
    return accuracy(predict(flat, cfg, xs), ys)


def evaluate_sets(flat: FlatModel, cfg: Config, sets: dict) -> dict[str, float]:
    """A round's metrics from :func:`eval_sets`: ``main_acc`` and, with a backdoor, ``backdoor_acc``
    and ``backdoor_nontarget_acc``. The last is read off the backdoor pass's predictions on the
    images whose true label is not the target: two passes over the test set, as the reference
    tests (a third pass in train-mode BatchNorm would update the running statistics once more)."""
    out = {"main_acc": evaluate(flat, cfg, *sets["main"])}
    if "backdoor" in sets:
        xs, ys = sets["backdoor"]
        pred = predict(flat, cfg, xs)
        keep = sets["nontarget"]
        out["backdoor_acc"] = accuracy(pred, ys)
        out["backdoor_nontarget_acc"] = accuracy(pred[keep], ys[keep])
    return out


def eval_sets(cfg: Config, data: Dataset, device) -> dict:
    """The fixed evaluation subset (``main``), its triggered copy labelled with the target
    (``backdoor``) and the mask of its images whose true label is not the target (``nontarget``)."""
    n = min(cfg.eval.test_samples, len(data.test_y))
    perm = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(EVAL_SUBSET_SEED))
    idx = perm[:n].sort().values.to(device) if n < len(data.test_y) else torch.arange(n, device=device)
    sets = {"main": (data.test_x[idx], data.test_y[idx])}
    opts = cfg.options("backdoor")
    if opts is not None:
        values = trigger_values(cfg.dataset, opts.trigger, data.mean, data.std)
        x = apply_trigger(sets["main"][0], values)
        keep = sets["main"][1] != opts.target
        y = torch.full_like(sets["main"][1], opts.target)
        sets["backdoor"] = (x, y)
        sets["nontarget"] = keep
    return sets


# ----------------------------------------------------------------------------- data split


def split_clients(cfg: Config, n_train: int, labels: Tensor) -> dict[int, Tensor]:
    """Training indices of each client id (1-based)."""
    if cfg.split.kind == "iid":
        return {r: torch.arange(r, n_train, cfg.clients) for r in range(1, cfg.clients + 1)}
    # PoisonedFL's "bias" split: groups of clients by label, with probability `bias`.
    rs = np.random.RandomState(cfg.seed)
    groups = np.array_split(np.arange(1, cfg.clients + 1), 10)
    owner = {r: [] for r in range(1, cfg.clients + 1)}
    for i, label in enumerate(labels.cpu().numpy()):
        if rs.rand() < cfg.split.bias:
            g = int(label)
        else:
            g = rs.choice([k for k in range(10) if k != label])
        owner[int(rs.choice(groups[g]))].append(i)
    return {r: torch.tensor(v, dtype=torch.long) for r, v in owner.items()}


# ----------------------------------------------------------------------------- the rounds


def lr_at(cfg: Config, rnd: int) -> float:
    d = cfg.lr_decay
    if d.kind == "constant":
        return cfg.lr
    k = rnd if d.kind == "exponential" else rnd // d.every
    return max(cfg.lr * d.gamma ** k, d.min_lr)


#: Precisions of the CUDA kernels (``$FLCORE_PRECISION``): ``fp32`` (default: exact float32
#: convolutions and matrix products) or ``tf32`` (TensorFloat-32 on GPUs that have it: faster,
#: ~1e-3 relative rounding per product). Recorded in a CUDA run's provenance (``precision``);
#: never part of a run's identity.
PRECISIONS = ("fp32", "tf32")


def precision() -> str:
    """The CUDA precision asked for by ``$FLCORE_PRECISION`` (empty or unset: ``fp32``)."""
    value = os.environ.get("FLCORE_PRECISION", "") or "fp32"
    if value not in PRECISIONS:
        raise ConfigError(f"FLCORE_PRECISION={value!r} is not valid; valid choices: {', '.join(PRECISIONS)}")
    return value


def pick_device(device: str | None = None) -> torch.device:
    """``auto``/None: CUDA where present, else the CPU. On CUDA, cuDNN is set to its
    deterministic algorithms so that a run recomputed on the same GPU and software
    gives the same numbers (``python -m flcore verify --device cuda``), and convolutions and
    matrix products to :func:`precision` (torch's own default lets cuDNN use TF32)."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        tf32 = precision() == "tf32"
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return device


class Selection:
    """A run's selection step: each round's genuine clients (the schedule's, unless the attack
    chooses them), its number of fake clients and which of the genuine clients train
    maliciously, all by the run's attack (:class:`flcore.methods.attacks.Attack`, built here
    from the registry with its :class:`flcore.methods.attacks.AttackContext`). Needs neither
    data nor network: the estimator plans a run's rounds with it."""

    def __init__(self, cfg: Config, device="cpu"):
        self.cfg = cfg
        self.ids = np.arange(1, cfg.clients + 1)
        self.malicious = malicious_set(cfg.clients, cfg.malicious_clients)
        self.mal = set(self.malicious.tolist())
        self.schedule = registry.get("schedule", cfg.schedule).fn
        context = AttackContext(malicious=frozenset(self.mal), device=torch.device(device))
        self.attack: Attack = registry.get("attack", cfg.attack).fn(cfg, context)

    def scheduled(self, rnd: int) -> list[int]:
        """The schedule's genuine clients of round ``rnd``."""
        return [int(c) for c in self.schedule(self.cfg, rnd, self.ids, self.malicious)]

    def __call__(self, rnd: int) -> tuple[list[int], int, list[bool]]:
        """Round ``rnd``'s genuine clients, number of fake clients, and per genuine client
        whether it trains maliciously."""
        selected, n_fake = self.attack.select(rnd, lambda: self.scheduled(rnd))
        return selected, n_fake, [self.attack.is_malicious(c) for c in selected]


EXECUTORS = ("loop", "batched")


class Run:
    """One run's federation on a shared network and dataset: setup (here), :meth:`plan` (the
    round's selection and client rows), :meth:`aggregate` (the server: the attack's fake
    updates, aggregation, the round's record), :meth:`evaluate`, :meth:`close` (the round's
    record completed) and :meth:`result` (the run record). :class:`Simulation` drives
    several in lockstep; a run's numbers do not depend on the others."""

    def __init__(self, cfg: Config, flat: FlatModel, data: Dataset, device, on_round=None, on_clients=None):
        self.cfg, self.flat, self.data, self.device = cfg, flat, data, device
        self.on_round, self.on_clients = on_round, on_clients
        torch.manual_seed(cfg.seed)
        self.global_w = FlatModel(build_model(resolve_model(cfg), cfg.model.output), device).w.clone()
        self.d_agg = flat.P if cfg.aggregate_state == "trainable" else flat.d
        self.client_idx = {r: v.to(device) for r, v in
                           split_clients(cfg, len(data.train_y), data.train_y.cpu()).items()}
        self.states = {r: ClientState(None, torch.Generator(device="cpu").manual_seed(client_seed(cfg.seed, r)))
                       for r in self.client_idx}
        self.sizes = {r: float(len(v)) for r, v in self.client_idx.items()}
        self.selection = Selection(cfg, device)
        self.malicious, self.mal, self.attack = self.selection.malicious, self.selection.mal, self.selection.attack
        self.aggregator = registry.get("aggregator", cfg.aggregator)
        self.agg_opts, self.agg_state = cfg.options(cfg.aggregator), {}
        self.sets = eval_sets(cfg, data, device)
        self.records, self.status, self.done = [], "completed", False

    def plan(self, rnd: int) -> list[Row]:
        """The round's selection (:class:`Selection`); one :class:`Row` per selected genuine client."""
        cfg = self.cfg
        self.selected, self.n_fake, self.is_mal = self.selection(rnd)
        self.lr = lr_at(cfg, rnd)
        return [Row(cfg, self.global_w, self.client_idx[c], self.states[c], m, self.lr)
                for c, m in zip(self.selected, self.is_mal)]

    def aggregate(self, rnd: int, new_ws: Tensor) -> dict:
        """The server's aggregation of round ``rnd`` from the clients' new states ``new_ws``
        (with the attack's fake updates, if any): updates the global state and returns the
        round's record without metrics; a non-finite state ends the run (``status``
        ``diverged``)."""
        cfg, flat, device, d_agg = self.cfg, self.flat, self.device, self.d_agg
        selected, n_fake, global_w = self.selected, self.n_fake, self.global_w
        if self.on_clients is not None:
            self.on_clients(rnd, selected, self.is_mal, new_ws)
        deltas = new_ws - global_w
        weights = [self.sizes[c] for c in selected]
        fakes = self.attack.fake_updates(rnd, n_fake, global_w[:d_agg])
        if n_fake:
            pad = torch.zeros(n_fake, flat.d - d_agg, device=device)
            deltas = torch.cat([deltas, torch.cat([fakes, pad], 1)])
            weights += [float(np.mean(weights))] * n_fake
        # non-finite client states (a blown-up model) end the run in the round they appear
        finite = bool(torch.isfinite(deltas).all())
        agg_w = None
        if finite:
            self.agg_state.update(n_genuine=len(selected), n_fake=n_fake)  # read only by rules given oracle knowledge
            agg, agg_w = self.aggregator.fn(deltas[:, :d_agg], torch.tensor(weights, device=device), self.agg_opts,
                                            self.agg_state)
            new_global = global_w.clone()
            new_global[:d_agg] += cfg.server_lr * agg
            if d_agg < flat.d:
                new_global[d_agg:] += deltas[:len(selected), d_agg:].mean(0)
            finite = bool(torch.isfinite(new_global).all())
            global_w = new_global
        if finite:
            self.attack.observe(rnd, global_w[:d_agg])

        rec = {"round": rnd, "selected": selected, "malicious": [c for c in selected if c in self.mal],
               "lr": self.lr, "fake_clients": n_fake}
        if agg_w is not None:
            rec["agg_weights"] = [round(float(v), 6) for v in agg_w]
        attack_rec = self.attack.record()
        if attack_rec is not None:
            rec["attack"] = attack_rec
        self.global_w = global_w
        if not finite:
            self.status, self.done = "diverged", True
        return rec

    def due(self, rnd: int, n_rounds: int) -> bool:
        """Whether the global model is evaluated after round ``rnd`` (not after a divergence)."""
        return self.status != "diverged" and (rnd % self.cfg.eval.every == 0 or rnd == n_rounds - 1)

    def close(self, rnd: int, rec: dict, metrics: dict | None, n_rounds: int, t0: float) -> dict:
        """Complete the round's record ``rec`` (from :meth:`aggregate`) with the evaluation's
        ``metrics`` (None where none was due) and store it; ``self.done`` once the run has ended."""
        if self.status == "diverged":
            rec.update(main_acc=None, backdoor_acc=None, wall_s=time.perf_counter() - t0)
            self.records.append(rec)
            self.done = True
            return rec
        rec.update(metrics or {})
        rec.setdefault("main_acc", None)
        rec.setdefault("backdoor_acc", None)
        rec["wall_s"] = round(time.perf_counter() - t0, 4)
        self.records.append(rec)
        if self.on_round is not None:
            self.on_round(rnd, self.global_w, rec)
        self.done = rnd == n_rounds - 1
        return rec

    def evaluate(self) -> dict[str, float]:
        """The global model's metrics (:func:`evaluate_sets`); in train-mode BatchNorm testing
        updates the global BN statistics, as in the reference."""
        self.flat.w.copy_(self.global_w)
        out = evaluate_sets(self.flat, self.cfg, self.sets)
        self.global_w = self.flat.w.clone()
        return out

    def result(self, wall_s: float) -> dict:
        flat = self.flat
        return {"status": self.status, "rounds": self.records, "summary": summarise(self.records, self.status),
                "wall_s": wall_s, "data": self.data, "device": str(self.device),
                "d": {"params": flat.P, "bn_stats": flat.B, "bn_counters": flat.K, "aggregated": self.d_agg}}


def eval_key(cfg: Config) -> tuple:
    """Runs of equal keys evaluate on the same images in the same batches (:func:`evaluate_runs`)."""
    return (cfg.dataset, cfg.eval.test_samples, cfg.eval.batch, cfg.eval.bn, cfg.options("backdoor"))


def evaluate_runs(flat: FlatModel, runs: list[Run], batched: bool = False) -> dict[int, dict[str, float]]:
    """The metrics of each run's global model (:meth:`Run.evaluate`), by ``id(run)``. With
    ``batched``, the models of runs of equal :func:`eval_key` run as one network over each test
    batch (``vmap`` over stacked weights; in train-mode BatchNorm each model's statistics and
    counters are updated as :func:`predict` updates them), else one after another."""
    out: dict[int, dict[str, float]] = {}
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(eval_key(run.cfg) if batched else (id(run),), []).append(run)
    for group in groups.values():
        if len(group) == 1:
            out[id(group[0])] = group[0].evaluate()
            continue
        ws = torch.stack([run.global_w for run in group])
        metrics, ws = _evaluate_stacked(flat, group[0].cfg, group[0].sets, ws)
        for run, m, w in zip(group, metrics, ws):
            run.global_w = w.clone()
            out[id(run)] = m
    return out


@torch.no_grad()
def _evaluate_stacked(flat: FlatModel, cfg: Config, sets: dict, ws: Tensor) -> tuple[list[dict], Tensor]:
    """:func:`evaluate_sets` of R models at once (``ws`` [R, d]); returns their metrics and their
    flat states after testing (BN statistics and counters updated in train mode)."""
    P = flat.P
    params = {seg.name: seg.view(ws[:, :P]) for seg in flat.segments}
    buffers = flat.stacked_buffers(ws)
    counters = ws[:, flat.counter_slice].clone()
    module = flat.module
    forward = vmap(lambda p, b, x: functional_call(module, (p, b), (x,)), in_dims=(0, 0, None))
    train = cfg.eval.bn == "train"
    module.train(train)

    def predict_all(xs):
        out = []
        for start in range(0, len(xs), cfg.eval.batch):
            out.append(forward(params, buffers, xs[start:start + cfg.eval.batch]).argmax(-1))
            if train:
                counters.add_(1)
        return torch.cat(out, 1)                                                   # [R, n]

    def acc(pred, ys):
        return [int(v) / len(ys) for v in (pred == ys).sum(1)]

    xs, ys = sets["main"]
    mains = acc(predict_all(xs), ys)
    metrics = [{"main_acc": m} for m in mains]
    if "backdoor" in sets:
        xs, ys = sets["backdoor"]
        pred = predict_all(xs)
        keep = sets["nontarget"]
        for m, bd, nt in zip(metrics, acc(pred, ys), acc(pred[:, keep], ys[keep])):
            m.update(backdoor_acc=bd, backdoor_nontarget_acc=nt)
    return metrics, flat.stack_states(ws[:, :P], buffers, counters)


def pack_key(cfg: Config) -> tuple:
    """Runs of equal keys can share one simulation (:func:`simulate_pack`): the same dataset,
    network, number of rounds and aggregated state (rows of different local training shapes
    then train in separate groups)."""
    return (cfg.dataset, resolve_model(cfg), cfg.model.output, cfg.rounds, cfg.aggregate_state)


class Simulation:
    """Several federations in lockstep on one network and dataset, in named steps.

    Setup (the constructor): the device, the dataset, the shared network (:class:`FlatModel`)
    and :class:`Trainer`, and one :class:`Run` per configuration (its global model, client
    split and states, selection and attack, aggregator and evaluation sets; :meth:`new_run`).
    One round (:meth:`round`) is, over the runs still going: :meth:`select` (each run's
    selection and client rows), :meth:`train` (the local training of all their rows, batched
    across runs with ``executor="batched"``), :meth:`aggregate` (each run's attack and
    aggregation), :meth:`evaluate` (the runs due) and :meth:`close` (the round's records).
    :func:`simulate_pack` calls :meth:`round` in a loop; the benchmark and the estimator call
    the steps one by one. ``rounds`` limits the runs to their first rounds (the last of them
    is evaluated)."""

    def __init__(self, cfgs: list[Config], device=None, rounds: int | None = None, executor: str = "batched",
                 on_round=None, on_clients=None):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        keys = {pack_key(c) for c in cfgs}
        if len(keys) != 1:
            raise ValueError(f"the runs of a pack must share dataset, model, rounds and aggregated state; got {sorted(keys)}")
        memory.tune()
        self.cfgs, self.executor, self.batched = list(cfgs), executor, executor == "batched"
        self.on_round, self.on_clients = on_round, on_clients
        self.device = device = pick_device(device)
        first = cfgs[0]
        self.n_rounds = first.rounds if rounds is None else min(rounds, first.rounds)
        torch.manual_seed(first.seed)
        self.data = load_dataset(first.dataset, device)
        self.flat = FlatModel(build_model(resolve_model(first), first.model.output), device)
        self.trainer = Trainer(first, self.flat, self.data)
        self.runs = [self.new_run(cfg) for cfg in cfgs]

    def new_run(self, cfg: Config) -> Run:
        """A fresh :class:`Run` of ``cfg`` (of the pack's :func:`pack_key`) on the shared network and dataset."""
        return Run(cfg, self.flat, self.data, self.device, self.on_round, self.on_clients)

    def active(self) -> list[Run]:
        """The runs that have not ended."""
        return [run for run in self.runs if not run.done]

    def select(self, rnd: int, runs: list[Run]) -> list[list[Row]]:
        """Selection: each run's client rows of round ``rnd`` (:meth:`Run.plan`)."""
        return [run.plan(rnd) for run in runs]

    def train(self, rows: list[Row], batched: bool | None = None) -> Tensor:
        """Local training: the rows' new flat states ``[len(rows), d]`` (:meth:`Trainer.train_rows`
        with the simulation's executor, or ``batched`` where given)."""
        return self.trainer.train_rows(rows, batched=self.batched if batched is None else batched)

    def aggregate(self, rnd: int, runs: list[Run], plans: list[list[Row]], new_ws: Tensor) -> list[dict]:
        """Attack and aggregation: each run's server step (:meth:`Run.aggregate`) from its rows'
        part of ``new_ws``; the round's records without metrics."""
        recs, start = [], 0
        for run, plan in zip(runs, plans):
            recs.append(run.aggregate(rnd, new_ws[start:start + len(plan)]))
            start += len(plan)
        return recs

    def evaluate(self, rnd: int, runs: list[Run]) -> dict[int, dict[str, float]]:
        """Evaluation: the metrics of the runs due after round ``rnd`` (:meth:`Run.due`), by
        ``id(run)`` (:func:`evaluate_runs`)."""
        due = [run for run in runs if run.due(rnd, self.n_rounds)]
        return evaluate_runs(self.flat, due, batched=self.batched)

    def close(self, rnd: int, runs: list[Run], recs: list[dict], metrics: dict, t0: float) -> list[dict]:
        """The round's records completed with the metrics and stored (:meth:`Run.close`)."""
        return [run.close(rnd, rec, metrics.get(id(run)), self.n_rounds, t0) for run, rec in zip(runs, recs)]

    def round(self, rnd: int) -> list[dict]:
        """One round of every run still going; their records (empty once every run has ended)."""
        t0 = time.perf_counter()
        runs = self.active()
        if not runs:
            return []
        plans = self.select(rnd, runs)
        new_ws = self.train([row for plan in plans for row in plan])
        recs = self.aggregate(rnd, runs, plans, new_ws)
        metrics = self.evaluate(rnd, runs)
        return self.close(rnd, runs, recs, metrics, t0)

    def results(self, wall_s: float) -> list[dict]:
        """The run records in the order of the configurations; with several runs each has
        ``pack`` (their number) and ``executor``."""
        out = [run.result(wall_s) for run in self.runs]
        if len(self.runs) > 1:
            for rec in out:
                rec.update(pack=len(self.runs), executor=self.executor)
        return out


def simulate(cfg: Config, device=None, progress: bool = True, rounds: int | None = None,
             executor: str = "loop", on_round=None, on_setup=None, on_clients=None) -> dict:
    """Run the federation of ``cfg``; return the run record (without provenance).

    ``rounds`` limits the run to its first rounds (used by verification).
    ``executor``: ``loop`` trains the selected clients one after another;
    ``batched`` trains together the clients that can share each step (:class:`Rows`, for
    GPUs). Both compute the same run to float rounding; the executor is not part of a
    run's identity.
    ``on_round(round, global_w, record)``, if given, is called after each round
    with the new global state (analyses such as the attack effect use it).
    ``on_setup(trainer)`` is called once before the first round with the :class:`Trainer`,
    and ``on_clients(round, selected, is_malicious, new_states)`` after each round's
    local training with the clients' new flat states ``[clients x d]``, before
    aggregation (the Multi-Krum tie analysis uses both). Neither changes the run.
    """
    return simulate_pack([cfg], device, progress, rounds, executor, on_round=on_round, on_setup=on_setup,
                         on_clients=on_clients)[0]


def simulate_pack(cfgs: list[Config], device=None, progress: bool = True, rounds: int | None = None,
                  executor: str = "batched", on_round=None, on_setup=None, on_clients=None) -> list[dict]:
    """Run several federations in lockstep: one :class:`Simulation` whose client rows are
    (run, client), its :meth:`Simulation.round` in a loop. Each round the selected clients of
    every run are trained (:meth:`Trainer.train_rows`; with ``batched`` the rows that can share
    a step do so, across runs), then each run's server aggregates and evaluates its own model.
    Every run keeps its own seed, data order, client states, defense, attack, aggregator and
    records: a run computed in a pack equals the run computed alone (:func:`simulate`) exactly
    with ``executor="loop"`` and to float rounding with ``batched``. The runs must agree on
    :func:`pack_key`. Returns the run records in the order of ``cfgs``; each record's
    ``wall_s`` is the pack's, ``pack`` its number of runs and ``executor`` the executor (both
    go into the stored provenance)."""
    from tqdm.auto import tqdm

    sim = Simulation(cfgs, device, rounds, executor, on_round=on_round, on_clients=on_clients)
    if on_setup is not None:
        on_setup(sim.trainer)
    t_run = time.perf_counter()
    first = cfgs[0]
    desc = f"{first.dataset}/{first.aggregator}/{first.client_defense}" if len(cfgs) == 1 else f"pack of {len(cfgs)}"
    bar = tqdm(range(sim.n_rounds), desc=desc, unit="round", disable=not progress, leave=False)
    for rnd in bar:
        recs = sim.round(rnd)
        if not recs:
            break
        if progress and len(cfgs) == 1:
            bar.set_postfix(acc=recs[-1].get("main_acc"), bd=recs[-1].get("backdoor_acc"))
    bar.close()
    return sim.results(time.perf_counter() - t_run)


def summarise(records: list[dict], status: str) -> dict:
    evald = [r for r in records if r.get("main_acc") is not None]
    bd = [r["backdoor_acc"] for r in evald if r.get("backdoor_acc") is not None]
    last = evald[-1] if evald else {}
    out = {
        "status": status,
        "rounds_completed": len(records) if status == "completed" else len(records) - 1,
        "main_acc_final": last.get("main_acc"),
        "backdoor_acc_avg": float(np.mean(bd)) if bd else None,
        "backdoor_acc_final": last.get("backdoor_acc"),
        "backdoor_nontarget_acc_final": last.get("backdoor_nontarget_acc"),
        "main_acc_max": max((r["main_acc"] for r in evald), default=None),
    }
    if status == "diverged":
        out["diverged_round"] = records[-1]["round"]
    return out
