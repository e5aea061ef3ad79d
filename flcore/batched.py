"""The ``batched`` executor: all selected clients of a round trained together.

:func:`train_clients_batched` returns exactly what the per-client loop returns,

    torch.stack([trainer.train(global_w, idx, st, m, lr) for idx, st, m in ...])

(same flat-state layout: parameters | BN running statistics | BN counters), but
runs one forward and one backward pass per step for a whole *group* of clients
instead of one per client. It is meant for GPUs, where a step of one small
client leaves the device mostly idle.

How. The clients of a group have the same number of samples (so the same batch
sizes at every step) and the same role (benign or malicious). Their parameters
are the rows of one ``[C, P]`` tensor; ``torch.func.vmap`` over
``torch.func.functional_call`` of the trainer's network runs the C networks as
one (convolutions become grouped convolutions). The gradient of the sum of the
C per-client losses with respect to the ``[C, P]`` tensor is the ``[C, P]``
matrix of per-client gradients, because the clients share nothing. Everything
after the backward pass is row-wise vector maths on ``[C, P]``: momentum SGD
with each client's own persistent buffer, the client defenses (per-tensor
segment norms per row), the MGDA weight ``c`` of each malicious client.

What is the same as the loop, client by client:
- the random stream: each client's shuffle, CIFAR-10 augmentation draws and
  LDP / FL-WBC noise come from its own ``state.gen``, drawn in the order the
  loop draws them (epoch shuffle; per batch augmentation, then noise after the
  step), so both executors produce the same run;
- BatchNorm in train mode, each client's running statistics updated with
  momentum 0.1 (they are per-client batched buffers under ``vmap``), the BN
  counters (+1 per training forward pass; malicious clients make two per step);
- ``state.momentum`` (created as zeros when None) is updated in place.
Results agree with the loop to float32 rounding (grouped and single
convolutions sum in different orders); ``tests/test_batched.py`` checks 1e-5.

Grouping. Clients are grouped by (number of samples, malicious); a group of one
is trained by the loop (``Trainer.train``), which is as fast for it.

Divergence. Where the loop stops a client at its first non-finite loss
(``engine.Diverged``) and the round records a row of NaN, a group keeps a
per-client flag (a tensor, so no host check per step), trains on, and returns
NaN rows for the flagged clients.

Host synchronisation. A step issues no ``.item()`` and no data-dependent
Python branch: the MGDA weight, the normalisers and the "norm > 0" tests of the
segment norms stay tensors. What remains on CUDA: the random draws come from
the clients' CPU generators (epoch shuffles; LDP/FL-WBC uniforms per step;
CIFAR-10 flips and crop offsets per step); they are copied to the device from
pinned memory without blocking, but drawing them is host work that scales with
the noise size (an LDP step of CIFAR-10 draws 0.55 M uniforms per client).
"""
from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, vmap

from flcore.attacks import apply_trigger
from flcore.data import CIFAR_MEAN, CIFAR_STD
from flcore.defenses import flwbc_mask

__all__ = ["train_clients_batched", "group_clients"]


# ----------------------------------------------------------------------------- entry point


def group_clients(indices_list: list[Tensor], is_malicious: list[bool]) -> list[list[int]]:
    """Positions of the clients that can share a step: same sample count and role."""
    groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
    for i, (idx, m) in enumerate(zip(indices_list, is_malicious)):
        groups[(len(idx), bool(m))].append(i)
    return list(groups.values())


def train_clients_batched(trainer, global_w: Tensor, indices_list: list[Tensor], states: list,
                          is_malicious: list[bool], lr: float) -> Tensor:
    """Train the clients of a round together; return their new flat states ``[n_clients, d]``.

    Same arguments and result as calling ``trainer.train`` on each client in turn
    (``flcore.engine.Trainer``); ``states[i].momentum`` is updated in place. A
    client whose loss became non-finite (where the loop raises ``Diverged``)
    gets a row of NaN, as :func:`flcore.engine.simulate` records it.
    """
    from flcore.engine import Diverged

    out = torch.empty(len(indices_list), trainer.flat.d, device=global_w.device, dtype=global_w.dtype)
    for members in group_clients(indices_list, is_malicious):
        if len(members) == 1:
            i = members[0]
            try:
                out[i] = trainer.train(global_w, indices_list[i], states[i], bool(is_malicious[i]), lr)
            except Diverged:
                out[i] = float("nan")
        else:
            out[members] = _Group(trainer, global_w, [indices_list[i] for i in members],
                                  [states[i] for i in members], bool(is_malicious[members[0]]), lr).run()
    return out


