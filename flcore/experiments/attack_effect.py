"""Experiment 5: the attack effect measured directly, and LeadFL's Hessian estimates
against the exact Hessian diagonal.

Part 1: shadow runs (:func:`measure`)
-------------------------------------
The attack effect of FL-WBC / LeadFL is ``delta_t = W_t - W_t^M``: the global
model of the real run minus the global model of a *shadow* run in which the
malicious clients behave honestly. The shadow of a configuration is the same
configuration with ``attack: none`` (:func:`shadow_config`): the same seed
(model initialisation), the same schedule (selection is a function of the round
number and the malicious set only), the same per-client data-order generators.
Its malicious clients then train like benign clients, client defense included.
Both runs are simulated with an ``on_round`` callback that keeps the trainable
part (the first ``P`` entries) of the global state after every round, and per
round the measurement records

* ``delta_norm``: ``||W_t - W_t^shadow||_2`` over the trainable parameters
  (computed in float64 from the float32 states);
* ``delta_layers``: the same norm per parameter tensor (``layer1.0.weight`` ...);
* ``decay``: ``||delta_t|| / ||delta_{t-1}||`` in rounds without a malicious
  client (None elsewhere): the one-round factor by which benign training shrinks
  (or grows) the attack effect, the measured counterpart of the norm of
  ``A_t`` in ``book/derivations.md``;
* ``delta_cos_prev``: cosine between ``delta_t`` and ``delta_{t-1}``;
* ``update_norm`` / ``shadow_update_norm``: ``||W_t - W_{t-1}||`` of either run
  (the scale of one round's progress; None in round 0);
* ``same_aggregation``: whether the robust aggregator gave the same weights to
  the same (positionally identical) clients in both runs. The recursion of the
  derivations assumes averaging; with a selecting aggregator the two runs may
  pick different benign clients, which moves ``delta`` by itself.

Only BatchNorm's running statistics and counters differ between the runs
without training being involved: the real run also evaluates the triggered test
images (``eval.bn: train`` updates running statistics). Neither enters the
trainable parameters nor the client deltas' pairwise distances, so ``delta`` is
unaffected. Consequently a configuration whose shadow is itself (``attack:
none``) gives ``delta_norm == 0`` exactly in every round (the simulation is
deterministic), which the tests check.

Storage: ``results/attack_effect/<hash>.json`` where ``<hash>`` is the real
run's configuration hash (``experiment`` is not part of it, so the folder is the
tag). The document is a valid results-store run of the *real* configuration
(``config``, ``rounds`` with the real run's per-round records, ``summary``,
``provenance``, ``checksum``; ``python -m flcore verify`` recomputes its
rounds) with the measurement added: ``kind: "attack_effect"``, per-round
``delta_*`` fields, ``summary.attack_effect``, the shadow's configuration, hash,
summary and wall time, and the layer table.

Part 2: the Hessian diagonal (:func:`compare_hessian`)
------------------------------------------------------
Points: the global models after the rounds ``hessian.rounds`` of the benign
run (``attack: none``, ``client_defense: none``, evaluated only in its last
round); from each, a benign client (the first benign client selected in the
next round) takes plain momentum-SGD steps (lr, momentum and batch size of the
configuration; BatchNorm in train mode, as in training) on its own data:

    g_k = grad L(W_k; B_k),   v_k = mu v_{k-1} + g_k,   W_{k+1} = W_k - lr v_k,

and at each local step ``i`` of ``hessian.steps`` we compare, on a fixed random
set of ``hessian.coordinates`` coordinates spread over the layers (per tensor
proportional to sqrt(size), at least one each):

* ``exact``: the exact diagonal ``H_jj`` of the batch loss ``L(.; B_i)`` at
  ``W_i``, one Hessian-vector product per coordinate (double backward:
  ``d/dW (grad L)_j`` is row ``j`` of the symmetric Hessian; entry ``j``);
* ``secant``: ``(g_i - g_{i-1}) / (W_i - W_{i-1})`` per coordinate, the
  finite-difference (secant) diagonal. Momentum only changes the step it divides
  by (``W_i - W_{i-1} = -lr v_{i-1}``, not ``-lr g_{i-1}``); the quotient is
  still curvature-shaped. Its errors: the two gradients are on different
  mini-batches, and ``(H dW)_j / dW_j`` includes the off-diagonal terms;
* ``secant_same_batch``: the same with both gradients on ``B_i``
  (``grad L(W_{i-1}; B_i)``): a diagnostic that removes the batch noise;
* ``paper``: the printed ``(W~_{i+1} - W_i - dW_i) / lr`` with
  ``W~_{i+1} = W_i - lr v_i`` and ``dW_i = W_i - W_{i-1} = -lr v_{i-1}``:
  ``= -(v_i - v_{i-1}) = -[(g_i - g_{i-1}) + mu (v_{i-1} - v_{i-2})]``, i.e.
  minus the momentum-weighted sum ``sum_k mu^k (g_{i-k} - g_{i-k-1})`` of past
  gradient differences;
* ``corrected``: ``(W_i - W~_{i+1} + dW_i) / lr = +(v_i - v_{i-1})``, exactly
  ``-paper``. Both are gradient differences, not divided by the step: of order
  ``(H dW)_j = -lr (H v_{i-1})_j``, so their sign follows ``-sign(v_{i-1,j})``
  times the curvature and their scale is ``lr |v|`` times too small;
* ``code``: the reference code's ``D = W~_{i+1} - W_prev - G_prev - lr*1``
  with ``W_prev = W_i`` and ``G_prev = g_{i-1}`` (the raw previous gradient, as
  the code stores it after an epoch's first batch; on later batches it stores
  ``clip(g_{i-1} + alpha*D^, q)``), ``D = -lr v_i - g_{i-1} - lr``. The code
  minimises ``||D||`` where the paper minimises ``||1 - lr H~||``; reading
  ``-D`` as ``lr (1 - lr H~)`` (the identity enters with weight lr) gives the
  implied ``H~_code = (D + lr) / lr^2 = -(lr v_i + g_{i-1}) / lr^2``. Any other
  decreasing affine reading of ``D`` has the same rank and Pearson correlations;
  only the sign agreement depends on the reading.

Also recorded: ``hdw = (H_i dW_i)_j`` (one exact Hessian-vector product with
the actual step), the target a gradient difference estimates, and
``diag_dw = H_jj dW_j``, its diagonal part; their agreement measures how
diagonal the Hessian is along the step, which is Eq. 3's assumption.

Metrics per approximation against the exact diagonal (:func:`approx_metrics`):
sign agreement (over coordinates with a nonzero exact value), Spearman and
Pearson correlation, relative L2 error ``||a - h|| / ||h||``, the median
per-coordinate relative error ``|a_j - h_j| / |h_j|``, and the relative error
after the best scalar rescaling ``min_c ||c a - h|| / ||h||`` (scale-free).
Pooled over all points and per point.

Storage: ``results/attack_effect/hessian-<key>.json``, ``<key>`` the hash of
the helper run's identity and the Hessian options. The document is a valid
results-store run of the *helper* benign configuration (its real per-round
records, so ``python -m flcore verify`` recomputes them) with ``kind:
"hessian_diagonal"``, ``hessian_options``, ``points`` (the raw per-coordinate
arrays) and ``summary.hessian`` (the metrics); it fits the store's schema, so
the same atomic, checksummed :func:`flcore.storage.store.write` is used.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from flcore.core import config as config_mod
from flcore.storage import store
from flcore.core.constants import hessian_seed
from flcore.core.config import Config, resolve_model
from flcore.sim.engine import Selection, param_segments, pick_device, simulate, split_clients
from flcore.core.errors import ConfigError
from flcore.methods.models import build_model

EXPERIMENT = "attack_effect"
KIND = "attack_effect"
HESSIAN_KIND = "hessian_diagonal"
FORMAT = 1
LEADFL_Q = 0.2  # LeadFL's clipping threshold q (protocol §6): the share of |g_{i-1}| above it is recorded
APPROXIMATIONS = ("secant", "secant_same_batch", "paper", "corrected", "code")
# gradient-difference quantities compared with the exact H dW (the target of a gradient difference)
STEP_TARGETS = ("diag_dw", "grad_diff", "grad_diff_same_batch", "corrected")

# ----------------------------------------------------------------------------- configurations


def shadow_config(cfg: Config) -> Config:
    """The shadow of ``cfg``: the same configuration with ``attack: none``.

    Seed, schedule, selection, data split and per-client generators are those of
    ``cfg``; the malicious clients then train honestly (with the client defense).
    """
    raw = cfg.to_dict()
    raw["attack"] = "none"
    raw.pop("backdoor", None)
    return config_mod.from_dict(raw)


def layer_table(cfg: Config) -> list[tuple[str, int, int]]:
    """(name, offset, size) of every parameter tensor in the flat layout's first P entries."""
    module = build_model(resolve_model(cfg), cfg.model.output)
    out, off = [], 0
    for name, p in module.named_parameters():
        out.append((name, off, p.numel()))
        off += p.numel()
    return out


