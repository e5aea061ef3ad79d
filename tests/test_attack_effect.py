"""Experiment 5 machinery: exact Hessian diagonal, the Hessian approximations, shadow runs."""
import json

import numpy as np
import pytest
import torch

from flcore.experiments import attack_effect as ae
from flcore.core import config
from flcore.storage import store
from flcore.methods.schedules import plan


# ----------------------------------------------------------------------------- exact Hessian diagonal


def test_hessian_diagonal_of_a_quadratic_is_the_matrix_diagonal():
    torch.manual_seed(0)
    m = torch.randn(7, 7, dtype=torch.float64)
    a = m @ m.T + torch.diag(torch.linspace(-3, 3, 7, dtype=torch.float64))  # symmetric, indefinite
    b = torch.randn(7, dtype=torch.float64)
    loss = lambda w: 0.5 * w @ a @ w + b @ w  # noqa: E731
    w = torch.randn(7, dtype=torch.float64)
    coords = [0, 3, 6, 2]
    assert torch.allclose(ae.hessian_diagonal(loss, w, coords).double(), torch.diagonal(a)[coords])
    v = torch.randn(7, dtype=torch.float64)
    assert torch.allclose(ae.hvp(loss, w, v), a @ v)


def test_hessian_diagonal_of_least_squares_is_column_norms():
    # L(w) = ||X w - y||^2 / (2n): H = X^T X / n, so H_jj = ||X[:, j]||^2 / n
    torch.manual_seed(1)
    x, y = torch.randn(20, 5, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    loss = lambda w: ((x @ w - y) ** 2).sum() / 40  # noqa: E731
    got = ae.hessian_diagonal(loss, torch.zeros(5, dtype=torch.float64), range(5)).double()
    assert torch.allclose(got, (x ** 2).sum(0) / 20)


def test_hessian_diagonal_of_a_tiny_mlp_matches_the_full_hessian():
    torch.manual_seed(2)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))

    def loss(w):
        w1, b1, w2 = w[:12].view(4, 3), w[12:16], w[16:24].view(2, 4)
        return torch.nn.functional.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T, y)

    w = torch.randn(24, dtype=torch.float64)
    full = torch.autograd.functional.hessian(loss, w)
    coords = [0, 5, 13, 16, 23]
    assert torch.allclose(ae.hessian_diagonal(loss, w, coords).double(), torch.diagonal(full)[coords])


def test_approximations_on_a_separable_quadratic_with_momentum():
    # L = 0.5 sum h_j w_j^2 (no batch noise, diagonal Hessian): the secant is exact even with
    # momentum; corrected = v_i - v_{i-1} = -paper; code = -(lr v_i + g_{i-1}) / lr^2.
    h = torch.tensor([0.5, 2.0, -1.0, 4.0], dtype=torch.float64)
    lr, mu = 0.01, 0.1
    w, v = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    hist = []
    for _ in range(4):
        g = h * w
        v = mu * v + g
        hist.append((w.clone(), g, v.clone()))
        w = w - lr * v
    (w_im1, g_im1, v_im1), (w_i, g_i, v_i) = hist[-2], hist[-1]
    ap = ae.approximations(w_im1, w_i, g_im1, g_i, v_i, lr, g_im1_same=h * w_im1)
    assert torch.allclose(ap["secant"], h) and torch.allclose(ap["secant_same_batch"], h)
    assert torch.allclose(ap["corrected"], v_i - v_im1) and torch.allclose(ap["paper"], -(v_i - v_im1))
    assert torch.allclose(ap["code"], -(lr * v_i + g_im1) / lr ** 2)
    assert torch.allclose(w_i - w_im1, -lr * v_im1)


def test_metrics_and_coordinates():
    h = np.array([1.0, -2.0, 3.0, 0.0, 5.0])
    m = ae.approx_metrics(2 * h, h)
    assert m["sign_agreement"] == 1.0 and m["spearman"] == pytest.approx(1) and m["fit_rel_err"] == pytest.approx(0)
    assert m["rel_err"] == pytest.approx(1.0)
    m = ae.approx_metrics([np.inf, 1, 2, 3, 4], [1, 1, 2, 3, 4])
    assert m["n"] == 4 and m["n_dropped"] == 1 and m["rel_err"] == pytest.approx(0)
    cfg = config.load(None, {})
    layers = ae.layer_table(cfg)
    assert sum(n for _, _, n in layers) == 29_034 and len(layers) == 10
    idx, which = ae.pick_coordinates(layers, 300, seed=0)
    assert len(idx) == len(set(idx)) == 300 and set(which) == set(range(10))
    assert all(layers[t][1] <= j < layers[t][1] + layers[t][2] for j, t in zip(idx, which))
    assert len(ae.pick_coordinates(layers, 4, seed=0)[0]) == 4
    with pytest.raises(Exception, match="hessian.steps"):
        ae.HessianOptions.from_dict({"steps": [0]})


