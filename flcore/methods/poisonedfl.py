"""PoisonedFL: untargeted model poisoning by fake clients with multi-round consistency.

Xie, Fang, Gong, "Model Poisoning Attacks to Federated Learning via Multi-Round
Consistency", CVPR 2025 (reference code: MXNet, ``byzantine.py`` / ``test_agr.py``).

Threat model: the attacker controls injected fake clients and sees only the
global models it receives. Updates are model deltas (local minus global, flat
float32 vectors of length d) that the server adds with server learning rate 1.

The attack keeps one random sign vector s for the whole run and pushes every
coordinate the same way round after round, so that the small per-round pushes
add up even when a robust aggregation rule shrinks each of them.

Per round t (paper's steps; notation of the project's spec):

1. ``s = sign(z)``, ``z ~ N(0, I_d)``, drawn once per run (done in
   :class:`PoisonedFLAttack`).
2. :func:`honest_estimate`: ``u = g_{t-1} - ||g_{t-1}|| / (||m_{t-1}|| + 1e-9) * m_{t-1}``.
3. :func:`template`: ``v = |u| / || |u| ||_2``.
4. :func:`scale` and :func:`malicious_update`: ``lambda_t = c_t ||g_{t-1}||``,
   ``m_t = lambda_t * s ⊙ v``; every fake sends ``m_t``.
5. Every ``window`` rounds, :func:`alignment_count` against
   :func:`alignment_threshold`, and :func:`decay_c`.
6. First round (no global update seen yet): the fakes send zeros.

Adaptive variants (not in the reference code; proposed by the seed report):
:func:`add_noise` (noise adaptation), :func:`flip_signs` (sign flipping),
:func:`partition_dimensions` (dimension partitioning). :func:`fakes_this_round`
reproduces the reference code's number of fakes per round.

Interpretation choices (all documented where they act):

* ``g_{t-1}`` is the last global update, ``w_{t-1} - w_{t-2}``, refreshed after
  *every* round, with or without fakes (reference: ``history`` is set after every
  aggregation).
* ``m_{t-1}`` is the mean of the vectors the fakes submitted the last round they
  took part (reference: ``last_grad`` is only refreshed when ``parti_nfake != 0``);
  zeros until they first take part. It is the mean of what :meth:`craft`
  returned, i.e. after the variants (noise, partition) are applied.
* The alignment test runs on the same schedule as the reference: a snapshot of
  the global model is kept after rounds 0, W, 2W, ... and the test runs after
  rounds W-1, 2W-1, ... (0-based), before crafting rounds W, 2W, ...; the decayed
  c already applies in that round. The tested displacement therefore spans
  W-1 global updates (the reference's schedule, kept as is). The test and the
  decay run whether or not fakes take part in the round.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from scipy.stats import binom

from flcore.core.constants import fake_seed, selection_seed
from flcore.core.errors import ConfigError
from flcore.core.registry import register
from flcore.methods.attacks import Attack, AttackContext

__all__ = [
    "honest_estimate",
    "template",
    "scale",
    "malicious_update",
    "alignment_threshold",
    "alignment_count",
    "decay_c",
    "add_noise",
    "flip_signs",
    "partition_blocks",
    "partition_dimensions",
    "fakes_this_round",
    "PoisonedFLOptions",
    "PoisonedFLAttack",
    "make_poisonedfl",
    "PoisonedFL",
]

_EPS = 1e-9  # the reference code's guard in the honest-part estimate

# ---------------------------------------------------------------------------
# The maths: small pure functions, tensor in, tensor out
# ---------------------------------------------------------------------------


def honest_estimate(g_prev: torch.Tensor, m_prev: torch.Tensor) -> torch.Tensor:
    """Estimate the genuine clients' part of the last global update (step 2).

    ``u = g_{t-1} - ||g_{t-1}|| / (||m_{t-1}|| + 1e-9) * m_{t-1}``

    Parameters
    ----------
    g_prev : [d] last global update ``w_{t-1} - w_{t-2}``.
    m_prev : [d] mean of the fakes' submitted vectors the last time they took
        part; zeros before they first take part, in which case ``u = g_prev``.
    """
    g_norm = torch.linalg.vector_norm(g_prev)
    m_norm = torch.linalg.vector_norm(m_prev)
    return g_prev - (g_norm / (m_norm + _EPS)) * m_prev


def template(u: torch.Tensor) -> torch.Tensor:
    """Unit-norm magnitude template (step 3): ``v = |u| / || |u| ||_2``.

    Degenerate case: ``u = 0`` gives ``v = 0`` (no direction to copy), so the
    fakes then send zeros; never NaN.
    """
    a = u.abs()
    n = torch.linalg.vector_norm(a)
    if n == 0:
        return torch.zeros_like(a)
    return a / n


def scale(c: float, g_prev: torch.Tensor) -> float:
    """Scale of the malicious update (step 4): ``lambda_t = c_t * ||g_{t-1}||``."""
    return float(c) * float(torch.linalg.vector_norm(g_prev))


def malicious_update(s: torch.Tensor, v: torch.Tensor, lam: float) -> torch.Tensor:
    """The vector every fake sends (step 4): ``m_t = lambda_t * s ⊙ v``.

    Its norm is ``lambda_t`` when ``v`` has unit norm, and its sign pattern is
    ``s`` wherever ``v`` is non-zero.
    """
    return lam * (s * v)


def alignment_threshold(d: int, confidence: float = 0.99) -> int:
    """Threshold of the alignment test (step 5): ``k = binom.ppf(confidence, d, 1/2)``.

    If the global model moved independently of s, the number of coordinates
    whose displacement sign matches s would be Binomial(d, 1/2); fewer than
    ``k`` matches means the attack is not showing through, so c is decayed.
    Computed from d (the reference code hard-codes it for four models; scipy
    gives the same numbers, e.g. 70415 for d = 139960).
    """
    if d < 1:
        raise ValueError(f"alignment_threshold needs d >= 1, got {d}")
    return int(binom.ppf(confidence, d, 0.5))


def alignment_count(delta: torch.Tensor, w_now: torch.Tensor, s: torch.Tensor) -> int:
    """Number of coordinates moving along s over the window (step 5).

    ``Delta = w_now - w_then``; coordinates with ``Delta_j = 0`` take the sign
    of the current weight ``w_now_j`` instead (as the reference code does), and
    ``X = #{j : sign(Delta_j) = s_j}``. A coordinate with ``Delta_j = 0`` and
    ``w_now_j = 0`` has sign 0 and never counts.
    """
    moved = torch.where(delta == 0, w_now, delta)
    return int((torch.sign(moved) == s).sum().item())


def decay_c(c: float, aligned: bool, beta: float = 0.7, floor: float = 0.5) -> float:
    """Scaling-factor decay (step 5): ``c <- beta * c`` if not aligned and ``beta * c >= floor``.

    Otherwise c is unchanged: c never grows, and it stops at the last value
    whose decay would fall below ``floor`` (c0 = 8 stops at 8 * 0.7^7 ≈ 0.659).
    """
    if not aligned and beta * c >= floor:
        return c * beta
    return c


def add_noise(
    m: torch.Tensor, lam: float, gamma: float, n_fakes: int, generator: torch.Generator
) -> torch.Tensor:
    """Noise adaptation: fake i sends ``m + gamma * lambda * eps_i / ||eps_i||``, ``eps_i ~ N(0, I)``.

    Every fake's vector sits at distance exactly ``gamma * lambda`` from ``m``
    (a random direction per fake and round), so the fakes are no longer exact
    copies. The noise is drawn on the generator's device (use a CPU generator
    for device-independent draws) and moved to ``m``'s device.

    Parameters
    ----------
    m : [d] the shared malicious vector.
    lam : the round's scale lambda_t.
    gamma : relative noise level, >= 0; 0 returns ``n_fakes`` copies of ``m``.
    Returns [n_fakes, d].
    """
    out = m.unsqueeze(0).repeat(n_fakes, 1)
    if gamma == 0 or n_fakes == 0:
        return out
    eps = torch.randn(n_fakes, m.numel(), generator=generator, dtype=torch.float32,
                      device=generator.device)
    eps = eps.to(device=m.device, dtype=m.dtype)
    norms = torch.linalg.vector_norm(eps, dim=1, keepdim=True).clamp_min(torch.finfo(eps.dtype).tiny)
    return out + (gamma * lam) * eps / norms


def flip_signs(s: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Sign flipping: a copy of s with each entry flipped independently with probability p.

    Drawn afresh each round; the base ``s`` is left unchanged (the alignment
    test keeps using it). ``p = 0`` returns a copy of ``s``.
    """
    if p == 0:
        return s.clone()
    r = torch.rand(s.numel(), generator=generator, device=generator.device).to(s.device)
    return torch.where(r < p, -s, s)


