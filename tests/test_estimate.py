"""flcore.experiments.estimate: run and sweep time estimates from comparable stored runs, else from costs
measured here (one measurement of a tiny Fashion-MNIST configuration; no timed assertions)."""
import math

import pytest

from flcore.experiments import estimate as E
from flcore.experiments.sweep import expand, sweep

TINY = {"dataset": "fmnist", "rounds": 2, "local_epochs": 1, "clients": 100, "clients_per_round": 4,
        "malicious_clients": 50, "batch_size": 32, "schedule": "random", "aggregator": "fedavg",
        "attack": "backdoor", "eval": {"test_samples": 200}}


def spec(**base) -> dict:
    return {"experiment": "tiny", "profile": "smoke", "base": {**TINY, **base}}


def fixed_costs(cfg) -> E.Costs:
    one = lambda s: E.Span(s, s, s)  # noqa: E731
    return E.Costs(benign_step=one(0.01), malicious_step=one(0.02), evaluation=one(0.5), aggregation=one(0.1),
                   setup=one(1.0), batches={c: 19 for c in range(1, cfg.clients + 1)}, data_load_s=2.0)


def test_span_arithmetic_and_text():
    s = E.Span(1.0, 2.0, 3.0) + E.Span(1.0, 1.0, 1.0)
    assert s == E.Span(2.0, 3.0, 4.0) and s.scale(2) == E.Span(4.0, 6.0, 8.0)
    assert E.fmt(E.Span(50, 70, 200)) == "70 s (range 50 s to 3 min)"


def test_measured_span_counts_the_steps_of_the_scheduled_clients(monkeypatch):
    (cfg,) = expand(spec())
    monkeypatch.setattr(E, "measure", lambda c, device=None, threads=1: fixed_costs(c))
    plan = E.rounds_plan(cfg)
    n_mal = sum(sum(m) for _, m in plan)
    n_benign = sum(len(m) for _, m in plan) - n_mal
    assert len(plan) == 2 and 0 < n_mal < 8
    want = 1.0 + 19 * (n_benign * 0.01 + n_mal * 0.02) + 2 * 0.1 + 2 * 0.5  # setup, steps, aggregation, evals
    span = E.measured_span(cfg)
    assert span.mid == pytest.approx(want)
    assert span.low == pytest.approx(want * E.UNMODELLED[0]) and span.high == pytest.approx(want * E.UNMODELLED[1])


def test_comparable_stored_runs_come_first(monkeypatch):
    from flcore.storage import store

    (cfg,) = expand(spec(rounds=4))
    like = cfg.to_dict()
    docs = [(None, {"config": like, "rounds": [{}] * 10, "provenance": {"wall_s": w, "device": "cpu", "threads": 1}})
            for w in (10.0, 20.0, 30.0)]
    other = {**like, "client_defense": "ldp"}  # another cost: not comparable
    docs.append((None, {"config": other, "rounds": [{}] * 10, "provenance": {"wall_s": 900.0, "device": "cpu"}}))
    monkeypatch.setattr(store, "iter_runs", lambda: iter(docs))
    assert E.stored_spans([cfg], "cpu", threads=1) == [E.Span(4.0, 8.0, 12.0)]
    assert E.stored_spans([cfg], "cpu", threads=2) == [None]  # another thread count
    assert E.stored_spans([cfg], "cuda", threads=1) == [None]  # another kind of device
    monkeypatch.setattr(E, "measure", lambda c, device=None, threads=1: fixed_costs(c))
    ((span, how),) = E.run_spans([cfg], "cpu", threads=1)
    assert how == "stored" and span.mid == 8.0
    ((span, how),) = E.run_spans([cfg], "cpu", threads=2)
    assert how == "measured" and span == E.measured_span(cfg, "cpu", 2)


def test_sweep_span_spreads_runs_over_workers(monkeypatch):
    cfgs = expand({**spec(), "grid": {"seed": [0, 1, 2, 3]}})
    monkeypatch.setattr(E, "run_spans", lambda c, device=None, threads=None: [(E.Span(8.0, 10.0, 12.0), "measured")] * 4)
    monkeypatch.setattr(E, "_LOAD_S", {})
    wall, compute, how = E.sweep_span(cfgs, 2, "cpu", 1)
    assert compute == E.Span(32.0, 40.0, 48.0)
    assert wall == E.Span(16.0, 20.0, 24.0) + E.IMPORT_S
    assert how == "4 from costs measured here with 1 thread(s)"
    wall8, _, _ = E.sweep_span(cfgs, 8, "cpu", 1)  # never below the longest run
    assert wall8 == E.Span(8.0, 10.0, 12.0) + E.IMPORT_S


