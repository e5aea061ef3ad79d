"""How long runs and sweeps will take here: from comparable stored runs, else from costs
measured on this device with the thread count the runs will use, with a range.

A run's estimate, in order of preference:

1. **Stored.** Stored runs of the same cost (same dataset, model, local epochs, batch size,
   clients, clients per round, evaluation size and interval, aggregator, client defense and
   attack), made on the same kind of device with the same number of torch threads: their wall
   time per round times the run's rounds; median, range from the fastest to the slowest.
2. **Measured.** Otherwise the run is set up as :func:`flcore.sim.engine.simulate` sets it up
   (:class:`flcore.sim.engine.Simulation`: its data, network, trainer, client split, attack,
   aggregator, evaluation sets) and its costs are timed here, now, with ``threads`` torch
   threads: a benign client's local SGD step (with the run's client defense), a malicious
   client's step (the attack's local training, where it has one), one evaluation per test
   image, one round's server step (the attack's fake updates and the aggregation,
   :meth:`flcore.sim.engine.Run.aggregate`, on random client states), the setup. Each is timed
   :data:`REPEATS` times; the run's estimate is ``setup + sum over rounds (steps of its benign
   and malicious clients x their step cost + aggregation) + evaluations x evaluation cost``,
   with the clients of each round from the run's selection step
   (:class:`flcore.sim.engine.Selection`) and each client's number of batches from the split. The middle value uses
   the median of the repeats, the range their minimum and maximum, widened by
   :data:`UNMODELLED` for what the model leaves out (the per-round bookkeeping, the load of
   the machine changing while the runs go).

A sweep's wall time adds the start of its worker processes (:data:`IMPORT_S`, and the dataset
loaded, timed) to the runs' estimates spread over the workers (never less than its longest run). The costs of a configuration are
measured once per process (:data:`_MEASURED`); a dry run of a sweep measures each distinct
cost once, about a second each. The evaluation's cost depends only on what is evaluated
(:func:`flcore.sim.engine.eval_key` and the network), so it is timed once per evaluation
(:data:`_EVALUATION`); a local step's only on the data, network, batch, client defense and
attack (:func:`step_key`), so the rules of a grid share it (:data:`_STEPS`); and a cost whose warm-up call takes :data:`LONG_S` or more (a
paper-protocol evaluation of CIFAR-10's 2 x 10,000 test images) is timed once more instead of
:data:`REPEATS` times.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass

REPEATS = 3  # timings of each cost
LONG_S = 1.0  # a cost whose warm-up call takes this long is timed once more, not REPEATS times
STEPS = 4  # local SGD steps per timing
UNMODELLED = (0.9, 1.3)  # the range's widening: bookkeeping per round and a changing load


@dataclass(frozen=True)
class Span:
    """Seconds: a middle value and a range."""

    low: float
    mid: float
    high: float

    def __add__(self, other: "Span") -> "Span":
        return Span(self.low + other.low, self.mid + other.mid, self.high + other.high)

    def scale(self, k: float) -> "Span":
        return Span(self.low * k, self.mid * k, self.high * k)


ZERO = Span(0.0, 0.0, 0.0)


def human(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fmt(span: Span) -> str:
    """``3 min (2-4 min)``-like text of a span."""
    return f"{human(span.mid)} (range {human(span.low)} to {human(span.high)})"


def _spread(times: list[float]) -> Span:
    return Span(min(times), statistics.median(times), max(times))


# --------------------------------------------------------------------------- what makes a cost


def cost_key(cfg) -> tuple:
    """What a run's cost per round depends on (not its seed, schedule, rounds or learning rate)."""
    d = cfg.to_dict()
    return (d.get("dataset"), repr(d.get("model")), d.get("local_epochs"), d.get("batch_size"), d.get("clients"),
            d.get("clients_per_round"), (d.get("eval") or {}).get("test_samples"), (d.get("eval") or {}).get("every"),
            d.get("aggregator"), d.get("client_defense"), d.get("attack"), d.get("aggregate_state"))


def step_key(cfg) -> tuple:
    """What a local SGD step's cost depends on: the data, the network, the batch, the client
    defense and the attack (not the server rule, the federation or the evaluation)."""
    d = cfg.to_dict()
    return (d.get("dataset"), repr(d.get("model")), d.get("batch_size"), d.get("client_defense"), d.get("attack"))


def device_kind(device) -> str:
    """``cpu`` or ``cuda`` for a recorded device (``cuda:0``) or a requested one (None/auto)."""
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device).split(":")[0]