def partition_blocks(
    d: int, n_fakes: int, generator: torch.Generator | None, mode: str = "random"
) -> list[torch.Tensor]:
    """Split the coordinates 0..d-1 into ``n_fakes`` disjoint blocks that cover them all.

    ``mode="random"``: a random permutation drawn from ``generator`` cut into
    near-equal consecutive pieces, so blocks do not follow the layer structure;
    passing a generator seeded the same way every round gives a partition fixed
    for the run. ``mode="contiguous"``: consecutive index ranges (no generator).
    Block sizes differ by at most one; if ``n_fakes > d`` some blocks are empty.
    Returns a list of ``n_fakes`` index tensors (CPU, int64).
    """
    if n_fakes < 1:
        raise ValueError(f"partition needs n_fakes >= 1, got {n_fakes}")
    if mode == "random":
        if generator is None:
            raise ValueError("partition mode 'random' needs a generator")
        order = torch.randperm(d, generator=generator, device=generator.device).cpu()
    elif mode == "contiguous":
        order = torch.arange(d)
    else:
        raise ValueError(f"unknown partition mode {mode!r}; valid: random, contiguous")
    return list(torch.tensor_split(order, n_fakes))


def partition_dimensions(
    m: torch.Tensor, n_fakes: int, generator: torch.Generator | None, mode: str = "random"
) -> torch.Tensor:
    """Dimension partitioning: fake i sends ``n_fakes * m`` restricted to its block, zeros elsewhere.

    Aggregation rules average, so the factor ``n_fakes`` keeps the *mean* of the
    fakes' vectors equal to ``m`` exactly (their sum is ``n_fakes * m``, as for
    identical copies). What changes is the similarity between fakes: their
    vectors have disjoint supports, hence are orthogonal. Each vector has the
    sign of ``m`` on its block. Blocks: :func:`partition_blocks`.
    Returns [n_fakes, d].
    """
    blocks = partition_blocks(m.numel(), n_fakes, generator, mode)
    out = torch.zeros(n_fakes, m.numel(), dtype=m.dtype, device=m.device)
    for i, idx in enumerate(blocks):
        idx = idx.to(m.device)
        out[i, idx] = n_fakes * m[idx]
    return out