# ----------------------------------------------------------------------------- row-wise maths


def segment_ids(segments: list[tuple[int, int]], P: int, device) -> Tensor:
    """Segment number of each of the P entries; entries in no segment get ``len(segments)``."""
    ids = torch.full((P,), len(segments), dtype=torch.long)
    for k, (off, n) in enumerate(segments):
        ids[off:off + n] = k
    return ids.to(device)


def rows_segment_unit(d: Tensor, ids: Tensor, n_segments: int) -> Tensor:
    """Row-wise :func:`flcore.defenses.segment_unit`: each row's segments divided by
    their own Frobenius norm; zero where the norm is zero and outside the segments."""
    sq = d.new_zeros(d.shape[0], n_segments + 1).index_add_(1, ids, d * d)
    sq[:, n_segments] = 0
    norm = sq.sqrt().gather(1, ids.expand(d.shape[0], -1))
    return torch.where(norm > 0, d / norm, d.new_zeros(()))


def laplace_from_uniform(u: Tensor, scale: float) -> Tensor:
    """Laplace(0, scale) from U(0, 1) samples, the same expression as
    :func:`flcore.defenses.laplace` (so equal draws give equal noise)."""
    u = u - 0.5
    u = u.clamp_min(-0.5 + torch.finfo(u.dtype).eps / 2)  # rand() == 0 would give log1p(-1) = -inf
    return -scale * torch.sign(u) * torch.log1p(-2 * u.abs())


def min_norm_weight_rows(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise :func:`flcore.attacks.min_norm_weight` (float64 result, no host sync)."""
    aa = torch.linalg.vecdot(a, a).double()
    ab = torch.linalg.vecdot(a, b).double()
    bb = torch.linalg.vecdot(b, b).double()
    c = (bb - ab) / (aa + bb - 2 * ab)
    c = torch.where(ab >= bb, torch.full_like(c, 0.001), c)
    return torch.where(ab >= aa, torch.full_like(c, 0.999), c)


def mgda_normaliser_rows(loss: Tensor, grad: Tensor, kind: str) -> Tensor:
    """Row-wise :func:`flcore.attacks.mgda_normaliser` (float64)."""
    loss = loss.double()
    if kind == "loss":
        return loss.clamp(max=10.0) + 1e-5
    return (loss * torch.linalg.vector_norm(grad, dim=1).double()).clamp(max=10.0) + 1e-5


def padding_fill(channels: int, device, dtype, mean=CIFAR_MEAN, std=CIFAR_STD) -> Tensor:
    """The normalised black of :func:`flcore.data.augment_cifar`'s padding, [1, C, 1, 1]."""
    fill = (torch.zeros(channels) - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(std, dtype=torch.float32)
    return fill.to(device=device, dtype=dtype).view(1, channels, 1, 1)


def augment_rows(x: Tensor, flip: Tensor, top: Tensor, left: Tensor, fill: Tensor, padding: int = 4) -> Tensor:
    """:func:`flcore.data.augment_cifar` with the draws given: ``x`` [N, C, H, W],
    ``flip`` bool [N], ``top``/``left`` offsets [N] (N = clients x batch), ``fill``
    from :func:`padding_fill` (made once: a host-to-device copy per step would block)."""
    b, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    padded = fill.repeat(b, 1, hp, wp)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    rows = top[:, None] + torch.arange(h, device=x.device)
    cols = left[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], wp - 1 - cols, cols)
    out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, wp))
    return out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def _to(t: Tensor, device: torch.device) -> Tensor:
    """Host tensor to ``device`` without blocking the host (pinned staging on CUDA)."""
    if t.device == device:
        return t
    if t.device.type == "cpu" and device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


# ----------------------------------------------------------------------------- one group


