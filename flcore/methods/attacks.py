"""Attacks: ``none``, the 9-pixel pattern ``backdoor`` and ``poisonedfl`` (in :mod:`flcore.methods.poisonedfl`).

One protocol for every attack
-----------------------------
An attack is registered as a class, ``@register("attack", name, options=...)``, whose
constructor is the attack's factory: ``make(cfg, context) -> Attack`` (``registry.get("attack",
cfg.attack).fn(cfg, AttackContext(...))``, once per run, by :class:`flcore.sim.engine.Run`). The
engine knows no attack by name; it asks the run's :class:`Attack` object, whose defaults are
those of ``none`` (no malicious behaviour at all):

* ``select(rnd, scheduled) -> (genuine clients, n_fake)``: the round's selection.
  ``scheduled()`` is the schedule's choice of genuine clients; the default takes it and adds
  no fake clients (model poisoning by fakes chooses how many take part, and may replace the
  schedule's draw, as PoisonedFL's ``selection: random``).
* ``is_malicious(client) -> bool``: whether a selected genuine client trains with the attack's
  :attr:`Attack.local_training` (data poisoning). Default: the run's malicious clients
  (``context.malicious``) if the attack has a local training, else nobody.
* ``local_training``: a class attribute, the :class:`flcore.methods.defenses.ClientBehaviour`
  (constructed ``(rows, options)`` by :class:`flcore.sim.engine.Rows`, the attack's options)
  with which a malicious client trains; None (default): malicious clients train honestly,
  with the run's client defense. Besides what a client defense uses of the rows, it may read
  ``r.cfg`` (the rows' shared configuration) and ``r.data`` (the dataset: its normalisation).
* ``fake_updates(rnd, n_fake, global_w) -> [n_fake, d]``: what the round's fake clients send
  (model poisoning), deltas of the aggregated part of the state ``global_w`` ``[d]`` (the global
  model the round starts from); called every round, also with ``n_fake == 0`` (an attack may
  keep state), after the genuine clients' local training. Default: None (never any fakes).
* ``observe(rnd, global_w)``: the new global model after the round's aggregation (not after a
  divergence). Default: nothing.
* ``record() -> dict | None``: the attack's part of the round's record (stored as the round's
  ``attack``), read after ``observe``; None (default): none.

Configuration-time questions are class methods (no run needed): ``check(cfg)`` (checks of the
run's configuration beyond the options' own, called by :func:`flcore.core.config.check`) and
``expected_fakes(cfg)`` (fake updates expected per round: aggregation rules check their options
against the updates they aggregate, :func:`flcore.core.config.clients_aggregated`).

The three attacks: ``none`` is :class:`Attack` itself; ``backdoor`` (:class:`Backdoor`) only
sets ``local_training`` (data poisoning by the malicious clients); ``poisonedfl``
(:class:`flcore.methods.poisonedfl.PoisonedFL`) adds fake clients and their updates (model
poisoning), its malicious clients (if any) training honestly.

The backdoor
------------
The backdoor is the attack of the LeadFL paper's tables (Zhu, Roos, Chen, ICML
2023), as its reference code runs it through the backdoors101 library
(Bagdasaryan & Shmatikov, "Blind Backdoors in Deep Learning Models", USENIX
Security 2021): a malicious client trains on its own partition with, for every
batch, a clean loss and a loss on a fully triggered copy labelled with the
target class, combined by the two-task MGDA min-norm weighting (Sener & Koltun,
NeurIPS 2018).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from flcore.core.errors import ConfigError
from flcore.core.registry import register

# ----------------------------------------------------------------------------- the protocol


@dataclass(frozen=True)
class AttackContext:
    """What the engine tells an attack about its run, besides the configuration: the run's
    malicious client ids (:func:`flcore.methods.schedules.malicious_set`, the set the schedule
    uses) and the device of its tensors."""

    malicious: frozenset[int]
    device: torch.device


# ----------------------------------------------------------------------------- trigger
# (row, column, value) of the 9-pixel pattern, 0-indexed, applied to every channel.
TRIGGER = ((3, 23, 1), (3, 24, 0), (3, 25, 1),
           (4, 24, 1),
           (5, 25, 0),
           (6, 24, 1),
           (7, 23, 1), (7, 24, 0), (7, 25, 1))

# Statistics the backdoor library normalises the trigger with (not the data pipeline's).
MNIST_STATS = ((0.1307,), (0.3081,))
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


def trigger_values(dataset: str, mode: str, data_mean, data_std) -> Tensor:
    """Per-channel values written for trigger value 1 and 0: tensor [2, C].

    ``reference``: normalised with the backdoor library's statistics (MNIST stats
    on Fashion-MNIST, so "1" -> 2.8215 and "0" -> -0.4242 written into [0, 1]
    images; CIFAR stats on CIFAR-10, written into ImageNet-normalised images).
    ``clean``: the pixel values 1 and 0 put through the data pipeline's own
    normalisation, so the trigger is an in-range image patch.
    """
    if mode == "reference":
        mean, std = MNIST_STATS if dataset == "fmnist" else CIFAR_STATS
    else:
        mean, std = data_mean, data_std
    mean, std = torch.tensor(mean), torch.tensor(std)
    return torch.stack([(1 - mean) / std, (0 - mean) / std])


def apply_trigger(x: Tensor, values: Tensor) -> Tensor:
    """A copy of the batch ``x`` [B, C, H, W] with the 9-pixel pattern written in."""
    x = x.clone()
    values = values.to(x.device, x.dtype)
    for r, c, v in TRIGGER:
        x[:, :, r, c] = values[1 - v]
    return x


# ----------------------------------------------------------------------------- MGDA
def row_dot(a: Tensor, b: Tensor) -> Tensor:
    """Dot product of each row of ``a`` with the same row of ``b`` (``[C, P]`` -> ``[C]``).

    One row: the BLAS dot of the vectors, the summation order the per-client engine has always
    used (so its numbers stay); several rows: ``torch.linalg.vecdot`` (another order, equal to
    float rounding)."""
    if a.shape[0] == 1:
        return (a[0] @ b[0]).view(1)
    return torch.linalg.vecdot(a, b)


def min_norm_weight(a: Tensor, b: Tensor) -> Tensor:
    """Weight ``c`` of ``a`` in the min-norm point ``c*a + (1-c)*b`` of the segment [a, b], per
    row (``[C, P]`` -> float64 ``[C]``).

    c = (b.b - a.b) / ||a - b||^2, with the library's edge values: c = 0.999 when
    a.b >= a.a and c = 0.001 when a.b >= b.b. The dot products are rounded in the rows'
    precision, the rest is float64 (as the library's Python floats).
    """
    aa, ab, bb = (row_dot(u, v).double() for u, v in ((a, a), (a, b), (b, b)))
    c = (bb - ab) / (aa + bb - 2 * ab)
    c = torch.where(ab >= bb, torch.full_like(c, 0.001), c)
    return torch.where(ab >= aa, torch.full_like(c, 0.999), c)


def mgda_normaliser(loss: Tensor, grad: Tensor, kind: str) -> Tensor:
    """Per row (losses ``[C]``, gradients ``[C, P]``; float64 ``[C]``): ``loss``: min(loss, 10)
    (Fashion-MNIST config); ``loss+``: min(loss*||g||, 10) (CIFAR-10); both + 1e-5."""
    loss = loss.double()
    if kind == "loss":
        return loss.clamp(max=10.0) + 1e-5
    return (loss * torch.linalg.vector_norm(grad, dim=1).double()).clamp(max=10.0) + 1e-5


def mgda_combine(g_b: Tensor, g_c: Tensor, c: Tensor) -> Tensor:
    """The step direction c*g_b + (1-c)*g_c per row (``c`` float64 ``[C]``, rounded to the
    gradients' precision as the library's Python float is)."""
    dt = g_b.dtype
    return torch.addcmul(g_b * c.to(dt)[:, None], g_c, (1 - c).to(dt)[:, None])


@dataclass(frozen=True)
class BackdoorOptions:
    """9-pixel pattern backdoor.

    target: the target label (8).
    trigger: ``reference`` (library statistics) or ``clean`` (data statistics).
    normaliser: MGDA gradient normalisation; ``auto`` = ``loss`` on Fashion-MNIST
      and ``loss+`` on CIFAR-10, as the reference configs.
    """

    target: int = 8
    trigger: Literal["reference", "clean"] = "reference"
    normaliser: Literal["auto", "loss", "loss+"] = "auto"

    def check(self, cfg) -> None:
        if not (0 <= self.target <= 9):
            raise ConfigError(f"backdoor.target must be a class label 0..9, got {self.target}")

    def resolved_normaliser(self, dataset: str) -> str:
        if self.normaliser != "auto":
            return self.normaliser
        return "loss" if dataset == "fmnist" else "loss+"


@register("attack", "none", paper="no attack")
class Attack:
    """No attack, and the protocol of every attack (see the module docstring): malicious
    clients (if any) train honestly, no fake clients. Subclasses override what they do."""

    #: The client behaviour of a malicious client's local training (None: it trains honestly).
    local_training: type | None = None

    def __init__(self, cfg, context: AttackContext):
        self.cfg, self.context = cfg, context

    @classmethod
    def check(cls, cfg) -> None:
        """Raise ConfigError where the run's configuration does not suit the attack."""

    @classmethod
    def expected_fakes(cls, cfg) -> int:
        """Fake updates the server expects per round (0: none)."""
        return 0

    def select(self, rnd: int, scheduled: Callable[[], list[int]]) -> tuple[list[int], int]:
        """The round's genuine clients and number of fake clients: the schedule's, no fakes."""
        return scheduled(), 0

    def is_malicious(self, client: int) -> bool:
        """Whether the selected genuine ``client`` trains with :attr:`local_training`."""
        return self.local_training is not None and client in self.context.malicious

    def fake_updates(self, rnd: int, n_fake: int, global_w: Tensor) -> Tensor | None:
        """The ``[n_fake, d]`` deltas the round's fake clients send; None: the attack has none."""
        return None

    def observe(self, rnd: int, global_w: Tensor) -> None:
        """The global model after round ``rnd``'s aggregation."""

    def record(self) -> dict | None:
        """The attack's part of the round's record (None: none)."""
        return None


class BackdoorTraining:
    """The malicious clients' local training, row-wise (the protocol of
    :class:`flcore.methods.defenses.ClientBehaviour`): each step makes two forward/backward passes
    (clean batch, then its fully triggered copy labelled ``target``); each task gradient is
    divided by its normaliser; MGDA weight c of the backdoor task; the step uses
    c*g_backdoor + (1-c)*g_clean, the gradient of c*L_backdoor + (1-c)*L_clean. No update
    boosting. The trigger's values come from the rows' dataset (:func:`trigger_values`)."""

    def __init__(self, r, opts: BackdoorOptions):
        self.r, self.opts = r, opts
        self.kind = opts.resolved_normaliser(r.cfg.dataset)
        self.trigger = trigger_values(r.cfg.dataset, opts.trigger, r.data.mean, r.data.std).to(r.W.device)

    def begin_epoch(self) -> None:
        pass

    def step(self, b: int, x: Tensor, y: Tensor) -> None:
        r, kind = self.r, self.kind
        loss_c, g_c = r.grad(x, y)
        g_c = g_c.clone()
        loss_b, g_b = r.grad(apply_trigger(x.flatten(0, 1), self.trigger).view_as(x),
                             torch.full_like(y, self.opts.target))
        dt = g_b.dtype
        c = min_norm_weight(g_b / mgda_normaliser(loss_b, g_b, kind).to(dt)[:, None],
                            g_c / mgda_normaliser(loss_c, g_c, kind).to(dt)[:, None])
        r.sgd_step(mgda_combine(g_b, g_c, c))


@register("attack", "backdoor", options=BackdoorOptions,
          paper="Bagdasaryan & Shmatikov, USENIX Security 2021 (as run by LeadFL, ICML 2023)")
class Backdoor(Attack):
    """Data poisoning: the run's malicious clients, when selected, train with
    :class:`BackdoorTraining`; no fake clients. The evaluation's backdoor accuracy reads the
    same options (:func:`flcore.sim.engine.eval_sets`)."""

    local_training = BackdoorTraining

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.malicious_clients == 0:
            raise ConfigError("attack 'backdoor' needs malicious_clients > 0 (or set attack: none)")