def fakes_this_round(n_fakes_total: int, participation: float, generator: torch.Generator) -> int:
    """Number of fakes taking part this round, as in the reference code.

    ``expected = n_fakes_total * participation``; the count is
    ``floor(expected) + Bernoulli(frac(expected))``, so its mean is ``expected``
    (240 fakes at 2.5% participation: always 6).
    """
    expected = n_fakes_total * participation
    # drop float noise such as 240 * 0.025 = 6.000000000000001
    expected = round(expected, 9)
    base = math.floor(expected)
    frac = expected - base
    if frac > 0 and float(torch.rand(1, generator=generator, device=generator.device)) < frac:
        return base + 1
    return base


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------

_PARTITION_MODES = ("random", "contiguous")


@dataclass(frozen=True)
class PoisonedFLOptions:
    """Options of the PoisonedFL attack, nested under ``poisonedfl`` in a configuration.

    Defaults are the reference setting (scripts pass ``--sf 8``; 240 fakes).
    """

    fake_clients: int = 240      # fakes in the population; per round see fakes_this_round
    c0: float = 8.0              # initial scaling factor c (reference --sf 8)
    beta: float = 0.7            # decay factor of c on a failed alignment test
    c_floor: float = 0.5         # c decays only while beta * c >= c_floor
    window: int = 50             # rounds between alignment tests (reference: 50)
    confidence: float = 0.99     # binomial quantile of the alignment threshold
    noise_gamma: float = 0.0     # noise adaptation, relative to lambda_t (0 = off)
    flip_p: float = 0.0          # sign flipping: per-entry flip probability per round (0 = off)
    partition: bool = False      # dimension partitioning among the round's fakes
    partition_mode: str = "random"  # "random" (fixed per run) or "contiguous" blocks
    # "official": each round clients_per_round genuine clients plus
    # fakes_this_round(fake_clients, clients_per_round / clients) fakes;
    # "random": clients_per_round + fake_clients * participation (rounded) drawn
    # uniformly from genuine and fake clients together, so the fakes' share varies.
    selection: str = "official"

    def check(self, cfg=None) -> None:
        """Raise ConfigError naming the first invalid option and its valid range."""

        def bad(name: str, rule: str) -> None:
            raise ConfigError(f"poisonedfl.{name} = {getattr(self, name)!r} is invalid: {rule}")

        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    bad(f.name, "must be an integer")
            elif f.type in ("float", float):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    bad(f.name, "must be a finite number")
            elif f.type in ("bool", bool):
                if not isinstance(value, bool):
                    bad(f.name, "must be true or false")
            elif f.type in ("str", str):
                if not isinstance(value, str):
                    bad(f.name, "must be a string")
        if self.fake_clients < 0:
            bad("fake_clients", "must be >= 0")
        if not self.c0 > 0:
            bad("c0", "must be > 0")
        if not 0 < self.beta <= 1:
            bad("beta", "must be in (0, 1] (1 = never decay)")
        if self.c_floor < 0:
            bad("c_floor", "must be >= 0")
        if self.window < 1:
            bad("window", "must be >= 1")
        if not 0 < self.confidence < 1:
            bad("confidence", "must be in (0, 1)")
        if self.noise_gamma < 0:
            bad("noise_gamma", "must be >= 0 (0 = off)")
        if not 0 <= self.flip_p <= 1:
            bad("flip_p", "must be in [0, 1] (0 = off)")
        if self.selection not in ("official", "random"):
            bad("selection", "must be one of official, random")
        if self.partition_mode not in _PARTITION_MODES:
            bad("partition_mode", f"must be one of {', '.join(_PARTITION_MODES)}")


