"""The Multi-Krum tie analysis: its pure functions, and its 'ours' variant against the engine."""
import pytest
import torch

from flcore.core import config
from flcore.experiments import tie_analysis as ta
from flcore.sim.engine import simulate
from flcore.core.errors import ConfigError


def test_test_shard_is_the_reference_uniform_sampler():
    assert ta.test_shard(1, 10_000, 100).tolist()[:3] == [1, 101, 201]
    assert len(ta.test_shard(1, 10_000, 100)) == 100
    assert len(ta.test_shard(100, 10_000, 100)) == 99  # index 0 is nobody's
    shards = torch.cat([ta.test_shard(c, 10_000, 100) for c in range(1, 101)])
    assert sorted(shards.tolist()) == list(range(1, 10_000))


def test_replay_running_by_hand():
    start, m = torch.tensor([0.0]), 0.1
    pairs = [(torch.tensor([1.0]), torch.tensor([10.0]))]
    # clean then triggered: 0.9*(0.9*0 + 0.1*1) + 0.1*10 = 1.09
    assert ta.replay_running(start, pairs, m, triggered_first=False).item() == pytest.approx(1.09)
    # triggered then clean: 0.9*(0.1*10) + 0.1*1 = 1.0
    assert ta.replay_running(start, pairs, m, triggered_first=True).item() == pytest.approx(1.0)
    # order does not matter when both batches have the same statistics
    same = [(torch.tensor([2.0]), torch.tensor([2.0]))] * 5
    assert torch.equal(ta.replay_running(start, same, m, False), ta.replay_running(start, same, m, True))


def test_group_distances_by_hand():
    # two malicious rows at 0 and 1, two benign rows at 10 and 13 (one coordinate)
    x = torch.tensor([[0.0], [1.0], [10.0], [13.0]])
    d = ta.group_distances(x, [True, True, False, False], {"all": slice(0, 1)})["all"]
    assert d["within_malicious"] == pytest.approx(1.0)
    assert d["within_benign"] == pytest.approx(9.0)
    assert d["across"] == pytest.approx((100 + 169 + 81 + 144) / 4)


def test_kept_counts_malicious_positions():
    assert ta.kept(torch.tensor([0.2, 0, 0.2, 0.2, 0, 0.2, 0.2]), [True, True, False, True, False, False, False]) \
        == ([0, 2, 3, 5, 6], 2)


def test_parse_seeds():
    assert ta.parse_seeds("0-3") == [0, 1, 2, 3]
    assert ta.parse_seeds("2,5") == [2, 5]
    for bad in ("", "a-b", "3-1", "-1"):
        with pytest.raises(ConfigError):
            ta.parse_seeds(bad)


def tiny():
    """Paper schedule (round 0: 5 malicious of 10), Multi-Krum, 1 local epoch of 60 images."""
    raw = {"experiment": "t", "profile": "smoke", "rounds": 2, "clients": 1000, "local_epochs": 1,
           "schedule": "paper", "attack": "backdoor", "aggregator": "multikrum",
           "eval": {"test_samples": 100, "batch": 100}}
    return config.load(None, raw)


def test_ours_variant_is_what_the_engine_aggregated():
    torch.set_num_threads(1)
    cfg = tiny()
    out = ta.analyse(cfg, rnd=0)
    run = simulate(cfg, device="cpu", progress=False, rounds=1)["rounds"][0]
    engine_kept = [c for c, w in zip(run["selected"], run["agg_weights"]) if w > 0]
    assert out["selected"] == run["selected"] and out["malicious"] == run["malicious"]
    assert len(out["malicious"]) == 5
    assert out["variants"]["ours"]["kept"] == engine_kept
    # replaying our own order reproduces the engine's running statistics
    assert out["replay_max_abs_error"] < 1e-5
    v = out["variants"]
    # the order changes only BatchNorm statistics; the self-test adds one count to every client
    for name in ("reference_order", "ours_selftest", "reference"):
        assert v[name]["distances"]["parameters"] == v["ours"]["distances"]["parameters"]
        assert v[name]["distances"]["bn_counters"] == v["ours"]["distances"]["bn_counters"]
    assert v["reference_order"]["distances"]["bn_statistics"] != v["ours"]["distances"]["bn_statistics"]


def test_tables_of_a_stored_analysis(tmp_path, monkeypatch):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    torch.set_num_threads(1)
    cfg = tiny()
    path = ta.run(cfg, [0, 1])
    assert path == tmp_path / "analyses" / "tie" / f"{cfg.hash}-r0.json"
    [doc] = ta.stored()
    assert doc["seeds"] == [0, 1] and doc["hash"] == cfg.hash
    table = ta.kept_table(doc)
    assert list(table.index) == list(ta.VARIANTS)
    per = [s["variants"]["ours"]["kept_malicious"] for s in doc["per_seed"]]
    assert table.loc["ours", "mean kept"] == pytest.approx(sum(per) / 2)
    dist = ta.distance_table(doc, "ours")
    assert set(dist.index) == {"parameters", "bn_statistics", "bn_counters"}
    assert dist.loc["bn_counters", "within_malicious"] == 0.0
    # an altered file is refused
    text = path.read_text().replace('"round": 0', '"round": 1', 1)
    path.write_text(text)
    with pytest.raises(Exception, match="checksum"):
        ta.stored()


def test_seed_groups_of_a_sweep():
    import dataclasses

    a = tiny()
    cfgs = [dataclasses.replace(a, seed=s) for s in (0, 1)] + [dataclasses.replace(a, seed=2, local_epochs=2)]
    groups = ta.seed_groups(cfgs)
    assert [(c.local_epochs, seeds) for c, seeds in groups] == [(1, [0, 1]), (2, [2])]


def test_run_reuses_stored_seeds_and_adds_new_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    torch.set_num_threads(1)
    cfg = tiny()
    calls = []
    real = ta.analyse
    monkeypatch.setattr(ta, "analyse", lambda c, rnd, device: calls.append(c.seed) or real(c, rnd, device))
    path = ta.run(cfg, [1])
    ta.run(cfg, [0, 1])
    assert calls == [1, 0]
    doc = ta.load(path)
    assert doc["seeds"] == [0, 1] and [s["seed"] for s in doc["per_seed"]] == [0, 1]
    assert set(doc["provenance"]["per_seed"]) == {"0", "1"}


def test_spread_table_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    torch.set_num_threads(1)
    ta.run(tiny(), [0])
    t = ta.spread_table(ta.stored())
    assert t["local epochs"].tolist() == [1] and t["seeds"].tolist() == [1]
    assert (t[["within benign", "within malicious", "across"]] > 0).all(axis=None)


def test_verdict_by_hand():
    def seed(ours, ref):
        v = {name: {"kept_malicious": ours} for name in ta.VARIANTS}
        v["reference"] = {"kept_malicious": ref}
        return {"variants": v}

    doc = {"per_seed": [seed(3, 3), seed(4, 4), seed(5, 4)]}
    text = ta.verdict(doc, [5])
    assert "keep 3 to 5" in text and "mean 4.0" in text and "mean is 3.7" in text
    assert "1 of 3 seeds" in text and "do not explain" in text
    assert text.endswith("kept 5; our seeds keep that many or more in 1 of 3.")
    doc = {"per_seed": [seed(2, 5), seed(2, 5)]}
    assert "move the choice" in ta.verdict(doc, [])


def test_the_analyses_folder_is_not_an_experiment():
    with pytest.raises(ConfigError, match="reserved"):
        config.load(None, {"experiment": "analyses"})