class _Group:
    """C clients with the same batch structure and role, trained in lockstep."""

    def __init__(self, trainer, global_w: Tensor, indices: list[Tensor], states: list, malicious: bool,
                 lr: float):
        t = self.t = trainer
        flat, cfg = t.flat, t.cfg
        self.cfg, self.lr, self.malicious, self.states = cfg, lr, malicious, states
        self.dev = global_w.device
        C = self.C = len(indices)
        P, B = flat.P, flat.B
        self.indices = torch.stack([idx.to(self.dev) for idx in indices])          # [C, n]
        self.n = self.indices.shape[1]

        # parameters: rows of one leaf [C, P]; the network sees views of it
        self.Wp = global_w[:P].repeat(C, 1).requires_grad_(True)
        module = t.module
        self.segments = flat.segments  # each parameter's place and memory order in a row
        # BN running statistics: one contiguous [C, ...] tensor per buffer (vmap
        # updates batched buffers in place only when they are contiguous)
        self.buffers, self.buffer_layout, off = {}, [], P
        for name, b in module.named_buffers():
            if b.is_floating_point():
                self.buffers[name] = global_w[off:off + b.numel()].view(b.shape).repeat(C, *[1] * b.dim())
                self.buffer_layout.append(name)
                off += b.numel()
        assert self.Wp.shape[1] == sum(seg.n for seg in self.segments) and off == P + B

        self.V = torch.stack([s.momentum.to(self.dev) if s.momentum is not None
                              else torch.zeros(P, device=self.dev) for s in states])
        self.counters = global_w[flat.counter_slice]
        self.diverged = torch.zeros(C, dtype=torch.bool, device=self.dev)

        def forward(params, buffers, x):
            return functional_call(module, (params, buffers), (x,))

        self.forward = vmap(forward)

        self.augment = t.augment
        if self.augment:
            x0 = t.data.train_x[:1]
            self.fill = padding_fill(x0.shape[1], self.dev, x0.dtype)
        if malicious:
            self.opts = t.backdoor
            self.trigger = t.trigger
            self.norm_kind = self.opts.resolved_normaliser(cfg.dataset)
        else:
            self.defense = cfg.client_defense
            self.dopts = cfg.options(cfg.client_defense)
            if self.defense not in ("none", "leadfl", "ldp", "flwbc"):
                raise NotImplementedError(f"batched executor: client defense {self.defense!r}")
            if self.defense == "leadfl":
                code = self.dopts.variant == "code"
                segs = flat.weight_segments if code else flat.param_segments
                self.n_seg = len(segs)
                self.seg_ids = segment_ids(segs, P, self.dev)
            self.weight_index = flat.weight_index.to(self.dev)

    # -- pieces of a step

    def params(self) -> dict[str, Tensor]:
        return {seg.name: seg.view(self.Wp) for seg in self.segments}

    def grad(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-client mean cross-entropy [C] and its gradient [C, P] (BN stats updated)."""
        logits = self.forward(self.params(), self.buffers, x)              # [C, b, classes]
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(self.C, -1).mean(1)
        (g,) = torch.autograd.grad(loss.sum(), self.Wp)
        loss = loss.detach()
        self.diverged |= ~torch.isfinite(loss)   # a flag, not a host check: no sync
        return loss, g

    def sgd_step(self, g: Tensor) -> None:
        self.V.mul_(self.cfg.momentum).add_(g)
        with torch.no_grad():
            self.Wp.add_(self.V, alpha=-self.lr)

    def draw_uniform(self, k: int) -> Tensor:
        """U(0,1) draws [C, k], each row from its client's generator (as defenses.laplace draws)."""
        u = torch.stack([torch.rand(k, generator=s.gen, device=s.gen.device) for s in self.states])
        return _to(u, self.dev)

    def draw_augment(self, bs: int) -> tuple[Tensor, Tensor, Tensor]:
        """Each client's flips, top and left offsets, drawn as augment_cifar draws them."""
        flips, tops, lefts = [], [], []
        for s in self.states:
            dev = s.gen.device
            flips.append(torch.rand(bs, generator=s.gen, device=dev) < 0.5)
            tops.append(torch.randint(0, 9, (bs,), generator=s.gen, device=dev))
            lefts.append(torch.randint(0, 9, (bs,), generator=s.gen, device=dev))
        return tuple(_to(torch.cat(v), self.dev) for v in (flips, tops, lefts))

    # -- the local training

    def run(self) -> Tensor:
        cfg, t, C, n, bs = self.cfg, self.t, self.C, self.n, self.cfg.batch_size
        t.module.train()
        steps = 0
        for _ in range(cfg.local_epochs):
            perms = torch.stack([torch.randperm(n, generator=s.gen) for s in self.states])
            order = self.indices.gather(1, _to(perms, self.dev))               # [C, n]
            self.begin_epoch()
            for b, start in enumerate(range(0, n, bs)):
                idx = order[:, start:start + bs]
                x, y = t.data.train_x[idx], t.data.train_y[idx]                # [C, b, ...], [C, b]
                if self.augment:
                    flip, top, left = self.draw_augment(idx.shape[1])
                    x = augment_rows(x.flatten(0, 1), flip, top, left, self.fill).view_as(x)
                if self.malicious:
                    self.backdoor_step(x, y)
                else:
                    self.benign_step(b, x, y)
                steps += 1
        forwards = steps * (2 if self.malicious else 1)
        for s, v in zip(self.states, self.V):
            if s.momentum is None:
                s.momentum = torch.zeros_like(v)
            s.momentum.copy_(v)
        stats = [self.buffers[name].reshape(C, -1) for name in self.buffer_layout]
        stats = torch.cat([self.Wp.new_zeros(C, 0), *stats], 1)
        counters = (self.counters + forwards).expand(C, -1)
        out = torch.cat([self.Wp.detach(), stats, counters], 1)
        return out.masked_fill_(self.diverged[:, None], float("nan"))

    def backdoor_step(self, x: Tensor, y: Tensor) -> None:
        """Row-wise :func:`flcore.attacks.backdoor_step` (two forward passes, MGDA)."""
        loss_c, g_c = self.grad(x, y)
        xt = apply_trigger(x.flatten(0, 1), self.trigger).view_as(x)
        loss_b, g_b = self.grad(xt, torch.full_like(y, self.opts.target))
        dt = g_b.dtype
        n_b = mgda_normaliser_rows(loss_b, g_b, self.norm_kind).to(dt)[:, None]
        n_c = mgda_normaliser_rows(loss_c, g_c, self.norm_kind).to(dt)[:, None]
        c = min_norm_weight_rows(g_b / n_b, g_c / n_c)[:, None]
        g = g_b * c.to(dt) + g_c * (1 - c).to(dt)
        self.sgd_step(g)

    def begin_epoch(self) -> None:
        self.w_prev = self.g_prev = self.w_i = self.w_im1 = None

    def benign_step(self, b: int, x: Tensor, y: Tensor) -> None:
        """One benign step with the client defense, row-wise (see :mod:`flcore.defenses`)."""
        kind, o = self.defense, self.dopts
        if kind == "leadfl" and o.variant != "code":
            self.w_im1, self.w_i = self.w_i, self.Wp.detach().clone()
        _, g = self.grad(x, y)
        self.sgd_step(g)
        W = self.Wp.detach()
        with torch.no_grad():
            if kind == "leadfl" and o.variant == "code":
                if b > 0:
                    d = W - self.w_prev - self.g_prev - self.lr
                    g.add_(o.alpha * rows_segment_unit(d, self.seg_ids, self.n_seg))
                    g.clamp_(-o.q, o.q)
                    self.sgd_step(g)
                self.g_prev, self.w_prev = g.clone(), W.clone()
            elif kind == "leadfl":
                if b > 0:
                    dw = self.w_i - self.w_im1
                    if o.variant == "paper":
                        direction = -rows_segment_unit(1 - (W - self.w_i - dw), self.seg_ids, self.n_seg)
                    else:
                        direction = rows_segment_unit(1 - (self.w_i - W + dw), self.seg_ids, self.n_seg)
                    W.add_(direction.clamp_(-o.q, o.q), alpha=-self.lr * o.alpha)
            elif kind == "ldp":
                if b > 0:
                    xi = laplace_from_uniform(self.draw_uniform(self.weight_index.numel()), o.scale)
                    W.index_add_(1, self.weight_index, xi, alpha=self.lr)
            elif kind == "flwbc":
                gw = g[:, self.weight_index]
                if b > 0:
                    xi = laplace_from_uniform(self.draw_uniform(gw.shape[1]), o.scale)
                    W.index_add_(1, self.weight_index, flwbc_mask(xi, gw, self.g_prev), alpha=self.lr)
                self.g_prev = gw