def layer_names(cfg: Config) -> dict[str, str]:
    """Readable names of the network's layers with parameters, by module path: ``conv1``,
    ``BN1``, ... in order of their type (``fc`` when there is one linear layer, else ``fc1``...)."""
    module = build_model(resolve_model(cfg), cfg.model.output)
    kinds = {torch.nn.Conv2d: "conv", torch.nn.BatchNorm2d: "BN", torch.nn.BatchNorm1d: "BN", torch.nn.Linear: "fc"}
    found = [(name, kinds.get(type(m), type(m).__name__)) for name, m in module.named_modules()
             if name and next(m.parameters(recurse=False), None) is not None]
    count = {k: sum(1 for _, kk in found if kk == k) for _, k in found}
    seen: dict[str, int] = {}
    out = {}
    for name, kind in found:
        seen[kind] = seen.get(kind, 0) + 1
        out[name] = kind if kind == "fc" and count[kind] == 1 else f"{kind}{seen[kind]}"
    return out


def layer_groups(doc: dict, names: dict[str, str]) -> dict[str, list[str]]:
    """The parameter tensors of a measurement's ``delta_layers``, grouped by layer (readable
    names from :func:`layer_names`), in the network's order."""
    groups: dict[str, list[str]] = {}
    for tensor in doc["rounds"][0]["delta_layers"]:
        mod = tensor.rsplit(".", 1)[0]
        groups.setdefault(names.get(mod, mod), []).append(tensor)
    return groups