def stored_spans(cfgs: list, device=None, threads: int | None = None) -> list[Span | None]:
    """For each run, the span from comparable stored runs (see the module doc), else None."""
    from flcore.core import config as config_mod
    from flcore.storage import store

    kind = device_kind(device)
    per_round: dict[tuple, list[float]] = {}
    wanted = {cost_key(c) for c in cfgs}
    for _, doc in store.iter_runs():
        prov, cfg = doc.get("provenance") or {}, doc.get("config") or {}
        wall, n = prov.get("wall_s"), len(doc.get("rounds") or [])
        if not isinstance(wall, (int, float)) or not n or device_kind(prov.get("device", "cpu")) != kind:
            continue
        if threads is not None and prov.get("threads") not in (None, threads):
            continue
        if prov.get("pack", 1) > 1:  # the wall time of a whole pack, not of this run
            continue
        try:
            key = cost_key(config_mod.from_dict(cfg, check_unused_options=False))
        except Exception:  # a document of an older configuration format: not comparable
            continue
        if key in wanted:
            per_round.setdefault(key, []).append(wall / n)
    out = []
    for c in cfgs:
        seen = per_round.get(cost_key(c))
        out.append(_spread(seen).scale(c.rounds) if seen else None)
    return out


# --------------------------------------------------------------------------- measured costs


@dataclass(frozen=True)
class Costs:
    """Measured seconds of one configuration's pieces on one device and thread count."""

    benign_step: Span
    malicious_step: Span
    evaluation: Span  # one evaluation of every set at the run's test_samples
    aggregation: Span  # one round's server step: the attack's fake updates and the aggregation
    setup: Span  # the simulation's setup: network, trainer, the run (client split, attack, evaluation sets)
    batches: dict  # client id -> batches per local epoch
    data_load_s: float  # loading the dataset (in a fresh process)


_MEASURED: dict[tuple, Costs] = {}
_EVALUATION: dict[tuple, Span] = {}
_STEPS: dict[tuple, tuple[Span, Span]] = {}
_LOAD_S: dict[tuple, float] = {}


def _timed(fn, repeats: int = REPEATS) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _warm_then_timed(fn) -> Span:
    """``fn`` called once to warm up, then timed :data:`REPEATS` times, or once where the warm-up
    took :data:`LONG_S` or more (a long call varies little relative to its length)."""
    warm = _timed(fn, 1)[0]
    return _spread(_timed(fn, REPEATS if warm < LONG_S else 1))


def measure(cfg, device=None, threads: int = 1) -> Costs:
    """The costs of ``cfg``'s pieces, timed now with ``threads`` torch threads (once per process)."""
    import torch

    from flcore.sim.data import load_dataset
    from flcore.sim.engine import ClientState, Simulation, Trainer, eval_key, pick_device

    key = (cost_key(cfg), str(device), threads)
    if key in _MEASURED:
        return _MEASURED[key]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dev = pick_device(device)
        load_key = (cfg.dataset, str(dev))
        t0 = time.perf_counter()
        data = load_dataset(cfg.dataset, dev)
        _LOAD_S.setdefault(load_key, time.perf_counter() - t0)  # the first load in this process is the real one

        def setup():
            return Simulation([cfg], dev, executor="loop")  # simulate's setup (the data already loaded)

        t0 = time.perf_counter()
        sim = setup()
        setup_s = [time.perf_counter() - t0]
        flat, (run,) = sim.flat, sim.runs
        bs = cfg.batch_size
        batches = {r: math.ceil(len(v) / bs) for r, v in run.client_idx.items()}
        one_epoch = dataclasses.replace(cfg, local_epochs=1)
        trainer = Trainer(one_epoch, flat, data)
        w0 = flat.w.clone()
        idx = torch.arange(STEPS * bs, device=dev)

        def steps(malicious: bool):
            def go():
                state = ClientState(None, torch.Generator().manual_seed(0))
                trainer.train(w0, idx, state, malicious, cfg.lr)  # a blown-up model costs the same
                if dev.type == "cuda":
                    torch.cuda.synchronize()
            go()  # warm up
            return _spread([t / STEPS for t in _timed(go)])

        st_key = (step_key(cfg), str(dev), threads)
        if st_key not in _STEPS:
            benign = steps(False)
            _STEPS[st_key] = (benign, steps(True) if run.attack.local_training is not None else benign)
        benign, malicious = _STEPS[st_key]

        def evaluation():
            sim.evaluate(0, [run])  # the evaluation step (round 0 is always evaluated)
            if dev.type == "cuda":
                torch.cuda.synchronize()
        ev_key = (eval_key(cfg), repr(cfg.to_dict().get("model")), str(dev), threads)
        if ev_key not in _EVALUATION:
            _EVALUATION[ev_key] = _warm_then_timed(evaluation)
        ev = _EVALUATION[ev_key]

        agg = _aggregation_span(run)
        setup_s += _timed(lambda: setup(), 1)
        costs = Costs(benign, malicious, ev, agg, _spread(setup_s), batches, _LOAD_S[load_key])
    finally:
        torch.set_num_threads(before)
    _MEASURED[key] = costs
    return costs


