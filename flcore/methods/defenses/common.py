"""What the client defenses share: the protocol of a client behaviour, Laplace noise, ``add_at``.

:class:`ClientBehaviour` is the protocol of every client behaviour (the defenses
here and the attacks' malicious local training); :func:`laplace_from_uniform`,
:func:`laplace`, :func:`add_at` and :class:`NoiseOptions` are the noise of LDP
(:mod:`~flcore.methods.defenses.ldp`) and FL-WBC (:mod:`~flcore.methods.defenses.flwbc`).
See :mod:`flcore.methods.defenses` for the notation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flcore.core.errors import ConfigError


def laplace_from_uniform(u: Tensor, scale: float) -> Tensor:
    """Laplace(0, scale) samples from U(0, 1) samples ``u`` by the inverse CDF."""
    u = u - 0.5
    u = u.clamp_min(-0.5 + torch.finfo(u.dtype).eps / 2)  # rand() == 0 would give log1p(-1) = -inf
    return -scale * torch.sign(u) * torch.log1p(-2 * u.abs())


def laplace(shape, scale: float, generator: torch.Generator, device) -> Tensor:
    """Laplace(0, scale) samples by inverse CDF (so a seeded generator drives them).

    Drawn on the generator's device (a client's CPU generator) and moved to ``device``,
    so a run on a GPU adds the same noise as on the CPU."""
    u = torch.rand(shape, generator=generator, device=generator.device).to(device)
    return laplace_from_uniform(u, scale)


def add_at(w: Tensor, index: Tensor, values: Tensor, alpha: float) -> None:
    """w[:, index] += alpha * values, row by row (``w`` [C, P], ``values`` [C, len(index)]),
    in place; each row as ``index_add_`` adds into a vector (the per-client engine's numbers)."""
    for row, v in zip(w, values):
        row.index_add_(0, index, v, alpha=alpha)


class ClientBehaviour:
    """The protocol of every client behaviour (a client defense, or an attack's malicious
    local training): constructed once per local training with the rows ``r``
    (:class:`flcore.sim.engine.Rows`) and the method's options; ``begin_epoch()`` at each epoch
    start; ``step(b, x, y)`` does the whole local step of batch ``b`` on every row.

    What a behaviour may use of ``r``: ``r.W`` (the rows' trainable parameters ``[C, P]``,
    changed in place), ``r.grad(x, y)`` (per-row cross-entropy losses ``[C]`` and gradients
    ``[C, P]``), ``r.sgd_step(g)`` (momentum SGD with each row's persistent buffer),
    ``r.lr``, ``r.uniform(k)`` (``[C, k]`` U(0, 1) draws, each row from its client's
    generator), ``r.weight_segments`` / ``r.param_segments`` / ``r.weight_index``."""

    def __init__(self, r, opts):
        self.r, self.opts = r, opts

    def begin_epoch(self) -> None:
        pass

    def step(self, b: int, x: Tensor, y: Tensor) -> None:
        r = self.r
        _, g = r.grad(x, y)
        r.sgd_step(g)


@dataclass(frozen=True)
class NoiseOptions:
    """Scale s of the Laplace(0, s) noise (reference pert_strength = 0.2)."""

    scale: float = 0.2

    def check(self, cfg) -> None:
        if not (self.scale >= 0):
            raise ConfigError(f"noise scale must be >= 0, got {self.scale}")
