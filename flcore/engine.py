"""The round loop: selection, local training, attacks, aggregation, evaluation.

Read top to bottom: the flat state layout, the trainer (one client's local
training), evaluation, then :func:`simulate` (the rounds).

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

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flcore import registry
from flcore.attacks import apply_trigger, trigger_values
from flcore.config import Config, resolve_model
from flcore.data import Dataset, augment_cifar, load_dataset
from flcore.models import build_model
from flcore.schedules import malicious_set

EVAL_SUBSET_SEED = 12345  # the fixed test subset is the same for every run

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
    convolution weights of the channels-last networks (:data:`flcore.models.MEMORY_FORMAT`) are
    stored as (out, kernel row, kernel column, in), everything else row-major. The layout is
    the same on every device; ``segments`` gives the views (the batched executor and the
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

    def param_views(self, vec: Tensor) -> dict[str, Tensor]:
        """Every parameter as a view of ``vec`` (``[P]`` or ``[rows, P]``), by name."""
        return {seg.name: seg.view(vec) for seg in self.segments}


# ----------------------------------------------------------------------------- client training


class Diverged(Exception):
    """A client's loss became non-finite: the model blew up."""


@dataclass
class ClientState:
    """What a client keeps between the rounds it is selected in."""

    momentum: Tensor | None
    gen: torch.Generator


class Trainer:
    """Local training of one client at a time on the shared :class:`FlatModel`.

    ``grad(x, y)`` runs forward and backward and leaves the cross-entropy
    gradient in ``self.g``; ``sgd_step()`` applies torch's momentum SGD
    (v <- momentum*v + g; W <- W - lr*v) with the client's persistent buffer.
    """

    def __init__(self, cfg: Config, flat: FlatModel, data: Dataset):
        self.cfg, self.flat, self.data = cfg, flat, data
        self.module = flat.module
        self.g, self.w = flat.g, flat.w
        self.wp = flat.wp
        self.param_segments, self.weight_segments = flat.param_segments, flat.weight_segments
        self.weight_index = flat.weight_index
        self.lr = cfg.lr
        self.backdoor = cfg.options("backdoor")
        if self.backdoor is not None:
            self.trigger = trigger_values(cfg.dataset, self.backdoor.trigger, data.mean, data.std).to(flat.w.device)
        self.augment = cfg.dataset == "cifar10"
        self.forwards = 0
        self.v = None
        self.gen = None

    def grad(self, x: Tensor, y: Tensor) -> float:
        self.g.zero_()
        loss = F.cross_entropy(self.module(x), y)
        loss.backward()
        self.forwards += 1
        self.loss = loss.item()
        if not math.isfinite(self.loss):
            raise Diverged(f"non-finite loss {self.loss}")
        return self.loss

    def sgd_step(self) -> None:
        self.v.mul_(self.cfg.momentum).add_(self.g)
        self.wp.add_(self.v, alpha=-self.lr)

    def train(self, global_w: Tensor, indices: Tensor, state: ClientState, malicious: bool, lr: float) -> Tensor:
        """Train from ``global_w`` on the client's ``indices``; return the new flat state."""
        cfg = self.cfg
        self.w.copy_(global_w)
        if state.momentum is None:
            state.momentum = torch.zeros(self.flat.P, device=self.w.device)
        self.v, self.gen, self.lr, self.forwards = state.momentum, state.gen, lr, 0
        defense = None
        if not malicious:
            method = registry.get("client_defense", cfg.client_defense)
            defense = method.fn(self, cfg.options(cfg.client_defense))
        attack_step = registry.get("attack", cfg.attack).fn if malicious and cfg.attack == "backdoor" else None
        self.module.train()
        n, bs = len(indices), cfg.batch_size
        for _ in range(cfg.local_epochs):
            order = indices[torch.randperm(n, generator=state.gen).to(indices.device)]
            if defense is not None:
                defense.begin_epoch()
            for b, start in enumerate(range(0, n, bs)):
                idx = order[start:start + bs]
                x, y = self.data.train_x[idx], self.data.train_y[idx]
                if self.augment:
                    x = augment_cifar(x, state.gen)
                if attack_step is not None:
                    attack_step(self, x, y)
                else:
                    defense.before(b)
                    self.grad(x, y)
                    self.sgd_step()
                    defense.after(b)
        self.w[self.flat.counter_slice] += self.forwards
        return self.w.clone()


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