#: Readable names of the estimates compared with the exact Hessian (their formulas: the
#: derivations chapter) and of the columns of :func:`metrics_table`.
ESTIMATE_NAMES = {"secant": "secant estimate", "secant_same_batch": "secant, same batch (diagnostic)",
                  "paper": "the paper's estimate", "corrected": "the corrected estimate",
                  "code": "the released code's estimate", "diag_dw": "diagonal part of H ΔW",
                  "grad_diff": "gradient difference", "grad_diff_same_batch": "same-batch gradient difference"}
METRIC_COLUMNS = {"n": "n", "sign_agreement": "sign agreement", "spearman": "Spearman", "pearson": "Pearson",
                  "rel_err": "rel. L2 error", "median_rel_err": "median rel. error",
                  "fit_rel_err": "rel. error after best scale"}


def metrics_table(block: dict):
    """One row per estimate of a comparison block (``{estimate: approx_metrics(...)}``), the
    columns of :data:`METRIC_COLUMNS`."""
    import pandas as pd

    t = pd.DataFrame({ESTIMATE_NAMES.get(k, k): {METRIC_COLUMNS[c]: v[c] for c in METRIC_COLUMNS}
                      for k, v in block.items()}).T
    t["n"] = t["n"].astype(int)
    return t


# ----------------------------------------------------------------------------- part 1: shadow runs


def _run_capturing(cfg: Config, device, progress: bool) -> tuple[dict, Tensor]:
    """simulate(cfg) keeping the global state after every round; returns (result, [rounds x P] float64)."""
    states: list[Tensor] = []
    res = simulate(cfg, device=device, progress=progress,
                   on_round=lambda rnd, w, rec: states.append(w.detach().to("cpu", copy=True)))
    p = res["d"]["params"]
    ws = torch.stack([w[:p] for w in states]).double() if states else torch.zeros(0, p, dtype=torch.float64)
    return res, ws


def effect_records(real_w: Tensor, shadow_w: Tensor, real_recs: list[dict], shadow_recs: list[dict],
                   layers: list[tuple[str, int, int]]) -> list[dict]:
    """Per-round records: the real run's record plus the attack-effect measurements (see module doc)."""
    n = min(len(real_recs), len(shadow_recs), real_w.shape[0], shadow_w.shape[0])
    out, prev = [], None
    for t in range(n):
        d = real_w[t] - shadow_w[t]
        norm = float(d.norm())
        rec = dict(real_recs[t])
        s = shadow_recs[t]
        rec["delta_norm"] = norm
        rec["delta_layers"] = {name: float(d[o:o + k].norm()) for name, o, k in layers}
        benign = not rec["malicious"]
        rec["decay"] = norm / prev[1] if (prev is not None and benign and prev[1] > 0) else None
        if prev is not None and norm > 0 and prev[1] > 0:
            rec["delta_cos_prev"] = float(d @ prev[0]) / (norm * prev[1])
        else:
            rec["delta_cos_prev"] = None
        rec["update_norm"] = float((real_w[t] - real_w[t - 1]).norm()) if t > 0 else None
        rec["shadow_update_norm"] = float((shadow_w[t] - shadow_w[t - 1]).norm()) if t > 0 else None
        rec["shadow_main_acc"] = s.get("main_acc")
        rec["shadow_wall_s"] = s.get("wall_s")
        if "agg_weights" in rec and "agg_weights" in s:
            rec["same_aggregation"] = rec["agg_weights"] == s["agg_weights"]
        else:
            rec["same_aggregation"] = None
        out.append(rec)
        prev = (d, norm)
    return out


def _geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0 and math.isfinite(x)]
    return float(np.exp(np.mean(np.log(xs)))) if xs else None


