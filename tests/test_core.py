"""Simulation core: split, schedules, models, configuration, store reuse, smoke run, determinism."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flcore.core import config
from flcore.storage import store
from flcore.core.config import Config
from flcore.sim.engine import split_clients
from flcore.core.errors import ConfigError
from flcore.methods.models import PARAM_COUNTS, build_model, count_parameters
from flcore.methods.schedules import malicious_set, plan

ROOT = Path(__file__).resolve().parent.parent
REF = json.loads((ROOT / "tests/data/reference_selection.json").read_text())


def paper_cfg(**kw) -> Config:
    return config.load(None, {"rounds": 80, **kw})


# ----------------------------------------------------------------------------- schedules


def test_malicious_set_is_the_reference_one():
    assert malicious_set(100, 25).tolist() == REF["malicious_set"]


def test_paper_schedule_reproduces_reference_selection():
    got = plan(paper_cfg(schedule="paper"))
    assert len(got) == 80
    for g, r in zip(got, REF["paper"]):
        assert g["round"] == r["round"]
        assert g["selected"] == r["selected"], f"round {r['round']}"
        assert g["malicious"] == r["malicious"]
        assert len(g["malicious"]) == r["count"]


def test_legacy_schedule_counts():
    got = plan(paper_cfg(schedule="legacy"))
    assert [len(r["malicious"]) for r in got] == REF["legacy_malicious_counts"]
    assert len(got[0]["malicious"]) == 10


def test_periodic_schedule_bursts():
    got = plan(paper_cfg(schedule="periodic", rounds=40))
    counts = [len(r["malicious"]) for r in got]
    assert counts == ([6, 6] + [0] * 8) * 4
    assert all(len(set(r["selected"])) == 10 for r in got)


def test_periodic_options_and_consistent():
    got = plan(config.load(None, {"schedule": "periodic", "rounds": 10,
                                  "periodic": {"cycle": 5, "burst": 1, "malicious_per_round": 3}}))
    assert [len(r["malicious"]) for r in got] == [3, 0, 0, 0, 0] * 2
    got = plan(config.load(None, {"schedule": "consistent", "rounds": 5, "consistent.malicious_per_round": 4}))
    assert [len(r["malicious"]) for r in got] == [4] * 5


def test_random_schedule_has_no_override():
    got = plan(paper_cfg(schedule="random"))
    paper = REF["paper"]
    for g, r in zip(got, paper):
        if r["round"] not in (0, 10, 12):
            assert g["selected"] == r["selected"]
    assert got[0]["selected"] != paper[0]["selected"]


def test_cli_schedule_prints_reference_json():
    out = subprocess.run([sys.executable, "-m", "flcore", "schedule", "params/smoke.yaml", "--set", "rounds=80"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    assert [r["selected"] for r in rows] == [r["selected"] for r in REF["paper"]]
    assert [r["malicious"] for r in rows] == [r["malicious"] for r in REF["paper"]]


# ----------------------------------------------------------------------------- split and models


def test_strided_iid_split():
    parts = split_clients(paper_cfg(), 60000, torch.zeros(60000))
    assert len(parts) == 100
    assert parts[1][:3].tolist() == [1, 101, 201]
    assert len(parts[1]) == 600 and len(parts[100]) == 599
    allidx = torch.cat(list(parts.values()))
    assert len(allidx) == 59999 and 0 not in allidx.tolist() and len(set(allidx.tolist())) == 59999
    parts = split_clients(paper_cfg(dataset="cifar10"), 50000, torch.zeros(50000))
    assert len(parts[1]) == 500 and len(parts[100]) == 499


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_counts(name):
    assert count_parameters(build_model(name)) == PARAM_COUNTS[name]


def test_segment_view_and_flatten_are_inverse_for_every_memory_order():
    from flcore.sim.engine import Segment, memory_order

    t = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    assert memory_order(t) == (0, 2, 3, 1) and memory_order(torch.randn(4, 3)) == (0, 1)
    seg = Segment("w", tuple(t.shape), 2, t.numel(), memory_order(t))
    vec = torch.cat([torch.zeros(2), seg.flatten(t)])
    assert torch.equal(seg.view(vec), t) and seg.view(vec).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(seg.flatten(t), t.permute(0, 2, 3, 1).reshape(-1))  # (out, row, column, in)
    rows = torch.stack([vec, 2 * vec])  # [rows, P] -> [rows, *shape]
    assert torch.equal(seg.view(rows)[1], 2 * t)
    with pytest.raises(ValueError, match="neither contiguous nor channels-last"):
        memory_order(torch.randn(4, 6)[:, ::2])


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_channels_last_networks_match_nchw_and_the_flat_views_are_the_parameters(name):
    """The networks compute channels-last (flcore.methods.models.MEMORY_FORMAT); the same weights in NCHW
    give the same outputs and gradients up to float32 rounding, and FlatModel's vector holds
    each parameter (convolution weights in their channels-last order)."""
    from flcore.sim.engine import FlatModel

    torch.manual_seed(0)
    net = build_model(name, "logits")
    assert any(p.dim() == 4 and not p.is_contiguous() for p in net.parameters())  # channels-last weights
    ref = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    shape = (3, 32, 32) if name == "cifar10_cnn" else (1, 28, 28)
    x, y = torch.randn(8, *shape), torch.randint(0, 10, (8,))
    outs = []
    for m in (net, ref):
        m.train()
        m.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        outs.append((loss.detach(), [p.grad.clone() for p in m.parameters()]))
    assert torch.allclose(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(outs[0][1], outs[1][1]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flat = FlatModel(net, "cpu")
    for seg, (pname, p) in zip(flat.segments, net.named_parameters()):
        assert seg.name == pname and torch.equal(p, before[pname]) and p.stride() == before[pname].stride()
        assert p.data_ptr() == seg.view(flat.w).data_ptr()
    assert all(torch.equal(flat.param_views(flat.w)[k], before[k]) for k in flat.param_views(flat.w))


def test_cifar_softmax_switch():
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(0)
    soft = build_model("cifar10_cnn", "softmax").eval()
    torch.manual_seed(0)
    logit = build_model("cifar10_cnn", "logits").eval()
    assert torch.allclose(soft(x).sum(1), torch.ones(4), atol=1e-5)
    assert torch.allclose(torch.softmax(logit(x), 1), soft(x), atol=1e-6)


# ----------------------------------------------------------------------------- configuration


def test_defaults_are_the_paper_protocol_and_hash_is_stable():
    cfg = config.load(None)
    assert (cfg.rounds, cfg.clients, cfg.clients_per_round, cfg.malicious_clients) == (80, 100, 10, 25)
    assert (cfg.local_epochs, cfg.batch_size, cfg.lr, cfg.momentum) == (10, 16, 0.01, 0.1)
    assert cfg.hash == config.load(None).hash
    assert cfg.hash != config.load(None, ["seed=1"]).hash
    # the experiment name only names the folder
    assert cfg.hash == config.load(None, ["experiment=other"]).hash
    # options of inactive methods are not part of the identity
    assert cfg.hash == config.load(None, ["leadfl.alpha=0.2"]).hash
    assert config.load(None, ["client_defense=leadfl"]).hash != config.load(
        None, ["client_defense=leadfl", "leadfl.alpha=0.2"]).hash


@pytest.mark.parametrize("overrides, message", [
    (["colour=red"], "unknown key 'colour'"),
    (["aggregator=krumm"], "valid choices: bulyan, bulyan_reference"),
    (["client_defense=leadfl", "leadfl.beta=1"], "unknown option leadfl.beta"),
    (["rounds=0"], "rounds must be positive"),
    (["rounds=ten"], "rounds must be an integer"),
    (["lr=-0.1"], "lr must be positive"),
    (["lr=nan"], "lr must be finite"),
    (["momentum=inf"], "momentum must be finite"),
    (["malicious_clients=101"], "malicious_clients (101) cannot exceed clients (100)"),
    (["clients_per_round=101"], "clients_per_round (101) cannot exceed clients"),
    (["dataset=mnist"], "valid choices: fmnist, cifar10"),
    (["client_defense=leadfl", "leadfl.alpha=-1"], "leadfl.alpha must be in [0, 10]"),
    (["client_defense=leadfl", "leadfl.variant=book"], "valid choices: code, paper, corrected"),
    (["multikrum.f=4"], "multikrum.f"),
    (["eval.bn=off"], "eval.bn = 'off' is not valid"),
    (["rounds"], "must look like key=value"),
])
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        config.load("params/smoke.yaml" if (ROOT / "params/smoke.yaml").exists() else None, overrides)
    assert message in str(e.value)


def test_malformed_yaml_and_cli_exit_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        config.load(bad)
    r = subprocess.run([sys.executable, "-m", "flcore", "run", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("error: malformed YAML") and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "flcore", "run", "params/smoke.yaml", "--set", "aggregator=x"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown aggregator 'x'; valid choices:" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- runs


TINY = ["rounds=2", "eval.test_samples=500"]


@pytest.fixture
def tmp_store(tmp_path, monkeypatch):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def test_smoke_run_on_real_data_is_stored_and_reused(tmp_store, monkeypatch):
    from flcore.storage import runs

    cfg = config.load("params/smoke.yaml", TINY)
    path, doc = runs.run(cfg, progress=False)
    assert path == tmp_store / "smoke" / f"{cfg.hash}.json"
    assert doc["status"] == "completed" and len(doc["rounds"]) == 2
    r0 = doc["rounds"][0]
    assert r0["selected"] == REF["paper"][0]["selected"] and r0["malicious"] == REF["paper"][0]["malicious"]
    assert 0.3 < doc["rounds"][-1]["main_acc"] <= 1 and 0 <= r0["backdoor_acc"] <= 1
    s = doc["summary"]
    assert s["main_acc_final"] == doc["rounds"][-1]["main_acc"]
    assert s["backdoor_acc_avg"] == pytest.approx(sum(r["backdoor_acc"] for r in doc["rounds"]) / 2)
    prov = doc["provenance"]
    assert prov["torch"] == torch.__version__ and prov["data_files"] and prov["seed"] == cfg.seed
    assert doc["config"] == cfg.to_dict()

    # reuse: a second call must not simulate again
    def boom(*a, **k):
        raise AssertionError("recomputed a stored run")

    monkeypatch.setattr(runs, "simulate", boom)
    path2, doc2 = runs.run(cfg, progress=False)
    assert path2 == path and doc2 == doc
    # a corrupted file is detected and recomputed, never used
    path.write_text(path.read_text()[:-40])
    with pytest.raises(AssertionError, match="recomputed"):
        runs.run(cfg, progress=False)


def test_cli_run_prints_path_last(tmp_store):
    r = subprocess.run([sys.executable, "-m", "flcore", "run", "params/smoke.yaml", "--quiet",
                        "--set", "rounds=1", "--set", "eval.test_samples=200", "--set", "attack=none",
                        "--set", "malicious_clients=0", "--set", "aggregator=fedavg", "--set", "schedule=random"],
                       cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ})
    assert r.returncode == 0, r.stderr
    last = Path(r.stdout.strip().splitlines()[-1])
    assert last.is_file() and last.parent == tmp_store / "smoke"
    assert store.read(last)["rounds"][0]["backdoor_acc"] is None


def test_determinism_same_config_same_metrics():
    from flcore.sim.engine import simulate

    cfg = config.load("params/smoke.yaml", ["rounds=2", "eval.test_samples=300", "client_defense=flwbc"])
    a = simulate(cfg, device="cpu", progress=False)
    b = simulate(cfg, device="cpu", progress=False)
    keys = ("main_acc", "backdoor_acc", "backdoor_nontarget_acc", "selected", "agg_weights")
    assert [{k: r.get(k) for k in keys} for r in a["rounds"]] == [{k: r.get(k) for k in keys} for r in b["rounds"]]


def test_provenance_names_the_gpu_of_a_cuda_run_and_a_commit_given_for_a_copy(monkeypatch):
    from types import SimpleNamespace

    cfg = config.load("params/smoke.yaml", TINY)
    data = SimpleNamespace(source="x", label="Fashion-MNIST", files={"a": "0"})
    result = {"data": data, "device": "cuda:0", "wall_s": 1.0, "d": 10}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    assert store.provenance(result, cfg)["gpu"] == "NVIDIA H100 80GB HBM3"
    assert store.provenance(result, cfg)["precision"] == "fp32"
    monkeypatch.setenv("FLCORE_PRECISION", "tf32")
    assert store.provenance(result, cfg)["precision"] == "tf32"
    monkeypatch.setenv("FLCORE_PRECISION", "bf16")
    with pytest.raises(ConfigError, match="valid choices: fp32, tf32"):
        store.provenance(result, cfg)
    monkeypatch.delenv("FLCORE_PRECISION")
    prov = store.provenance({**result, "device": "cpu"}, cfg)
    assert "gpu" not in prov and "precision" not in prov
    # a copy of the tree without .git (a compute node's) names its commit in the environment
    out = subprocess.run([sys.executable, "-c", "from flcore.storage import store; print(store.loaded_commit())"],
                         capture_output=True, text=True, env={**os.environ, "FLCORE_GIT_COMMIT": "abc123"},
                         cwd=store.ROOT, check=True).stdout.strip()
    assert out == "abc123"


def test_evaluation_makes_two_passes_and_reads_the_nontarget_accuracy_off_the_backdoor_pass():
    """As the reference tests: the clean and the triggered test set, each in train-mode BatchNorm
    batches (counters +1 per batch); the non-target accuracy is the backdoor pass's predictions on
    the images whose label is not the target, not a third pass."""
    import types

    from flcore.sim.engine import FlatModel, eval_sets, evaluate_sets, predict

    cfg = config.load("params/smoke.yaml", ["eval.test_samples=300", "eval.batch=100"])
    g = torch.Generator().manual_seed(0)
    data = types.SimpleNamespace(test_x=torch.randn(500, 1, 28, 28, generator=g),
                                 test_y=torch.randint(0, 10, (500,), generator=g), mean=(0.5,), std=(0.5,))
    sets = eval_sets(cfg, data, "cpu")
    assert set(sets) == {"main", "backdoor", "nontarget"}
    assert torch.equal(sets["nontarget"], sets["main"][1] != 8) and bool((sets["backdoor"][1] == 8).all())
    torch.manual_seed(0)
    flat = FlatModel(build_model("fmnist_cnn"), "cpu")
    w0 = flat.w.clone()
    got = evaluate_sets(flat, cfg, sets)
    assert torch.equal(flat.w[flat.counter_slice] - w0[flat.counter_slice], torch.full((flat.K,), 6.0))  # 2 x 3
    flat.w.copy_(w0)
    predict(flat, cfg, sets["main"][0])
    pred = predict(flat, cfg, sets["backdoor"][0])  # the same batches from the same state
    keep = sets["nontarget"]
    assert got["backdoor_acc"] == int((pred == 8).sum()) / 300
    assert got["backdoor_nontarget_acc"] == int((pred[keep] == 8).sum()) / int(keep.sum())


def test_find_prefers_a_plain_run_to_a_measurement_of_the_same_configuration(tmp_path, monkeypatch):
    import shutil

    h = "3410cdf4b8b444c6"  # a periodic LeadFL cell: a selection run and an attack-effect measurement
    for experiment in ("attack_effect", "selection"):
        (tmp_path / experiment).mkdir()
        shutil.copy(ROOT / "results" / experiment / f"{h}.json", tmp_path / experiment)
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    cfg = config.from_dict({**store.read(tmp_path / "selection" / f"{h}.json")["config"],
                            "experiment": "alpha_sensitivity"})
    assert cfg.hash == h
    path, doc = store.find(cfg)  # "attack_effect" sorts first, the plain run wins
    assert path.parent.name == "selection" and "kind" not in doc
    (tmp_path / "selection" / f"{h}.json").unlink()
    path, doc = store.find(cfg)  # the measurement is still a valid run of the configuration
    assert path.parent.name == "attack_effect" and doc["kind"] == "attack_effect"