# ---------------------------------------------------------------------------
# The stateful driver
# ---------------------------------------------------------------------------

# independent random streams, each derived from (run seed, stream, round)
_STREAM_S, _STREAM_NOISE, _STREAM_FLIP, _STREAM_PARTITION = 0, 1, 2, 3


def _cpu_generator(seed: int, *key: int) -> torch.Generator:
    state = np.random.SeedSequence([seed % 2**63, *key]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state) % 2**63)


class PoisonedFLAttack:
    """PoisonedFL state for one run; the engine calls :meth:`craft` then :meth:`observe` each round.

    Protocol, round ``r`` (0-based, as in the reference code):

    * ``craft(r, n_fakes, w_global)`` with the global model the round starts
      from; returns the ``[n_fakes, d]`` deltas the fakes submit. It may be
      skipped in rounds without fakes (if it is skipped in the very first
      round, the first global update is only known after the second round).
    * ``observe(r, w_global_new)`` after aggregation, every round (fakes or not).

    All random draws (s, noise, flips, partition) come from CPU generators
    seeded from ``(seed, stream, round)``: a run is reproducible, independent of
    the device, and a round's draws do not depend on earlier calls.
    State: base signs ``s``, scaling factor ``c``, last global update ``g``,
    last mean fake vector ``m``, the snapshot for the alignment test, and the
    previous global model.
    """

    def __init__(self, d: int, opts: PoisonedFLOptions, seed: int, device: str | torch.device = "cpu"):
        opts.check()
        if d < 1:
            raise ValueError(f"PoisonedFL needs d >= 1, got {d}")
        self.d = int(d)
        self.opts = opts
        self.seed = int(seed)
        self.device = torch.device(device)
        z = torch.randn(self.d, generator=_cpu_generator(self.seed, _STREAM_S))
        s = torch.sign(z)
        s[s == 0] = 1.0  # a zero draw counts as +1
        self.s = s.to(self.device, torch.float32)
        self.c = float(opts.c0)
        self.threshold = alignment_threshold(self.d, opts.confidence)
        self.g_prev: torch.Tensor | None = None  # last global update; None before the first one
        self.m_prev = torch.zeros(self.d, dtype=torch.float32, device=self.device)
        self._w_last: torch.Tensor | None = None  # last global model seen
        self._w_snapshot: torch.Tensor | None = None  # global model at the start of the window
        self.last_alignment: int | None = None
        self.last_aligned: bool | None = None
        self.last_lam: float = 0.0
        self.last_record: dict = {}
        self._pending: dict | None = None

    # -- per round ---------------------------------------------------------

    def craft(self, round: int, n_fakes: int, w_global: torch.Tensor) -> torch.Tensor:
        """Deltas the ``n_fakes`` fakes submit in round ``round``, shape ``[n_fakes, d]``.

        First round (no global update observed yet): zeros. Otherwise
        ``m = c ||g|| s_r ⊙ template(honest_estimate(g, m_prev))`` with
        ``s_r = s`` or its per-round flipped copy, then partitioned and/or
        noised if those variants are on. When ``n_fakes > 0`` the mean of the
        returned rows becomes ``m_prev`` for the next rounds.
        """
        o = self.opts
        w = self._flat(w_global)
        if self._w_last is None:
            self._w_last = w.clone()
        if n_fakes < 0:
            raise ValueError(f"n_fakes must be >= 0, got {n_fakes}")
        if self.g_prev is None:
            lam = 0.0
            out = torch.zeros(n_fakes, self.d, dtype=torch.float32, device=self.device)
        else:
            v = template(honest_estimate(self.g_prev, self.m_prev))
            lam = scale(self.c, self.g_prev)
            s_r = self.s
            if o.flip_p > 0:
                s_r = flip_signs(self.s, o.flip_p, _cpu_generator(self.seed, _STREAM_FLIP, round))
            m = malicious_update(s_r, v, lam)
            if n_fakes == 0:
                out = m.new_zeros(0, self.d)
            else:
                if o.partition:
                    gen = _cpu_generator(self.seed, _STREAM_PARTITION) if o.partition_mode == "random" else None
                    out = partition_dimensions(m, n_fakes, gen, o.partition_mode)
                else:
                    out = m.unsqueeze(0).repeat(n_fakes, 1)
                if o.noise_gamma > 0:
                    gen = _cpu_generator(self.seed, _STREAM_NOISE, round)
                    out = add_noise(torch.zeros_like(m), lam, o.noise_gamma, n_fakes, gen) + out
        if n_fakes > 0:
            self.m_prev = out.mean(dim=0)
        self.last_lam = lam
        self._pending = {"round": int(round), "n_fakes": int(n_fakes), "c": self.c, "lam": lam}
        return out

    def observe(self, round: int, w_global_new: torch.Tensor) -> None:
        """Record the global model after round ``round``'s aggregation.

        Updates ``g = w_new - w_previous`` (every round, fakes or not); keeps a
        snapshot after rounds 0, W, 2W, ...; after rounds W-1, 2W-1, ... runs
        the alignment test against the snapshot and decays c if it fails (see
        the module docstring for the schedule). Sets :attr:`last_record`.
        """
        W = self.opts.window
        w = self._flat(w_global_new)
        if self._w_last is not None:
            self.g_prev = w - self._w_last
        self._w_last = w.clone()

        rec = self._pending if self._pending and self._pending["round"] == round else {
            "round": int(round), "n_fakes": 0, "c": self.c, "lam": None}
        self._pending = None
        rec.update({"tested": False, "alignment": None, "threshold": self.threshold, "aligned": None})

        if (round + 1) % W == 0 and self._w_snapshot is not None:
            x = alignment_count(w - self._w_snapshot, w, self.s)
            aligned = x >= self.threshold
            self.c = decay_c(self.c, aligned, self.opts.beta, self.opts.c_floor)
            self.last_alignment, self.last_aligned = x, aligned
            rec.update({"tested": True, "alignment": x, "aligned": aligned})
        if round % W == 0:
            self._w_snapshot = w.clone()
        rec["c_next"] = self.c
        self.last_record = rec

    def state_dict(self) -> dict:
        """JSON-friendly summary for logging: c, last alignment count and verdict, threshold, lambda."""
        return {
            "c": self.c,
            "lam": self.last_lam,
            "alignment": self.last_alignment,
            "aligned": self.last_aligned,
            "threshold": self.threshold,
            "d": self.d,
        }

    # -- helpers -------------------------------------------------------------

    def _flat(self, w: torch.Tensor) -> torch.Tensor:
        w = w.detach().reshape(-1).to(self.device, torch.float32)
        if w.numel() != self.d:
            raise ValueError(f"PoisonedFL expected a model of {self.d} parameters, got {w.numel()}")
        return w