def effect_summary(rounds: list[dict]) -> dict:
    """Headline numbers of one measurement (see the keys)."""
    norms = [r["delta_norm"] for r in rounds]
    decays = [r["decay"] for r in rounds if r["decay"] is not None]
    # stretches of benign rounds that follow a round with malicious clients
    stretches = []
    t = 0
    while t < len(rounds):
        if rounds[t]["malicious"] and t + 1 < len(rounds) and not rounds[t + 1]["malicious"]:
            a = t + 1
            b = a
            while b + 1 < len(rounds) and not rounds[b + 1]["malicious"]:
                b += 1
            start = norms[t]
            ratio = norms[b] / start if start > 0 else None
            stretches.append({"burst_round": rounds[t]["round"], "last_benign_round": rounds[b]["round"],
                              "benign_rounds": b - a + 1, "delta_after_burst": start, "delta_end": norms[b],
                              "retained": ratio,
                              "per_round": ratio ** (1 / (b - a + 1)) if ratio else None})
            t = b + 1
        else:
            t += 1
    same = [r["same_aggregation"] for r in rounds if not r["malicious"] and r["same_aggregation"] is not None]
    return {
        "delta_norm_final": norms[-1] if norms else None,
        "delta_norm_max": max(norms) if norms else None,
        "delta_norm_mean": float(np.mean(norms)) if norms else None,
        "decay_benign_n": len(decays),
        "decay_benign_median": float(np.median(decays)) if decays else None,
        "decay_benign_geomean": _geomean(decays),
        "decay_benign_min": min(decays) if decays else None,
        "decay_benign_max": max(decays) if decays else None,
        "decay_benign_frac_below_1": float(np.mean([x < 1 for x in decays])) if decays else None,
        "stretches": stretches,
        "retained_geomean": _geomean([s["retained"] for s in stretches]),
        "same_aggregation_benign_frac": float(np.mean(same)) if same else None,
    }


def is_measurement(doc: dict | None, cfg: Config) -> bool:
    """A stored document is a complete attack-effect measurement of ``cfg``."""
    return (doc is not None and doc.get("kind") == KIND and doc.get("format") == FORMAT
            and doc.get("hash") == cfg.hash and doc.get("config") == cfg.to_dict()
            and bool(doc["rounds"]) and all("delta_norm" in r for r in doc["rounds"]))


def measure(cfg: Config, force: bool = False, device=None, progress: bool = True) -> tuple[Path, dict]:
    """The attack-effect measurement of ``cfg`` (real run vs its shadow), reusing a stored one.

    ``cfg`` is stored under ``experiment: attack_effect`` (its hash does not
    depend on the experiment). Returns ``(path, document)``.
    """
    cfg = dataclasses.replace(cfg, experiment=EXPERIMENT)
    path = store.path_for(cfg)
    if not force:
        doc = store.load_valid(path)
        if is_measurement(doc, cfg):
            return path, doc
    device = pick_device(device)
    shadow = dataclasses.replace(shadow_config(cfg), experiment=EXPERIMENT)
    t0 = time.perf_counter()
    real, real_w = _run_capturing(cfg, device, progress)
    shadow_res, shadow_w = _run_capturing(shadow, device, progress)
    layers = layer_table(cfg)
    rounds = effect_records(real_w, shadow_w, real["rounds"], shadow_res["rounds"], layers)
    summary = dict(real["summary"])
    summary["attack_effect"] = effect_summary(rounds)
    prov = store.provenance(real, cfg)
    prov.update(shadow_wall_s=round(shadow_res["wall_s"], 3), measure_wall_s=round(time.perf_counter() - t0, 3))
    doc = {"kind": KIND, "format": FORMAT, "config": cfg.to_dict(), "hash": cfg.hash, "status": real["status"],
           "rounds": rounds, "summary": summary, "provenance": prov,
           "shadow": {"config": shadow.to_dict(), "hash": shadow.hash, "status": shadow_res["status"],
                      "summary": shadow_res["summary"]},
           "layers": [{"name": n, "offset": o, "size": k} for n, o, k in layers]}
    store.write(path, doc)
    return path, store.read(path)


# ----------------------------------------------------------------------------- part 2: exact Hessian diagonal


def hessian_diagonal(loss_fn: Callable[[Tensor], Tensor], w: Tensor, coords) -> Tensor:
    """Exact ``H_jj`` of ``loss_fn`` at ``w`` for the coordinates ``coords``.

    One Hessian-vector product per coordinate, by double backward: with
    ``g = grad loss_fn(w)`` (graph kept), ``grad_w g_j`` is row ``j`` of the
    (symmetric) Hessian, ``H e_j``; its entry ``j`` is ``H_jj``.
    """
    w = w.detach().clone().requires_grad_(True)
    g = torch.autograd.grad(loss_fn(w), w, create_graph=True)[0]
    out = torch.empty(len(coords), dtype=w.dtype)
    for k, j in enumerate(coords):
        row = torch.autograd.grad(g[int(j)], w, retain_graph=True)[0]
        out[k] = row[int(j)]
    return out


def hvp(loss_fn: Callable[[Tensor], Tensor], w: Tensor, v: Tensor) -> Tensor:
    """Exact Hessian-vector product ``H v`` of ``loss_fn`` at ``w`` (double backward)."""
    w = w.detach().clone().requires_grad_(True)
    g = torch.autograd.grad(loss_fn(w), w, create_graph=True)[0]
    return torch.autograd.grad(g, w, grad_outputs=v.detach())[0]