# ----------------------------------------------------------------------------- shadow runs


def tiny(**kw):
    """1,000 clients of 60 images (4 local steps), 4 per round, FedAvg; round 0 a burst of 2."""
    raw = {"experiment": "t", "profile": "smoke", "rounds": 2, "clients": 1000, "clients_per_round": 4,
           "malicious_clients": 250, "local_epochs": 1, "schedule": "periodic", "aggregator": "fedavg",
           "periodic": {"cycle": 2, "burst": 1, "malicious_per_round": 2},
           "eval": {"test_samples": 100, "batch": 100}}
    raw.update(kw)
    return config.load(None, raw)


def test_shadow_is_the_same_config_without_the_attack():
    cfg = tiny(client_defense="leadfl")
    shadow = ae.shadow_config(cfg)
    a, b = cfg.to_dict(), shadow.to_dict()
    assert b["attack"] == "none" and "backdoor" in a and "backdoor" not in b
    a.pop("backdoor")
    a["attack"] = "none"
    assert a == b
    assert plan(cfg) == plan(shadow)  # same selection, same malicious clients
    assert ae.shadow_config(shadow).hash == shadow.hash


def test_measure_zero_without_attack_positive_with_backdoor(tmp_path, monkeypatch):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    torch.set_num_threads(1)
    path, doc = ae.measure(tiny(attack="none"), progress=False)
    assert path == tmp_path / "attack_effect" / f"{doc['hash']}.json"
    assert [r["delta_norm"] for r in doc["rounds"]] == [0.0, 0.0]  # identical runs, bit for bit
    assert all(v == 0.0 for r in doc["rounds"] for v in r["delta_layers"].values())
    assert store.read(path)["kind"] == "attack_effect"

    cfg = tiny()
    path, doc = ae.measure(cfg, progress=False)
    r0, r1 = doc["rounds"]
    assert r0["malicious"] and not r1["malicious"]
    assert r0["delta_norm"] > 0 and r0["decay"] is None
    assert r1["decay"] == pytest.approx(r1["delta_norm"] / r0["delta_norm"])
    assert sum(v ** 2 for v in r0["delta_layers"].values()) == pytest.approx(r0["delta_norm"] ** 2)
    for r in doc["rounds"]:
        assert all(k in r for k in store.ROUND_KEYS)
    assert doc["config"]["experiment"] == "attack_effect" and doc["hash"] == cfg.hash
    assert doc["shadow"]["config"]["attack"] == "none"
    assert doc["summary"]["attack_effect"]["decay_benign_n"] == 1

    # reuse: a second call returns the stored document without simulating
    monkeypatch.setattr(ae, "simulate", lambda *a, **k: pytest.fail("recomputed a stored measurement"))
    assert ae.measure(cfg, progress=False)[1] == doc
    # a plain run document at the same path is not a measurement
    plain = {k: v for k, v in doc.items() if k not in ("kind", "checksum")}
    store.write(path, plain)
    assert not ae.is_measurement(store.read(path), cfg)


def test_compare_hessian_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    torch.set_num_threads(1)
    cfg = tiny()
    opts = {"rounds": [0], "steps": [2], "coordinates": 12, "seed": 0}
    path, doc = ae.compare_hessian(cfg, opts, progress=False)
    assert path.name.startswith("hessian-") and path.parent.name == "attack_effect"
    assert store.read(path)["kind"] == "hessian_diagonal"
    (pt,) = doc["points"]
    assert len(pt["exact"]) == 12 and pt["step"] == 2
    assert doc["config"]["attack"] == "none" and doc["config"]["client_defense"] == "none"
    assert set(doc["summary"]["hessian"]["vs_exact"]) == set(ae.APPROXIMATIONS)
    # the paper's and the corrected estimates are exact negatives
    assert np.allclose(pt["paper"], -np.asarray(pt["corrected"]))
    json.dumps(doc)