def make_poisonedfl(d: int, opts: PoisonedFLOptions, seed: int, device: str | torch.device = "cpu") -> PoisonedFLAttack:
    """Build the PoisonedFL attack state for a model of ``d`` parameters."""
    return PoisonedFLAttack(d, opts, seed, device)


@register("attack", "poisonedfl", options=PoisonedFLOptions, paper="Xie, Fang, Gong, CVPR 2025")
class PoisonedFL(Attack):
    """PoisonedFL in the attack protocol (:mod:`flcore.methods.attacks`): model poisoning by fake
    clients; the run's malicious clients (if any) train honestly.

    Selection: ``selection: official`` keeps the schedule's genuine clients and adds
    :func:`fakes_this_round` fakes, drawn on the run's own generator (seeded
    ``fake_seed(seed)``); ``random`` draws ``clients_per_round + fake_clients * participation``
    (rounded) from genuine and fake clients together (seeded by the round). Fake updates:
    :meth:`PoisonedFLAttack.craft` (every round), :meth:`PoisonedFLAttack.observe` after each
    aggregation; the state is built on the first round, for updates as long as the aggregated
    state it is given. The round's record is the state's ``last_record``."""

    def __init__(self, cfg, context: AttackContext):
        super().__init__(cfg, context)
        self.opts: PoisonedFLOptions = cfg.options("poisonedfl")
        self.fake_gen = torch.Generator().manual_seed(fake_seed(cfg.seed))
        self.state: PoisonedFLAttack | None = None

    @classmethod
    def expected_fakes(cls, cfg) -> int:
        opts = cfg.methods.get("poisonedfl")
        return 0 if opts is None else int(round(opts.fake_clients * cfg.clients_per_round / cfg.clients))

    def select(self, rnd: int, scheduled) -> tuple[list[int], int]:
        cfg, opts = self.cfg, self.opts
        participation = cfg.clients_per_round / cfg.clients
        if opts.selection == "random":
            rs = np.random.RandomState(selection_seed(rnd))
            k = cfg.clients_per_round + int(round(opts.fake_clients * participation))
            drawn = rs.choice(cfg.clients + opts.fake_clients, k, replace=False) + 1
            return [int(c) for c in drawn if c <= cfg.clients], int((drawn > cfg.clients).sum())
        selected = scheduled()
        return selected, fakes_this_round(opts.fake_clients, participation, self.fake_gen)

    def fake_updates(self, rnd: int, n_fake: int, global_w: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            self.state = make_poisonedfl(global_w.numel(), self.opts, self.cfg.seed, self.context.device)
        return self.state.craft(rnd, n_fake, global_w)

    def observe(self, rnd: int, global_w: torch.Tensor) -> None:
        self.state.observe(rnd, global_w)

    def record(self) -> dict:
        return self.state.last_record