def approximations(w_im1: Tensor, w_i: Tensor, g_im1: Tensor, g_i: Tensor, v_i: Tensor,
                   lr: float, g_im1_same: Tensor | None = None) -> dict[str, Tensor]:
    """The diagonal-Hessian estimates at local step ``i`` (see the module doc), per coordinate.

    ``w_im1, w_i``: weights before steps i-1 and i; ``g_im1, g_i``: the batch
    gradients there; ``v_i``: the momentum buffer of step i (``W~_{i+1} = w_i - lr v_i``);
    ``g_im1_same``: the gradient at ``w_im1`` on step i's batch (optional).
    Division by a zero step gives inf/nan, which the metrics drop.
    """
    dw = w_i - w_im1                       # = -lr v_{i-1}
    w_tilde = w_i - lr * v_i               # the first-stage (normal) step
    out = {
        "secant": (g_i - g_im1) / dw,
        "paper": (w_tilde - w_i - dw) / lr,
        "corrected": (w_i - w_tilde + dw) / lr,
        "code": ((w_tilde - w_i - g_im1 - lr) + lr) / lr ** 2,   # (D + lr) / lr^2, W_prev = w_i, G_prev = g_{i-1}
    }
    if g_im1_same is not None:
        out["secant_same_batch"] = (g_i - g_im1_same) / dw
    return out


def _finite(*arrays):
    a = [np.asarray(x, dtype=np.float64) for x in arrays]
    keep = np.ones(a[0].shape, dtype=bool)
    for x in a:
        keep &= np.isfinite(x)
    return [x[keep] for x in a]


def approx_metrics(a, h) -> dict:
    """Agreement of an approximation ``a`` with the exact values ``h`` (finite pairs only)."""
    from scipy import stats

    total = len(np.asarray(h))
    a, h = _finite(a, h)
    nz = h != 0
    out = {"n": int(len(h)), "n_dropped": int(total - len(h))}
    if len(h) < 3:
        return {**out, "sign_agreement": None, "spearman": None, "pearson": None, "rel_err": None,
                "median_rel_err": None, "fit_rel_err": None}
    hn = float(np.linalg.norm(h))
    an = float(np.linalg.norm(a))
    cos = float(a @ h) / (an * hn) if an > 0 and hn > 0 else 0.0
    const = np.all(a == a[0]) or np.all(h == h[0])
    return {
        **out,
        "sign_agreement": float(np.mean(np.sign(a[nz]) == np.sign(h[nz]))) if nz.any() else None,
        "spearman": None if const else float(stats.spearmanr(a, h).statistic),
        "pearson": None if const else float(stats.pearsonr(a, h).statistic),
        "rel_err": float(np.linalg.norm(a - h)) / hn if hn > 0 else None,
        "median_rel_err": float(np.median(np.abs(a[nz] - h[nz]) / np.abs(h[nz]))) if nz.any() else None,
        "fit_rel_err": math.sqrt(max(0.0, 1 - cos ** 2)),
    }


@dataclass(frozen=True)
class HessianOptions:
    """Where and how much of the exact diagonal to compute.

    rounds: global models after these rounds of the benign run; steps: local
    steps ``i`` (>= 1) of the benign client at which ``W_i`` is taken;
    coordinates: how many coordinates (spread over the parameter tensors);
    seed: coordinates and the client's batch order.
    """

    rounds: tuple = (0, 19)
    steps: tuple = (5, 20, 35)
    coordinates: int = 300
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict | None) -> "HessianOptions":
        d = dict(d or {})
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown hessian option(s) {sorted(unknown)}; valid: rounds, steps, coordinates, seed")
        opts = cls(**{k: tuple(int(x) for x in v) if k in ("rounds", "steps") else int(v) for k, v in d.items()})
        if not opts.rounds or min(opts.rounds) < 0:
            raise ConfigError(f"hessian.rounds must be a non-empty list of rounds >= 0, got {list(opts.rounds)}")
        if not opts.steps or min(opts.steps) < 1:
            raise ConfigError(f"hessian.steps must be a non-empty list of local steps >= 1, got {list(opts.steps)}")
        if opts.coordinates < 1:
            raise ConfigError(f"hessian.coordinates must be >= 1, got {opts.coordinates}")
        return opts

    def to_dict(self) -> dict:
        return {"rounds": list(self.rounds), "steps": list(self.steps), "coordinates": self.coordinates,
                "seed": self.seed}


def helper_config(cfg: Config, opts: HessianOptions) -> Config:
    """The benign run whose global models are the Hessian points: ``cfg`` with no attack,
    no client defense, ``max(rounds) + 1`` rounds, evaluated in its last round only."""
    raw = cfg.to_dict()
    n = max(opts.rounds) + 1
    raw.update(attack="none", client_defense="none", rounds=n, experiment=EXPERIMENT)
    raw["eval"] = {**raw["eval"], "every": n}
    raw.pop("backdoor", None)
    return config_mod.from_dict(raw)


def hessian_key(helper: Config, opts: HessianOptions) -> str:
    return store.derived_key(helper, "hessian", opts.to_dict())


def hessian_path(cfg: Config, opts: HessianOptions) -> Path:
    return store.results_dir() / EXPERIMENT / f"hessian-{hessian_key(helper_config(cfg, opts), opts)}.json"