def test_stored_reads_measurements_and_the_hessian_without_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    torch.set_num_threads(1)
    base = {k: v for k, v in tiny().to_dict().items() if k not in ("experiment", "seed", "client_defense")}
    spec = {"experiment": "attack_effect", "profile": "smoke", "base": base,
            "cases": [{"client_defense": "none"}, {"client_defense": "leadfl"}], "grid": {"seed": [0, 1]},
            "hessian": {"rounds": [0], "steps": [2], "coordinates": 4, "seed": 0}}
    got = ae.stored(spec)
    assert got["measured"] == [] and len(got["missing"]) == 4 and got["hessian"] is None
    cfgs, hopts, _ = ae.read_params(spec)
    done = [c for c in cfgs if c.seed == 1 and c.client_defense == "leadfl"][0]
    ae.measure(done, progress=False)
    ae.compare_hessian(cfgs[0], hopts, progress=False)
    monkeypatch.setattr(ae, "simulate", lambda *a, **k: pytest.fail("stored() computed something"))
    got = ae.stored(spec)
    assert [(c.client_defense, c.seed) for c, _ in got["measured"]] == [("leadfl", 1)]
    assert len(got["missing"]) == 3 and got["hessian"]["kind"] == ae.HESSIAN_KIND
    assert got["options"] == hopts


def _measurement(defense: str, seed: int, delta_final, backdoor_final=0.5):
    from types import SimpleNamespace

    return (SimpleNamespace(client_defense=defense, seed=seed),
            {"summary": {"backdoor_acc_final": backdoor_final,
                         "attack_effect": {"delta_norm_final": delta_final, "decay_benign_median": 1.0}}})


def test_effect_value_reads_the_measurement_then_the_run_summary():
    _, doc = _measurement("none", 0, 2.0, backdoor_final=0.25)
    assert ae.effect_value(doc, "delta_norm_final") == 2.0
    assert ae.effect_value(doc, "backdoor_acc_final") == 0.25
    assert ae.effect_value(_measurement("none", 0, None)[1], "delta_norm_final") is None


def test_matched_ratios_divide_within_a_seed_only():
    measured = [_measurement("none", 0, 2.0), _measurement("leadfl", 0, 3.0),
                _measurement("none", 1, 4.0), _measurement("leadfl", 1, 2.0),
                _measurement("leadfl", 2, 9.0),                                   # no partner: left out
                _measurement("none", 3, 0.0), _measurement("leadfl", 3, 1.0)]     # zero denominator: left out
    assert ae.matched_ratios(measured) == {0: 1.5, 1: 0.5}
    assert ae.matched_ratios(measured, num="none", den="leadfl") == {0: 2.0 / 3.0, 1: 2.0, 3: 0.0}
    assert ae.matched_ratios([]) == {}


def test_diagonal_factors_are_the_per_coordinate_product_of_one_round():
    got = ae.diagonal_factors([0.0, 1.0, 10.0, -1.0], lr=0.1, steps=2)
    assert np.allclose(got, [1.0, 0.81, 0.0, 1.21])
    assert np.allclose(ae.diagonal_factors([2.0], lr=0.01, steps=380), (1 - 0.02) ** 380)


# ----------------------------------------------------------------------------- the chapter's tables


def test_layer_names_follow_the_network():
    assert ae.layer_names(tiny()) == {"layer1.0": "conv1", "layer1.1": "BN1", "layer2.0": "conv2",
                                      "layer2.1": "BN2", "fc": "fc"}
    cifar = ae.layer_names(tiny(dataset="cifar10"))
    assert [v for v in cifar.values() if v.startswith("fc")] == ["fc1", "fc2"]  # two linear layers: numbered
    doc = {"rounds": [{"delta_layers": {"layer1.0.weight": 1.0, "layer1.0.bias": 2.0, "layer1.1.weight": 3.0,
                                        "fc.weight": 4.0, "other.w": 5.0}}]}
    assert ae.layer_groups(doc, ae.layer_names(tiny())) == {
        "conv1": ["layer1.0.weight", "layer1.0.bias"], "BN1": ["layer1.1.weight"], "fc": ["fc.weight"],
        "other": ["other.w"]}


def test_metrics_table_names_estimates_and_columns():
    row = {"n": 12.0, "sign_agreement": 0.5, "spearman": 0.1, "pearson": 0.2, "rel_err": 1.0, "median_rel_err": 0.9,
           "fit_rel_err": 0.8}
    t = ae.metrics_table({"secant": row, "code": row})
    assert list(t.index) == ["secant estimate", "the released code's estimate"]
    assert list(t.columns) == list(ae.METRIC_COLUMNS.values()) and t["n"].dtype.kind == "i"


def test_command_line_mistakes_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLCORE_RESULTS", str(tmp_path))
    monkeypatch.setattr(ae, "simulate", lambda *a, **k: pytest.fail("computed despite the mistake"))
    assert ae.main(["params/attack_effect.paper.yaml", "--case", "9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no case 9" in err[0] and "1 to 2" in err[0]
    assert ae.main([str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert list(tmp_path.iterdir()) == []  # nothing written