def pick_device(device: str | None = None) -> torch.device:
    """``auto``/None: CUDA where present, else the CPU. On CUDA, cuDNN is set to its
    deterministic algorithms so that a run recomputed on the same GPU and software
    gives the same numbers (``python -m flcore verify --device cuda``)."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return device


def select(cfg: Config, rnd: int, ids, malicious, schedule, fake_gen) -> tuple[list[int], int]:
    """Genuine clients of the round (by the schedule) and the number of fake clients."""
    if cfg.attack != "poisonedfl":
        return [int(c) for c in schedule(cfg, rnd, ids, malicious)], 0
    from flcore.poisonedfl import fakes_this_round

    opts = cfg.options("poisonedfl")
    participation = cfg.clients_per_round / cfg.clients
    if opts.selection == "random":
        rs = np.random.RandomState(rnd + 100)
        k = cfg.clients_per_round + int(round(opts.fake_clients * participation))
        drawn = rs.choice(cfg.clients + opts.fake_clients, k, replace=False) + 1
        return [int(c) for c in drawn if c <= cfg.clients], int((drawn > cfg.clients).sum())
    selected = [int(c) for c in schedule(cfg, rnd, ids, malicious)]
    return selected, fakes_this_round(opts.fake_clients, participation, fake_gen)


EXECUTORS = ("loop", "batched")


def simulate(cfg: Config, device=None, progress: bool = True, rounds: int | None = None,
             executor: str = "loop", on_round=None, on_setup=None, on_clients=None) -> dict:
    """Run the federation of ``cfg``; return the run record (without provenance).

    ``rounds`` limits the run to its first rounds (used by verification).
    ``executor``: ``loop`` trains the selected clients one after another;
    ``batched`` trains them together (:mod:`flcore.batched`, for GPUs). Both
    compute the same run; the executor is not part of a run's identity.
    ``on_round(round, global_w, record)``, if given, is called after each round
    with the new global state (analyses such as the attack effect use it).
    ``on_setup(trainer)`` is called once before the first round, and
    ``on_clients(round, selected, is_malicious, new_states)`` after each round's
    local training with the clients' new flat states ``[clients x d]``, before
    aggregation (the Multi-Krum tie analysis uses both). Neither changes the run.
    """
    from tqdm.auto import tqdm

    device = pick_device(device)
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset, device)
    module = build_model(resolve_model(cfg), cfg.model.output)
    flat = FlatModel(module, device)
    trainer = Trainer(cfg, flat, data)
    global_w = flat.w.clone()
    d_agg = flat.P if cfg.aggregate_state == "trainable" else flat.d

    client_idx = {r: v.to(device) for r, v in split_clients(cfg, len(data.train_y), data.train_y.cpu()).items()}
    states = {r: ClientState(None, torch.Generator(device="cpu").manual_seed(cfg.seed * 100_003 + r + 10))
              for r in client_idx}
    sizes = {r: float(len(v)) for r, v in client_idx.items()}
    ids = np.arange(1, cfg.clients + 1)
    malicious = malicious_set(cfg.clients, cfg.malicious_clients)
    mal = set(malicious.tolist())
    schedule = registry.get("schedule", cfg.schedule).fn
    aggregator = registry.get("aggregator", cfg.aggregator)
    agg_opts, agg_state = cfg.options(cfg.aggregator), {}
    sets = eval_sets(cfg, data, device)
    attack, fake_gen = None, torch.Generator().manual_seed(cfg.seed + 7)
    if cfg.attack == "poisonedfl":
        from flcore.poisonedfl import make_poisonedfl
        attack = make_poisonedfl(d_agg, cfg.options("poisonedfl"), cfg.seed, device)

    if on_setup is not None:
        on_setup(trainer)
    records, status, t_run = [], "completed", time.perf_counter()
    n_rounds = cfg.rounds if rounds is None else min(rounds, cfg.rounds)
    bar = tqdm(range(n_rounds), desc=f"{cfg.dataset}/{cfg.aggregator}/{cfg.client_defense}",
               unit="round", disable=not progress, leave=False)
    for rnd in bar:
        t0 = time.perf_counter()
        selected, n_fake = select(cfg, rnd, ids, malicious, schedule, fake_gen)
        lr = lr_at(cfg, rnd)
        is_mal = [c in mal and cfg.attack == "backdoor" for c in selected]
        if executor == "batched":
            from flcore.batched import train_clients_batched
            new_ws = train_clients_batched(trainer, global_w, [client_idx[c] for c in selected],
                                           [states[c] for c in selected], is_mal, lr)
        else:
            rows = []
            for c, m in zip(selected, is_mal):
                try:
                    rows.append(trainer.train(global_w, client_idx[c], states[c], m, lr))
                except Diverged:  # the round's state is non-finite; detected below
                    rows.append(torch.full_like(global_w, float("nan")))
            new_ws = torch.stack(rows)
        if on_clients is not None:
            on_clients(rnd, selected, is_mal, new_ws)
        deltas = new_ws - global_w
        weights = [sizes[c] for c in selected]
        if attack is not None:
            fakes = attack.craft(rnd, n_fake, global_w[:d_agg])
            if n_fake:
                pad = torch.zeros(n_fake, flat.d - d_agg, device=device)
                deltas = torch.cat([deltas, torch.cat([fakes, pad], 1)])
                weights += [float(np.mean(weights))] * n_fake
        # non-finite client states (a blown-up model) end the run in the round they appear
        finite = bool(torch.isfinite(deltas).all())
        agg_w = None
        if finite:
            agg_state.update(n_genuine=len(selected), n_fake=n_fake)  # read only by rules given oracle knowledge
            agg, agg_w = aggregator.fn(deltas[:, :d_agg], torch.tensor(weights, device=device), agg_opts, agg_state)
            new_global = global_w.clone()
            new_global[:d_agg] += cfg.server_lr * agg
            if d_agg < flat.d:
                new_global[d_agg:] += deltas[:len(selected), d_agg:].mean(0)
            finite = bool(torch.isfinite(new_global).all())
            global_w = new_global
        if finite and attack is not None:
            attack.observe(rnd, global_w[:d_agg])

        rec = {"round": rnd, "selected": selected, "malicious": [c for c in selected if c in mal],
               "lr": lr, "fake_clients": n_fake}
        if agg_w is not None:
            rec["agg_weights"] = [round(float(v), 6) for v in agg_w]
        if attack is not None:
            rec["attack"] = attack.last_record
        if not finite:
            status = "diverged"
            rec.update(main_acc=None, backdoor_acc=None, wall_s=time.perf_counter() - t0)
            records.append(rec)
            break
        if rnd % cfg.eval.every == 0 or rnd == n_rounds - 1:
            flat.w.copy_(global_w)
            rec.update(evaluate_sets(flat, cfg, sets))
            global_w = flat.w.clone()  # reference: train-mode testing updates BN statistics
        rec.setdefault("main_acc", None)
        rec.setdefault("backdoor_acc", None)
        rec["wall_s"] = round(time.perf_counter() - t0, 4)
        records.append(rec)
        if on_round is not None:
            on_round(rnd, global_w, rec)
        if progress:
            bar.set_postfix(acc=rec.get("main_acc"), bd=rec.get("backdoor_acc"))
    bar.close()
    return {"status": status, "rounds": records, "summary": summarise(records, status),
            "wall_s": time.perf_counter() - t_run, "data": data, "device": str(device),
            "d": {"params": flat.P, "bn_stats": flat.B, "bn_counters": flat.K, "aggregated": d_agg}}


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