def pick_coordinates(layers: list[tuple[str, int, int]], k: int, seed: int) -> tuple[list[int], list[int]]:
    """``k`` coordinates spread over the tensors (per tensor proportional to sqrt(size), >= 1,
    at most its size); returns (flat indices, tensor index of each)."""
    sizes = np.array([n for _, _, n in layers], dtype=float)
    share = np.sqrt(sizes) / np.sqrt(sizes).sum() * k
    if k < len(layers):  # too few for one per tensor: one each in the k largest tensors
        alloc = np.zeros(len(layers), dtype=int)
        alloc[np.argsort(-sizes, kind="stable")[:k]] = 1
    else:
        alloc = np.minimum(np.maximum(1, np.floor(share)).astype(int), sizes.astype(int))
    while alloc.sum() > k:  # the minimum of one per tensor overshot: take from the largest shares
        alloc[int(np.argmax(alloc))] -= 1
    rest = k - alloc.sum()
    order = np.argsort(-(share - np.floor(share)))
    while rest > 0 and (alloc < sizes).any():
        for i in order:
            if rest > 0 and alloc[i] < sizes[i]:
                alloc[i] += 1
                rest -= 1
    gen = torch.Generator().manual_seed(seed)
    idx, which = [], []
    for t, ((_, off, n), m) in enumerate(zip(layers, alloc)):
        pick = torch.randperm(n, generator=gen)[:m].sort().values + off
        idx += pick.tolist()
        which += [t] * int(m)
    return idx, which