def test_measure_times_every_piece_of_a_tiny_run():
    (cfg,) = expand(spec())
    costs = E.measure(cfg, "cpu", threads=1)
    for span in (costs.benign_step, costs.malicious_step, costs.evaluation, costs.setup):
        assert 0 < span.low <= span.mid <= span.high
    assert costs.batches == {c: math.ceil(600 / 32) for c in range(1, 101)}  # 60,000 images over 100 clients
    assert E.measure(cfg, "cpu", threads=1) is costs  # once per process


def test_dry_run_prints_the_estimate_with_its_range(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    monkeypatch.setattr(E, "measure", lambda c, device=None, threads=1: fixed_costs(c))
    assert sweep({**spec(), "grid": {"seed": [0, 1]}}, workers=1, threads=1, dry_run=True, progress=False) == []
    err = capsys.readouterr().err
    assert "2 of 2 runs missing; estimated " in err and " (range " in err
    assert "2 from costs measured here with 1 thread(s)" in err


def test_the_evaluation_is_timed_once_per_evaluated_set(monkeypatch):
    """Two configurations that differ only in the aggregator evaluate the same images: the
    second measurement reuses the first's evaluation span instead of timing it again."""
    from flcore.sim.engine import Simulation

    monkeypatch.setattr(E, "_MEASURED", {})
    monkeypatch.setattr(E, "_EVALUATION", {})
    calls = []
    real = Simulation.evaluate

    def counted(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(Simulation, "evaluate", counted)
    (a,) = expand(spec())
    (b,) = expand(spec(aggregator="median"))
    first = E.measure(a, "cpu", threads=1)
    n_first = len(calls)
    assert 2 <= n_first <= 1 + E.REPEATS  # a warm-up, then one or REPEATS timings
    second = E.measure(b, "cpu", threads=1)
    assert len(calls) == n_first and second.evaluation is first.evaluation
    (c,) = expand(spec(eval={"test_samples": 100}))  # other images: timed again
    E.measure(c, "cpu", threads=1)
    assert len(calls) > n_first


def test_a_long_warm_up_is_timed_once_more(monkeypatch):
    ticks = iter([0.0, 2.0, 10.0, 12.5])  # warm-up 2 s (>= LONG_S), then one timing of 2.5 s
    monkeypatch.setattr(E.time, "perf_counter", lambda: next(ticks))
    assert E._warm_then_timed(lambda: None) == E.Span(2.5, 2.5, 2.5)
    ticks2 = iter([0.0, 0.1] + [t for i in range(E.REPEATS) for t in (1.0 + i, 1.2 + i)])
    monkeypatch.setattr(E.time, "perf_counter", lambda: next(ticks2))
    assert E._warm_then_timed(lambda: None).mid == pytest.approx(0.2)  # short: REPEATS timings


def test_the_local_steps_are_timed_once_per_client_side_setting(monkeypatch):
    """Two configurations that differ only in the server rule train the same steps: the second
    measurement reuses the first's step spans; another client defense is timed again."""
    from flcore.sim.engine import Trainer

    monkeypatch.setattr(E, "_MEASURED", {})
    monkeypatch.setattr(E, "_STEPS", {})
    calls = []
    real = Trainer.train

    def counted(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(Trainer, "train", counted)
    (a,) = expand(spec())
    (b,) = expand(spec(aggregator="median"))
    first = E.measure(a, "cpu", threads=1)
    n_first = len(calls)
    assert n_first >= 1 + E.REPEATS  # a warm-up, then REPEATS timings (per kind of client)
    second = E.measure(b, "cpu", threads=1)
    assert len(calls) == n_first and second.benign_step is first.benign_step
    assert second.aggregation is not first.aggregation  # the server step is the rule's own
    (c,) = expand(spec(client_defense="ldp"))
    E.measure(c, "cpu", threads=1)
    assert len(calls) > n_first
    assert E.step_key(a) == E.step_key(b) != E.step_key(c)
