"""Multi-Krum in a 5-of-10 round: how many malicious models it keeps, and why.

The paper schedule forces rounds 0, 10 and 12 to 5 malicious + 5 benign
clients. There Multi-Krum (reference: f = 1, so each score sums the 7 nearest
of the other 9 models; the 5 lowest scores are averaged) is at a tie: every
model's 7 nearest are its 4 group mates and the 3 nearest of the other group.
An offset that every malicious-benign pair shares, such as the BatchNorm batch
counters (2 x 380^2 at the paper protocol on Fashion-MNIST), adds the same
3 x offset to all ten scores and so decides nothing; what decides is how tight
each group is, and the cross distances to its nearest members.

The authors' code, run unchanged (``../shared/data/reference-runs``), kept 4 or
5 of the 5 malicious models in round 0; our engine keeps fewer. Two facts of the
reference code (``chaoyitud/LeadFL`` at 06ecc98) change what the server sees
without changing a single parameter, because BatchNorm in train mode normalises
with the batch's own statistics and only its *running* statistics (and the
counters) record the order and number of forward passes:

1. **Forward order of a malicious step.** The backdoor library evaluates its
   loss tasks in the configured order ``[backdoor, normal]``: the triggered
   batch first, then the clean one. Our engine runs the clean batch first. The
   parameters are the same either way; the running statistics end on the other
   batch.
2. **Client self-test.** After training, every reference client tests its
   model (``Client.exec_round`` calls ``test()`` / ``backdoor_test()``) on its
   test shard (test images r, r+100, ... of client r, one batch) in train-mode
   BatchNorm, and the state it returns is ``state_dict()``, i.e. references to
   the live tensors: the server receives the statistics *after* that test, one
   more running-statistics update (clean images for benign clients, triggered
   images for malicious ones) and counters + 1.

:func:`analyse` trains the clients of one round once with the engine
(:func:`flcore.sim.engine.simulate`, ``rounds = rnd + 1``), records every BatchNorm
forward of each client (its batch statistics, from the change of the running
statistics), and then builds the states the server would receive under each
variant of :data:`VARIANTS` from the same trained parameters: the running
statistics are replayed in the other order (:func:`replay_running`), the
self-test is one more train-mode forward, ``trainable`` drops the BatchNorm
statistics and counters from the distances. For each variant it records which
clients Multi-Krum keeps and the mean squared distances within and across the
two groups, split into parameters, BatchNorm statistics and counters
(:func:`group_distances`).

Storage: ``results/analyses/tie/<hash>-r<round>.json`` (the hash of the run's
configuration), with the seeds, the per-seed results, provenance and a checksum: one
folder deeper than the runs (``results/<experiment>/<hash>.json``), so that nothing that
scans the stored runs mistakes an analysis for a run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from flcore.core import config, registry
from flcore.storage import store
from flcore.methods.attacks import apply_trigger, trigger_values
from flcore.sim.engine import simulate
from flcore.core.errors import ConfigError, UserError

VARIANTS = {
    "ours": "the engine's states (clean forward first, no self-test)",
    "ours_selftest": "the engine's states plus the reference's client self-test",
    "reference_order": "running statistics replayed with the triggered forward first",
    "reference": "triggered forward first plus the client self-test (the reference code)",
    "trainable": "the engine's states, distances over the trainable parameters only",
}


# ----------------------------------------------------------------------------- maths


def test_shard(client: int, n_test: int, n_clients: int) -> Tensor:
    """Test-set indices of client ``client`` (1-based) in the reference's uniform
    test sampler: ``client, client + n_clients, ...`` (index 0 is nobody's)."""
    return torch.arange(client, n_test, n_clients)


def replay_running(start: Tensor, pairs: list[tuple[Tensor, Tensor]], momentum: float,
                   triggered_first: bool) -> Tensor:
    """Running statistic after a malicious client's steps.

    ``pairs`` holds, per step, the batch statistic of the clean forward and of the
    triggered forward; each forward updates ``r <- (1 - momentum) r + momentum s``.
    ``triggered_first`` replays them in the reference order (triggered, clean)."""
    r = start.clone()
    for clean, trig in pairs:
        for s in ((trig, clean) if triggered_first else (clean, trig)):
            r = (1 - momentum) * r + momentum * s
    return r


def group_distances(states: Tensor, is_malicious: list[bool], parts: dict[str, slice]) -> dict:
    """Mean squared distance within the malicious group, within the benign group and
    across them, for each part of the flat state (float64)."""
    x = states.double()
    mal = torch.tensor(is_malicious)
    out = {}
    for name, sl in parts.items():
        d = torch.cdist(x[:, sl], x[:, sl]) ** 2
        within = lambda g: d[g][:, g][~torch.eye(int(g.sum()), dtype=torch.bool)].mean().item()  # noqa: E731
        out[name] = {"within_malicious": within(mal), "within_benign": within(~mal),
                     "across": d[mal][:, ~mal].mean().item()}
    return out


def kept(weights: Tensor, is_malicious: list[bool]) -> tuple[list[int], int]:
    """Positions the aggregator kept (non-zero weight) and how many of them are malicious."""
    pos = [i for i, w in enumerate(weights.tolist()) if w > 0]
    return pos, sum(bool(is_malicious[i]) for i in pos)


# ----------------------------------------------------------------------------- recording


class _BNRecorder:
    """Batch statistics of every training forward of every BatchNorm layer, per client."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.layers = [m for m in trainer.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.current: list | None = None
        self.clients: list[dict] = []
        self.global_w: Tensor | None = None
        for k, m in enumerate(self.layers):
            m.register_forward_pre_hook(self._pre(k))
            m.register_forward_hook(self._post(k))
        original = trainer.train_row

        def train_row(row):
            if self.global_w is None or not torch.equal(self.global_w, row.start):
                self.global_w, self.clients = row.start.clone(), []
            self.current = [[] for _ in self.layers]
            try:
                return original(row)
            finally:
                self.clients.append({"malicious": bool(row.malicious), "stats": self.current})
                self.current = None

        trainer.train_row = train_row
        self._before: dict[int, tuple[Tensor, Tensor]] = {}

    def _pre(self, k):
        def hook(module, args):
            if self.current is not None and module.training:
                self._before[k] = (module.running_mean.clone(), module.running_var.clone())
        return hook

    def _post(self, k):
        def hook(module, args, output):
            if self.current is not None and module.training:
                m0, v0 = self._before.pop(k)
                mom = module.momentum
                self.current[k].append(((module.running_mean - (1 - mom) * m0) / mom,
                                        (module.running_var - (1 - mom) * v0) / mom))
        return hook


def _buffer_offsets(trainer) -> list[tuple[int, int, int]]:
    """(running_mean offset, running_var offset, size) of each BatchNorm layer in the flat state."""
    flat, off, where = trainer.flat, trainer.flat.P, {}
    for name, b in trainer.module.named_buffers():
        if b.is_floating_point():
            where[name] = (off, b.numel())
            off += b.numel()
    out = []
    for name, m in trainer.module.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            (om, n), (ov, _) = where[f"{name}.running_mean"], where[f"{name}.running_var"]
            out.append((om, ov, n))
    assert off == flat.P + flat.B
    return out


# ----------------------------------------------------------------------------- one round


def analyse(cfg: config.Config, rnd: int = 0, device: str = "cpu") -> dict:
    """Train the clients of round ``rnd`` of ``cfg`` and return, per variant, the
    clients Multi-Krum keeps and the group distances (see the module docstring)."""
    holder: dict = {}
    captured: dict = {}

    def on_setup(trainer):
        holder["rec"] = _BNRecorder(trainer)
        holder["trainer"] = trainer

    def on_clients(r, selected, is_mal, new_ws):
        if r == rnd:
            captured.update(selected=list(selected), is_mal=list(is_mal), states=new_ws.clone(),
                            global_w=holder["rec"].global_w.clone(), clients=list(holder["rec"].clients))

    simulate(cfg, device=device, progress=False, rounds=rnd + 1, on_setup=on_setup, on_clients=on_clients)
    t, rec = holder["trainer"], holder["rec"]
    flat, data = t.flat, t.data
    selected, is_mal, states, global_w = (captured[k] for k in ("selected", "is_mal", "states", "global_w"))
    offsets = _buffer_offsets(t)
    layers = rec.layers

    # the reference order: the malicious clients' running statistics replayed
    ref_order = states.clone()
    replay_error = 0.0
    for i, client in enumerate(captured["clients"]):
        if not client["malicious"]:
            continue
        for (om, ov, n), layer, stats in zip(offsets, layers, client["stats"]):
            pairs_m = [(stats[j][0], stats[j + 1][0]) for j in range(0, len(stats), 2)]
            pairs_v = [(stats[j][1], stats[j + 1][1]) for j in range(0, len(stats), 2)]
            for o, pairs in ((om, pairs_m), (ov, pairs_v)):
                start = global_w[o:o + n]
                mine = replay_running(start, pairs, layer.momentum, triggered_first=False)
                replay_error = max(replay_error, float((mine - states[i, o:o + n]).abs().max()))
                ref_order[i, o:o + n] = replay_running(start, pairs, layer.momentum, triggered_first=True)

    opts = cfg.options("backdoor")
    trigger = trigger_values(cfg.dataset, opts.trigger, data.mean, data.std).to(flat.w.device)

    def self_test(rows: Tensor) -> Tensor:
        out = rows.clone()
        t.module.train()
        with torch.no_grad():
            for i, c in enumerate(selected):
                flat.w.copy_(rows[i])
                x = data.test_x[test_shard(c, len(data.test_y), cfg.clients).to(data.test_x.device)]
                if is_mal[i]:
                    x = apply_trigger(x, trigger)
                t.module(x)
                flat.w[flat.counter_slice] += 1
                out[i] = flat.w
        return out

    variants = {"ours": states, "ours_selftest": self_test(states), "reference_order": ref_order,
                "reference": self_test(ref_order), "trainable": states}
    agg = registry.get("aggregator", cfg.aggregator)
    weights = torch.ones(len(selected))
    parts = {"parameters": slice(0, flat.P), "bn_statistics": slice(flat.P, flat.P + flat.B),
             "bn_counters": flat.counter_slice}
    out = {"round": rnd, "selected": selected, "malicious": [c for c, m in zip(selected, is_mal) if m],
           "replay_max_abs_error": replay_error, "variants": {}}
    for name, rows in variants.items():
        deltas = rows - global_w
        d_agg = flat.P if name == "trainable" else flat.d
        _, w = agg.fn(deltas[:, :d_agg], weights, cfg.options(cfg.aggregator), {})
        pos, n_mal = kept(w, is_mal)
        out["variants"][name] = {"kept": [selected[i] for i in pos], "kept_malicious": n_mal,
                                 "distances": group_distances(deltas, is_mal, parts)}
    return out


# ----------------------------------------------------------------------------- store and CLI


def path_for(cfg: config.Config, rnd: int) -> Path:
    return store.results_dir() / "analyses" / "tie" / f"{cfg.hash}-r{rnd}.json"


def run(cfg: config.Config, seeds: list[int], rnd: int = 0, device: str = "cpu") -> Path:
    """Analyse round ``rnd`` for each seed (``cfg`` with ``seed`` replaced) and store the result.

    Seeds already stored for this configuration are reused; the file is rewritten after
    every new seed, so an interrupted analysis keeps what it computed."""
    import dataclasses

    path = path_for(cfg, rnd)
    doc = load(path) if path.exists() else None
    if doc is None or doc["round"] != rnd or doc["hash"] != cfg.hash:
        doc = {"config": cfg.to_dict(), "hash": cfg.hash, "round": rnd, "seeds": [], "variants": VARIANTS,
               "per_seed": [], "provenance": {}}
    for s in seeds:
        if s in doc["seeds"]:
            continue
        t0 = time.perf_counter()
        print(f"tie analysis: {cfg.local_epochs} local epoch(s), {cfg.client_defense}, seed {s}, round {rnd}",
              file=sys.stderr, flush=True)
        doc["per_seed"].append({"seed": s, **analyse(dataclasses.replace(cfg, seed=s), rnd, device)})
        doc["per_seed"].sort(key=lambda r: r["seed"])
        doc["seeds"] = [r["seed"] for r in doc["per_seed"]]
        doc["provenance"].setdefault("per_seed", {})[str(s)] = {
            "git_commit": store.loaded_commit(), "torch": torch.__version__, "numpy": np.__version__,
            "device": device, "threads": torch.get_num_threads(), "wall_s": round(time.perf_counter() - t0, 1)}
        _write(path, doc)
    return path


def _write(path: Path, doc: dict) -> None:
    doc = {k: v for k, v in doc.items() if k != "checksum"}
    doc["checksum"] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def load(path: Path) -> dict:
    """A stored tie analysis, checked against its checksum."""
    doc = json.loads(Path(path).read_text())
    body = {k: v for k, v in doc.items() if k != "checksum"}
    if doc.get("checksum") != hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest():
        raise UserError(f"{path}: checksum mismatch (the file was altered or corrupted)")
    return doc


def stored() -> list[dict]:
    """Every stored tie analysis (checked), oldest configuration hash first."""
    return [load(p) for p in sorted((store.results_dir() / "analyses" / "tie").glob("*-r*.json"))]


def kept_table(doc: dict) -> "pd.DataFrame":
    """One row per variant: the malicious models Multi-Krum kept, per seed and on average."""
    import pandas as pd

    rows = []
    for name in [v for v in VARIANTS if v in doc["variants"]]:  # the stored file sorts its keys
        what = doc["variants"][name]
        per = [s["variants"][name]["kept_malicious"] for s in doc["per_seed"]]
        rows.append({"variant": name, "what the server receives": what, "mean kept": float(np.mean(per)),
                     "per seed": ", ".join(str(k) for k in per)})
    return pd.DataFrame(rows).set_index("variant")


def distance_table(doc: dict, variant: str) -> "pd.DataFrame":
    """Mean over seeds of the squared distances within and across the groups, per part of the state."""
    import pandas as pd

    parts = doc["per_seed"][0]["variants"][variant]["distances"]
    return pd.DataFrame({part: {k: float(np.mean([s["variants"][variant]["distances"][part][k]
                                                    for s in doc["per_seed"]])) for k in parts[part]}
                         for part in parts}).T


def verdict(doc: dict, authors_kept: list[int]) -> str:
    """One sentence from a stored analysis and the authors'-code counts of the same round:
    whether the reference code's two facts change Multi-Krum's choice, and where the
    authors' counts fall in our distribution over seeds."""
    per = {v: [s["variants"][v]["kept_malicious"] for s in doc["per_seed"]] for v in VARIANTS}
    ours, ref = float(np.mean(per["ours"])), float(np.mean(per["reference"]))
    changed = sum(a != b for a, b in zip(per["ours"], per["reference"]))
    n = len(per["ours"])
    out = (f"Over {n} seeds our states keep {min(per['ours'])} to {max(per['ours'])} malicious models "
           f"(mean {ours:.1f}); with the reference code's forward order and self-test the mean is {ref:.1f}, "
           f"a different count in {changed} of {n} seeds, so these two facts "
           + ("do not explain the difference" if abs(ref - ours) < 0.5 else "move the choice") + ".")
    if authors_kept:
        at = [sum(k >= a for k in per["ours"]) for a in authors_kept]
        out += (" The authors' code kept " + " and ".join(map(str, authors_kept)) + "; our seeds keep that many or more in "
                + " and ".join(f"{k} of {n}" for k in at) + ".")
    return out


def spread_table(docs: list[dict], part: str = "parameters") -> "pd.DataFrame":
    """One row per stored analysis (client defense, local epochs): the malicious models kept
    with our states and under the reference code's two facts, and the mean squared distance of
    our client updates within each group and across them (``part`` of the state)."""
    import pandas as pd

    from flcore.core.names import CLIENT_ORDER, client_name

    rows = []
    for doc in sorted(docs, key=lambda d: (CLIENT_ORDER.index(d["config"]["client_defense"]),
                                           d["config"]["local_epochs"])):
        kept_ = kept_table(doc)["mean kept"]
        dist = distance_table(doc, "ours").loc[part]
        rows.append({"client defense": client_name(doc["config"]["client_defense"]),
                     "local epochs": doc["config"]["local_epochs"], "seeds": len(doc["seeds"]),
                     "kept (ours)": kept_["ours"], "kept (reference)": kept_["reference"],
                     "within benign": dist["within_benign"], "within malicious": dist["within_malicious"],
                     "across": dist["across"]})
    return pd.DataFrame(rows)


def seed_groups(cfgs: list[config.Config]) -> list[tuple[config.Config, list[int]]]:
    """Configurations that differ only in their seed, as (the first of them, its seeds), in order."""
    import dataclasses

    groups: dict[str, tuple[config.Config, list[int]]] = {}
    for c in cfgs:
        key = dataclasses.replace(c, seed=0).hash
        groups.setdefault(key, (c, []))[1].append(c.seed)
    return list(groups.values())


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` or ``"0,2,5"`` -> list of seeds."""
    try:
        if "-" in text:
            a, b = text.split("-")
            seeds = list(range(int(a), int(b) + 1))
        else:
            seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds must look like 0-4 or 0,2,5, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds must name at least one seed >= 0, got {text!r}")
    return seeds


def _is_sweep(path: str) -> bool:
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False  # config.load reports the problem
    return isinstance(doc, dict) and "base" in doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flcore.experiments.tie_analysis", description=__doc__.split("\n")[0])
    ap.add_argument("config", help="a parameter file, a sweep file (each configuration with the seeds of its grid) "
                         "or a stored run (results/<experiment>/<hash>.json)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seeds", default="0-2", help="seeds, e.g. 0-9 or 0,3")
    ap.add_argument("--round", type=int, default=0, help="a round with 5 malicious of 10 (paper schedule: 0, 10, 12)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        if args.config.endswith(".json"):  # a stored run: analyse its configuration
            if args.overrides:
                raise ConfigError("--set applies to a parameter file, not to a stored run")
            jobs = [(config.from_dict(store.read(Path(args.config))["config"]), parse_seeds(args.seeds))]
        elif _is_sweep(args.config):  # a sweep: every configuration, with the seeds of its grid
            from flcore.experiments.sweep import expand

            jobs = seed_groups(expand(args.config, args.overrides))
        else:
            jobs = [(config.load(args.config, args.overrides), parse_seeds(args.seeds))]
        for cfg, seeds in jobs:
            if cfg.attack != "backdoor":
                raise ConfigError("the tie analysis needs attack: backdoor")
            print(run(cfg, seeds, args.round, args.device), flush=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