def _flat_loss(module: torch.nn.Module, layers, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    """The batch loss as a function of the flat parameter vector (BatchNorm in train mode)."""
    from torch.func import functional_call

    segments = param_segments(module)  # the flat layout of the engine (channels-last convolutions)
    assert [(seg.name, seg.off, seg.n) for seg in segments] == [tuple(t) for t in layers]

    def loss(w: Tensor) -> Tensor:
        params = {seg.name: seg.view(w) for seg in segments}
        return F.cross_entropy(functional_call(module, params, (x,)), y)

    return loss


def _load_buffers(module: torch.nn.Module, w: Tensor, p: int) -> None:
    off = p
    with torch.no_grad():
        for _, b in module.named_buffers():
            if b.is_floating_point():
                b.copy_(w[off:off + b.numel()].view_as(b))
                off += b.numel()


def _r(x) -> list:
    return [float(f"{v:.8g}") for v in np.asarray(x, dtype=np.float64).tolist()]


def _point(cfg: Config, module, layers, data, client_idx: Tensor, w0: Tensor, steps: tuple, coords: list[int],
           gen: torch.Generator) -> list[dict]:
    """Local momentum-SGD from ``w0`` on the client's data; the measurements at each step of ``steps``."""
    lr, mu, bs = cfg.lr, cfg.momentum, cfg.batch_size
    n = len(client_idx)
    order = client_idx[torch.randperm(n, generator=gen)]
    pos = 0

    def next_batch():
        nonlocal order, pos
        if pos >= n:
            order, pos = client_idx[torch.randperm(n, generator=gen)], 0
        idx = order[pos:pos + bs]
        pos += bs
        return data.train_x[idx], data.train_y[idx]

    def grad(loss_fn, w):
        w = w.detach().clone().requires_grad_(True)
        loss = loss_fn(w)
        return torch.autograd.grad(loss, w)[0].detach(), float(loss.detach())

    cidx = torch.tensor(coords)
    w = w0.clone()
    v = torch.zeros_like(w)
    prev = None  # (w_{k-1}, g_{k-1}, v_{k-1})
    out = []
    for k in range(max(steps) + 1):
        x, y = next_batch()
        loss_fn = _flat_loss(module, layers, x, y)
        g, loss = grad(loss_fn, w)
        v_new = mu * v + g
        if k in steps and prev is not None:
            w_im1, g_im1, v_im1 = prev
            g_same, _ = grad(loss_fn, w_im1)
            t0 = time.perf_counter()
            h = hessian_diagonal(loss_fn, w, coords)
            hdw = hvp(loss_fn, w, w - w_im1)[cidx]
            ap = approximations(w_im1[cidx], w[cidx], g_im1[cidx], g[cidx], v_new[cidx], lr, g_same[cidx])
            dw = (w - w_im1)[cidx]
            out.append({
                "step": k, "loss": loss, "hessian_s": round(time.perf_counter() - t0, 3),
                "exact": _r(h), "hdw": _r(hdw), "dw": _r(dw), "diag_dw": _r(h * dw),
                "g_i": _r(g[cidx]), "g_im1": _r(g_im1[cidx]), "g_im1_same_batch": _r(g_same[cidx]),
                "v_i": _r(v_new[cidx]), "v_im1": _r(v_im1[cidx]),
                "grad_diff": _r((g - g_im1)[cidx]), "grad_diff_same_batch": _r((g - g_same)[cidx]),
                "frac_prev_grad_above_q": float((g_im1[cidx].abs() > LEADFL_Q).float().mean()),
                **{name: _r(val) for name, val in ap.items()},
            })
        prev = (w.clone(), g, v_new)
        v = v_new
        w = w - lr * v
    return out


def hessian_metrics(points: list[dict]) -> dict:
    """Pooled and per-point metrics of every approximation (see :func:`approx_metrics`)."""
    def pooled(key):
        return np.concatenate([np.asarray(p[key], dtype=np.float64) for p in points]) if points else np.zeros(0)

    out = {"vs_exact": {}, "vs_hdw": {}, "per_point": []}
    for name in APPROXIMATIONS:
        out["vs_exact"][name] = approx_metrics(pooled(name), pooled("exact"))
    for name in STEP_TARGETS:
        out["vs_hdw"][name] = approx_metrics(pooled(name), pooled("hdw"))
    for p in points:
        out["per_point"].append({"round": p["round"], "step": p["step"],
                                 **{name: approx_metrics(p[name], p["exact"]) for name in APPROXIMATIONS}})
    h = pooled("exact")
    out["exact"] = {"n": int(len(h)), "frac_positive": float(np.mean(h > 0)) if len(h) else None,
                    "frac_zero": float(np.mean(h == 0)) if len(h) else None,
                    "median": float(np.median(h)) if len(h) else None,
                    "median_abs": float(np.median(np.abs(h))) if len(h) else None}
    return out


def is_hessian_doc(doc: dict | None, helper: Config, opts: HessianOptions) -> bool:
    return (doc is not None and doc.get("kind") == HESSIAN_KIND and doc.get("format") == FORMAT
            and doc.get("hash") == helper.hash and doc.get("config") == helper.to_dict()
            and doc.get("hessian_options") == opts.to_dict())


def compare_hessian(cfg: Config, opts: HessianOptions | dict | None = None, force: bool = False, device="cpu",
                    progress: bool = True) -> tuple[Path, dict]:
    """The Hessian comparison for the model and protocol of ``cfg``, reusing a stored one.

    Computes on the CPU by default (the double-backward loop is latency bound).
    """
    opts = opts if isinstance(opts, HessianOptions) else HessianOptions.from_dict(opts)
    helper = helper_config(cfg, opts)
    path = hessian_path(cfg, opts)
    if not force:
        doc = store.load_valid(path)
        if is_hessian_doc(doc, helper, opts):
            return path, doc
    device = pick_device(device)
    states: dict[int, Tensor] = {}
    res = simulate(helper, device=device, progress=progress,
                   on_round=lambda rnd, w, rec: states.__setitem__(rnd, w.detach().clone())
                   if rnd in opts.rounds else None)
    t0 = time.perf_counter()
    data = res["data"]
    layers = layer_table(helper)
    p = res["d"]["params"]
    coords, which = pick_coordinates(layers, opts.coordinates, opts.seed)
    module = build_model(resolve_model(helper), helper.model.output).to(device)
    module.train()
    clients = split_clients(helper, len(data.train_y), data.train_y.cpu())
    select = Selection(helper)  # the run's selection step
    points = []
    for rnd in sorted(set(opts.rounds)):
        if rnd not in states:
            continue  # the helper run stopped early (diverged)
        nxt = [c for c in select(rnd + 1)[0] if c not in select.mal]
        client = nxt[0]
        w0 = states[rnd]
        _load_buffers(module, w0, p)
        gen = torch.Generator().manual_seed(hessian_seed(opts.seed, rnd))
        for rec in _point(helper, module, layers, data, clients[client].to(device), w0[:p].clone(), opts.steps,
                          coords, gen):
            points.append({"round": rnd, "client": client, **rec})
    summary = dict(res["summary"])
    summary["hessian"] = hessian_metrics(points)
    summary["hessian"]["lr"] = helper.lr
    summary["hessian"]["momentum"] = helper.momentum
    prov = store.provenance(res, helper)
    prov["hessian_wall_s"] = round(time.perf_counter() - t0, 3)
    doc = {"kind": HESSIAN_KIND, "format": FORMAT, "config": helper.to_dict(), "hash": helper.hash,
           "key": hessian_key(helper, opts), "base_hash": cfg.hash, "status": res["status"],
           "rounds": res["rounds"], "summary": summary, "provenance": prov, "hessian_options": opts.to_dict(),
           "coordinates": coords, "coordinate_layer": which,
           "layers": [{"name": n, "offset": o, "size": k} for n, o, k in layers], "points": points}
    store.write(path, doc)
    return path, store.read(path)


# ----------------------------------------------------------------------------- parameter files


def read_params(path_or_dict, overrides=None, cases=None) -> tuple[list[Config], HessianOptions, dict]:
    """The measured configurations (``base`` x ``cases`` x ``grid``, as a sweep, with
    ``overrides`` applied to the base as ``flcore sweep --set``; ``cases``: only these 1-based
    case numbers, as ``flcore sweep --case``), the Hessian options and the raw spec of
    ``params/attack_effect[.<profile>].yaml``."""
    from flcore.experiments.sweep import expand_cases, read_spec

    spec, _ = read_spec(path_or_dict)
    sweep_part = {k: spec[k] for k in ("experiment", "profile", "base", "cases", "grid") if k in spec}
    return expand_cases(sweep_part, cases, overrides), HessianOptions.from_dict(spec.get("hessian")), spec


def stored(path_or_dict, overrides=None) -> dict:
    """What the store holds of a parameter file's measurements, computing nothing (the book's
    paper-protocol section: each measurement there is two runs of an hour of a CPU).

    Returns ``measured`` (``[(config, document)]``, file order), ``missing`` (configurations
    without a complete measurement), ``hessian`` (the stored comparison or ``None``) and
    ``options`` (the file's :class:`HessianOptions`)."""
    cfgs, hopts, _ = read_params(path_or_dict, overrides)
    measured, missing = [], []
    for c in cfgs:
        c = dataclasses.replace(c, experiment=EXPERIMENT)
        doc = store.load_valid(store.path_for(c))
        if is_measurement(doc, c):
            measured.append((c, doc))
        else:
            missing.append(c)
    hdoc = store.load_valid(hessian_path(cfgs[0], hopts)) if cfgs else None
    ok = bool(cfgs) and is_hessian_doc(hdoc, helper_config(cfgs[0], hopts), hopts)
    return {"measured": measured, "missing": missing, "hessian": hdoc if ok else None, "options": hopts}


def effect_value(doc: dict, key: str) -> float | None:
    """``key`` of a measurement: a field of ``summary.attack_effect`` (``delta_norm_final``,
    ``decay_benign_median``, ...) or of the run's ``summary`` (``backdoor_acc_final``, ...)."""
    effect = doc["summary"]["attack_effect"]
    value = effect[key] if key in effect else doc["summary"].get(key)
    return None if value is None else float(value)


def matched_ratios(measured, key: str = "delta_norm_final", num: str = "leadfl",
                   den: str = "none") -> dict[int, float]:
    """Per seed measured with both client defenses: ``key`` (:func:`effect_value`) of the
    ``num`` measurement over that of the ``den`` one (same seed, so the same model
    initialisation, data order and selection). Seeds with only one of them, or a zero or
    missing denominator, are left out."""
    by = {(c.client_defense, c.seed): d for c, d in measured}
    out = {}
    for seed in sorted({s for _, s in by}):
        a, b = by.get((num, seed)), by.get((den, seed))
        if a is None or b is None:
            continue
        va, vb = effect_value(a, key), effect_value(b, key)
        if va is not None and vb:
            out[seed] = va / vb
    return out


def diagonal_factors(exact, lr: float, steps: int) -> np.ndarray:
    """The diagonal picture's one-round factor ``(1 - lr H_jj)^K`` per coordinate for ``K``
    local steps (``book/derivations.md``, the attack effect after a burst)."""
    return (1 - lr * np.asarray(exact, dtype=float)) ** int(steps)


def measure_all(path_or_dict, force: bool = False, device=None, progress: bool = True, overrides=None,
                cases=None, what: str = "all") -> dict:
    """The measurements (``what``: ``all`` or ``measurements``) and the Hessian comparison
    (``all`` or ``hessian``) of a parameter file, stored ones reused; returns their paths.
    ``overrides`` and ``cases`` select part of the file, as in :func:`read_params`."""
    if what not in WHAT:
        raise ConfigError(f"unknown part {what!r}; choose one of {', '.join(WHAT)}")
    cfgs, hopts, _ = read_params(path_or_dict, overrides, cases)
    out = {}
    if what in ("all", "measurements"):
        out["measurements"] = [str(measure(c, force=force, device=device, progress=progress)[0]) for c in cfgs]
    if what in ("all", "hessian"):
        out["hessian"] = str(compare_hessian(cfgs[0], hopts, force=force, progress=progress)[0])
    return out


WHAT = ("all", "measurements", "hessian")


def main(argv: list[str] | None = None) -> int:
    """``python -m flcore.experiments.attack_effect FILE``: compute what the store lacks of a
    parameter file's measurements and Hessian comparison (one part of it with ``--case`` and
    ``--set``, e.g. ``--case 2 --set seed=1``), printing the stored paths."""
    import argparse
    import sys

    from flcore.core.errors import UserError

    ap = argparse.ArgumentParser(prog="python -m flcore.experiments.attack_effect",
                                 description="attack-effect measurements (real run vs shadow) and the Hessian "
                                             "comparison of a parameter file; stored ones are reused")
    ap.add_argument("config", help="parameter file, e.g. params/attack_effect.paper.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a base key, as flcore sweep --set (seed=S replaces the seed axis)")
    ap.add_argument("--case", type=int, action="append", default=None, metavar="N",
                    help="only case N of the file (1-based, in file order); repeatable")
    ap.add_argument("--what", choices=WHAT, default="all",
                    help="measurements, the Hessian comparison, or both (default)")
    ap.add_argument("--device", default=None, help="auto, cpu or cuda (default: CUDA if present)")
    ap.add_argument("--force", action="store_true", help="recompute even what is stored")
    args = ap.parse_args(argv)
    try:
        out = measure_all(args.config, force=args.force, device=args.device, overrides=args.overrides,
                          cases=args.case, what=args.what)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in [*out.get("measurements", []), *([out["hessian"]] if "hessian" in out else [])]:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