def _aggregation_span(run) -> Span:
    """One round's server step of ``run`` (:meth:`flcore.sim.engine.Run.aggregate`: the attack's
    fake updates, the aggregation, the attack's observation) from random client states around
    its global model, the clients and fakes of its round 0."""
    import torch

    dev = run.device
    rows = run.plan(0)
    gen = torch.Generator().manual_seed(0)
    new_ws = run.global_w + (torch.randn(len(rows), run.flat.d, generator=gen) * 1e-3).to(dev)

    def one_round():
        run.aggregate(0, new_ws)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    try:
        one_round()
        return _spread(_timed(one_round))
    except Exception:  # a rule that random updates do not suit: its cost is left out (rules are fast)
        return ZERO


def rounds_plan(cfg) -> list[tuple[list[int], list[bool]]]:
    """The genuine clients of every round and which of them train maliciously: the run's
    selection step (:class:`flcore.sim.engine.Selection`), as simulate selects them."""
    from flcore.sim.engine import Selection

    select = Selection(cfg)
    out = []
    for rnd in range(cfg.rounds):
        selected, _, is_mal = select(rnd)
        out.append((selected, is_mal))
    return out


def measured_span(cfg, device=None, threads: int = 1) -> Span:
    """A run's seconds from the measured costs (see the module doc)."""
    c = measure(cfg, device, threads)
    benign = malicious = 0
    for selected, is_mal in rounds_plan(cfg):
        for client, m in zip(selected, is_mal):
            n = c.batches.get(client, 0) * cfg.local_epochs
            if m:
                malicious += n
            else:
                benign += n
    train = c.benign_step.scale(benign) + c.malicious_step.scale(malicious)
    evals = sum(1 for r in range(cfg.rounds) if r % cfg.eval.every == 0 or r == cfg.rounds - 1)
    total = c.setup + train + c.aggregation.scale(cfg.rounds) + c.evaluation.scale(evals)
    return Span(total.low * UNMODELLED[0], total.mid, total.high * UNMODELLED[1])


def run_spans(cfgs: list, device=None, threads: int | None = None) -> list[tuple[Span, str]]:
    """Each run's span and where it comes from (``stored`` or ``measured``)."""
    stored = stored_spans(cfgs, device, threads)
    return [(s, "stored") if s is not None else (measured_span(c, device, threads or 1), "measured")
            for c, s in zip(cfgs, stored)]


# Starting a worker process: Python, torch and flcore's engine imported, before the dataset is
# loaded (timed with the costs). Measured on the project's 2-core machine under load (6.8 s for
# ``python -c "import torch, flcore.sim.engine"``, 2026-12-01); an idle machine takes about 2 s.
IMPORT_S = Span(2.0, 7.0, 10.0)


def sweep_span(cfgs: list, workers: int, device=None, threads: int | None = None) -> tuple[Span, Span, str]:
    """(wall time, compute time, how it was estimated) of running ``cfgs`` on ``workers`` workers."""
    spans = run_spans(cfgs, device, threads)
    compute = sum((s for s, _ in spans), ZERO)
    par = max(1, min(workers, len(cfgs)))
    lows, mids, highs = ([getattr(s, f) for s, _ in spans] for f in ("low", "mid", "high"))
    spread = Span(max(sum(lows) / par, max(lows)), max(sum(mids) / par, max(mids)),
                  max(sum(highs) / par, max(highs)))  # over the workers, never below the longest run
    loads = [_LOAD_S.get((c.dataset, str(_torch_device(device))), 0.0) for c in cfgs]
    load = max(loads)
    wall = spread + IMPORT_S + Span(load * UNMODELLED[0], load, load * UNMODELLED[1])
    n_stored = sum(1 for _, how in spans if how == "stored")
    parts = [f"{n_stored} from stored runs"] if n_stored else []
    if n_stored < len(spans):
        parts.append(f"{len(spans) - n_stored} from costs measured here with {threads or 1} thread(s)")
    return wall, compute, ", ".join(parts)


def _torch_device(device):
    from flcore.sim.engine import pick_device

    return pick_device(device)
