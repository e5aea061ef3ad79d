"""Tables of stored runs (pandas DataFrames) as the chapters show them: the layout of the
published Tables I/II (:func:`defense_table`) and the Multi-Krum cells they compare, the
undefended-cell and local-steps experiments, the malicious models Multi-Krum kept in tie
rounds, the runs of the PoisonedFL chapter and its sweeps along one option; and the order of
rows and columns (:func:`order_key`). Cells are text (:mod:`flcore.analysis.formats`),
accuracies in %.
"""
from __future__ import annotations

from typing import Iterable

from flcore.analysis.configs import cell_variants, get
from flcore.analysis.formats import fmt_cell, fmt_measure, fmt_num
from flcore.analysis.labels import override_label, pfl_variant, undefended_cell_setting
from flcore.analysis.published import PAPER_ALPHA
from flcore.analysis.rounds import fake_weight, kept_clients, round_errors
from flcore.analysis.stats import cell_stats, error_last_quarter, local_steps, mean_spread, seed_groups, summary_value
from flcore.core.names import CLIENT_ORDER, DASH, METRICS, SERVER_ORDER, client_name, server_name


def order_key(values: Iterable[str], order: list[str]) -> list[str]:
    vals = list(dict.fromkeys(values))
    return sorted(vals, key=lambda v: (order.index(v) if v in order else len(order), str(v)))


def defense_table(docs: list[dict], published: dict | None = None, digits: int = 1):
    """The layout of the seed's Tables I/II for one dataset: rows (server defense, metric),
    columns (client defense, ours | published). Cells: mean ± sample std over seeds, ``—``
    where there is no run or no published number, ``†`` where a run diverged (its numbers are
    those of its last evaluated round); a row per server gives the number of seeds (runs)
    behind each cell. Client defenses run with several settings (e.g. two
    LeadFL alphas) get one column per setting. Servers of the published table without a
    run of ours get a row of ``—`` beside the published numbers."""
    import pandas as pd

    published = published or {}
    variants = cell_variants(docs)
    cells: dict[tuple, list[dict]] = {}
    for d, v in zip(docs, variants):
        cells.setdefault((d["config"]["aggregator"], d["config"]["client_defense"], v), []).append(d)
    # servers with runs of ours, and those of the published table (shown even without a run)
    servers = order_key([k[0] for k in cells] + list(published), SERVER_ORDER)
    cols = sorted({(k[1], k[2]) for k in cells},
                  key=lambda cv: (CLIENT_ORDER.index(cv[0]) if cv[0] in CLIENT_ORDER else 99, cv[0], cv[1]))
    for c in CLIENT_ORDER:  # the four columns of the published tables are always shown
        if not any(cv[0] == c for cv in cols):
            cols.append((c, ""))
    cols.sort(key=lambda cv: (CLIENT_ORDER.index(cv[0]) if cv[0] in CLIENT_ORDER else 99, cv[0], cv[1]))
    rows, index = [], []
    for s in servers:
        for metric, mname in METRICS.items():
            row = []
            for c, v in cols:
                runs = cells.get((s, c, v), [])
                mark = " †" if any(d.get("status") == "diverged" for d in runs) else ""
                row.append(fmt_cell(*cell_stats(runs, metric), digits) + mark)
                p = (published.get(s) or {}).get(c, {}).get(metric)
                row.append(DASH if p is None else f"{float(p):.{digits}f}")
            rows.append(row)
            index.append((server_name(s), mname))
        row = []
        for c, v in cols:
            n = len(cells.get((s, c, v), []))
            row.append(str(n) if n else DASH)
            row.append("1" if (published.get(s) or {}).get(c) else DASH)
        rows.append(row)
        index.append((server_name(s), "seeds (runs)"))
    names = [client_name(c) + (f" ({v})" if v else "") for c, v in cols]
    columns = pd.MultiIndex.from_tuples([(n, w) for n in names for w in ("ours", "published")])
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["server defense", "metric"]),
                        columns=columns)


#: The three Table I numbers of a cell as the book's tables head them.
HEADLINE_COLUMNS = (("main_acc_final", "main-task acc"), ("backdoor_acc_avg", "backdoor acc avg"),
                    ("backdoor_acc_final", "backdoor acc final"))


def headline_cells(runs: list[dict]) -> dict[str, str]:
    """The three Table I numbers of the runs of one cell, each "mean ± sd" over them
    (:func:`flcore.analysis.formats.fmt_cell`), keyed by :data:`HEADLINE_COLUMNS`' headings."""
    return {name: fmt_cell(*cell_stats(runs, metric)) for metric, name in HEADLINE_COLUMNS}


def multikrum_cells(docs: list[dict], dataset: str) -> dict[str, list[dict]]:
    """The Multi-Krum runs of ``dataset`` per client defense (LeadFL: those at the paper's alpha)."""
    return {c: [d for d in docs if d["config"]["dataset"] == dataset and d["config"]["aggregator"] == "multikrum"
                and d["config"]["client_defense"] == c
                and (c != "leadfl" or get(d["config"], "leadfl.alpha") == PAPER_ALPHA.get(dataset))]
            for c in CLIENT_ORDER}


def undefended_cell_table(docs: list[dict], malicious: int = 5):
    """One row per (setting, client defense): seeds, the three Table I numbers (mean ± sd over
    seeds), round 0's malicious clients selected and kept by Multi-Krum (one number per seed),
    and the mean number kept in the rounds with ``malicious`` malicious clients selected."""
    import pandas as pd

    rows = []
    groups = seed_groups(docs, ["schedule", "aggregate_state", "client_defense"])
    for key, group in sorted(groups.items(), key=lambda kv: (kv[0][0] != "paper", kv[0][1] != "full",
                                                            CLIENT_ORDER.index(kv[0][2]))):
        group = sorted(group, key=lambda d: d["config"]["seed"])
        kept = [kept_clients(d) for d in group]
        r0 = [next((k for k in ks if k["round"] == 0), None) for ks in kept]
        ties = [k["malicious_kept"] for ks in kept for k in ks if k["malicious_selected"] == malicious]
        rows.append({"setting": undefended_cell_setting(group[0]["config"]), "client defense": client_name(key[2]),
                     "seeds": ", ".join(str(d["config"]["seed"]) for d in group),
                     **headline_cells(group),
                     "round 0: malicious kept / selected": ", ".join(
                         DASH if k is None else f"{k['malicious_kept']}/{k['malicious_selected']}" for k in r0),
                     f"malicious kept of {malicious} (mean)": fmt_num(sum(ties) / len(ties) if ties else None, 2)})
    return pd.DataFrame(rows)


def local_steps_table(docs: list[dict], malicious: int = 5):
    """One row per (client defense, local epochs): seeds, steps, the three Table I numbers
    (mean ± sd over seeds) and the mean number of malicious models Multi-Krum kept in the
    rounds with ``malicious`` malicious clients selected."""
    import pandas as pd

    rows = []
    for key, group in sorted(seed_groups(docs, ["client_defense", "local_epochs"]).items(),
                             key=lambda kv: (CLIENT_ORDER.index(kv[0][0]), kv[0][1])):
        steps, acting = local_steps(group[0]["config"])
        kept = [k["malicious_kept"] for d in group for k in kept_clients(d) if k["malicious_selected"] == malicious]
        rows.append({"client defense": client_name(key[0]), "local epochs": key[1], "steps per round": steps,
                     "defense acts on": acting if key[0] != "none" else 0,
                     "seeds": len(group),
                     **headline_cells(group),
                     f"malicious kept of {malicious} (mean)": fmt_num(sum(kept) / len(kept) if kept else None, 2)})
    return pd.DataFrame(rows)


def kept_in_tie_rounds(docs: list[dict], authors: dict | None = None, malicious: int = 5,
                       by_setting: bool = False):
    """Malicious models Multi-Krum kept in each round with exactly ``malicious`` malicious
    clients selected: one row per run of ours (client defense, seed; with ``by_setting`` its
    :func:`flcore.analysis.labels.undefended_cell_setting` first) and per authors'-code run (``authors``:
    :func:`flcore.analysis.published.authors_code_runs`), one column per such round."""
    import pandas as pd

    rows = {}
    for d in sorted(docs, key=lambda d: (undefended_cell_setting(d["config"]) if by_setting else "",
                                         CLIENT_ORDER.index(d["config"]["client_defense"]), d["config"]["seed"])):
        label = (f"ours: {undefended_cell_setting(d['config']) + ', ' if by_setting else ''}"
                 f"{client_name(d['config']['client_defense'])}, seed {d['config']['seed']}")
        rows[label] = {k["round"]: k["malicious_kept"] for k in kept_clients(d) if k["malicious_selected"] == malicious}
    for defense, frame in (authors or {}).items():
        f = frame[frame["n_malicious"] == malicious]
        rows[f"authors' code: {client_name(defense)}"] = dict(zip(f["round"], f["krum_kept_malicious"]))
    table = pd.DataFrame(rows).T
    table = table[sorted(table.columns)] if len(table.columns) else table
    table.columns = [f"round {c}" for c in table.columns]
    return table.astype("Int64")


def pfl_runs(labelled: list, docs: list[dict]):
    """One row per run of the PoisonedFL chapter (``labelled``: ``(cfg, overrides)`` per run,
    as :func:`flcore.analysis.params.expand_labelled`): rule, attack, variant, status, final / last-quarter / lowest
    test error (%), and ProDiGy-style weight on the fakes and their share, over the rounds
    with fakes."""
    import pandas as pd

    rows = []
    for (_, over), d in zip(labelled, docs):
        err = round_errors(d)
        fw = pd.DataFrame(fake_weight(d))
        with_fakes = fw[fw["fakes"] > 0] if len(fw) else fw
        rows.append({"doc": d, "hash": d["hash"], "aggregator": d["config"]["aggregator"],
                     "attack": d["config"]["attack"], "variant": pfl_variant(over), "status": d["status"],
                     "variant_label": override_label({k: v for k, v in over.items() if k not in ("attack", "aggregator")},
                                                     empty=""),
                     "error_final": 100 - summary_value(d, "main_acc_final"),
                     "error_last": error_last_quarter(d),
                     "error_min": min(err) if err else float("nan"),
                     "weight_on_fakes": with_fakes["weight_on_fakes"].mean() if len(fw) else float("nan"),
                     "fake_share": with_fakes["fake_share"].mean() if len(fw) else float("nan")})
    return pd.DataFrame(rows)


def pfl_find(runs, aggregator: str, attack: str, variant: str = ""):
    """The row of :func:`pfl_runs` with this rule, attack and variant, or ``None``."""
    m = runs[(runs["aggregator"] == aggregator) & (runs["attack"] == attack) & (runs["variant"] == variant)]
    return m.iloc[0] if len(m) else None


def pfl_variant_error(runs, aggregator: str, attack: str, needle: str) -> float | None:
    """Final test error of the first run of this rule and attack whose variant contains ``needle``."""
    m = runs[(runs["aggregator"] == aggregator) & (runs["attack"] == attack)
             & runs["variant"].str.contains(needle, regex=False)]
    return m.iloc[0]["error_final"] if len(m) else None


def pfl_sweep(labelled: list, docs: list[dict], runs, key: str):
    """ProDiGy under PoisonedFL along one option ``key`` (the plain attack and the runs that
    change only ``key``): value, final test error (%) and weight on the fakes (%), by value."""
    import pandas as pd

    out = []
    for (cfg, over), d in zip(labelled, docs):
        if cfg.aggregator != "prodigy" or cfg.attack != "poisonedfl":
            continue
        extra = {k: v for k, v in over.items() if k not in ("attack", "aggregator")}
        if extra and set(extra) != {key}:
            continue
        r = runs[runs["hash"] == d["hash"]].iloc[0]
        out.append({"value": float(get(d["config"], key)), "error": r["error_final"],
                    "weight": 100 * r["weight_on_fakes"]})
    return pd.DataFrame(out).sort_values("value") if out else pd.DataFrame(columns=["value", "error", "weight"])


def pfl_seed_cells(labelled: list, docs: list[dict]):
    """The runs of :func:`pfl_runs` with their seeds pooled: one row per rule, attack and variant
    (the overrides without ``seed``), in the order of first appearance, with the seeds, the
    number of runs and of diverged runs, the mean and sample standard deviation over the seeds
    of the final and last-quarter test error (%), and the mean weight on the fakes and their
    share (fractions, NaN without fakes)."""
    import pandas as pd

    unseeded = [(cfg, {k: v for k, v in over.items() if k != "seed"}) for cfg, over in labelled]
    runs = pfl_runs(unseeded, docs)
    cols = ["aggregator", "attack", "variant", "variant_label", "seeds", "runs", "diverged", "error_final",
            "error_final_sd", "error_last", "error_last_sd", "weight_on_fakes", "fake_share", "docs"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    runs["seed"] = [d["config"].get("seed") for d in runs["doc"]]
    rows = []
    for (agg, att, var), g in runs.groupby(["aggregator", "attack", "variant"], sort=False):
        final, last = mean_spread(g["error_final"]), mean_spread(g["error_last"])
        rows.append({"aggregator": agg, "attack": att, "variant": var, "variant_label": g["variant_label"].iloc[0],
                     "seeds": sorted(g["seed"]), "runs": len(g), "diverged": int((g["status"] == "diverged").sum()),
                     "error_final": final[0], "error_final_sd": final[1],
                     "error_last": last[0], "error_last_sd": last[1],
                     "weight_on_fakes": g["weight_on_fakes"].mean(), "fake_share": g["fake_share"].mean(),
                     "docs": list(g["doc"])})
    return pd.DataFrame(rows, columns=cols)


def _cell_error(c) -> str:
    return f"{fmt_cell(c['error_final'], c['error_final_sd'], c['runs'])} %"


def pfl_attack_sentence(cells) -> str:
    """What :func:`pfl_seed_cells` says of each plain rule under PoisonedFL, against the same
    rule without the attack: "At the official scale, FedAvg ends at 89.8 ± 0.4 % test error under
    the attack (seeds 0, 1, 2; the model became non-finite in 3 of 3 runs, in round 34, 33, 34),
    against 12.0 % without it; ...". Rules stored only without the attack follow in a sentence
    of their own; with no attacked run, a sentence that says so."""
    plain = cells[cells["variant"] == ""]
    attacked = plain[plain["attack"] == "poisonedfl"]
    clean = {c["aggregator"]: c for _, c in plain[plain["attack"] == "none"].iterrows()}
    parts = []
    for _, c in attacked.iterrows():
        seeds = ", ".join(str(x) for x in c["seeds"])
        diverged = ""
        if c["diverged"]:
            where = ", ".join(str(d["summary"].get("diverged_round")) for d in c["docs"] if d["status"] == "diverged")
            diverged = f"; the model became non-finite in {c['diverged']} of {c['runs']} runs, in round {where}"
        base = clean.get(c["aggregator"])
        against = f", against {_cell_error(base)} without it" if base is not None else \
            ", and no run without the attack is stored for it"
        parts.append(f"{server_name(c['aggregator'])} ends at {_cell_error(c)} test error under the attack "
                     f"(seed{'s' if len(c['seeds']) > 1 else ''} {seeds}{diverged}){against}")
    if not parts:
        return "No run with the attack is stored at the official scale."
    only_clean = [f"{server_name(a)} {_cell_error(c)}" for a, c in clean.items()
                  if a not in set(attacked["aggregator"])]
    return ("At the official scale, " + "; ".join(parts) + "."
            + (" Without the attack: " + ", ".join(only_clean) + "." if only_clean else ""))


def pfl_rules_missing(cells, rules: Iterable[str], attack: str = "poisonedfl") -> list[str]:
    """The names of ``rules`` with no plain (variant-free) cell under ``attack`` in ``cells``."""
    plain = cells[cells["variant"] == ""]
    have = set(plain[plain["attack"] == attack]["aggregator"])
    return [server_name(a) for a in rules if a not in have]


def stored_cells_count(docs: list[dict], cfgs: list, key: str = "aggregator") -> str:
    """How many of the configurations ``cfgs`` (objects with attribute ``key``) have a stored run
    among ``docs``, per value of ``key`` in the order of ``cfgs``: "Multi-Krum 12 of 12,
    reference Bulyan 2 of 12". Values are named with :func:`server_name`."""
    stored = {d["hash"] for d in docs}
    total: dict[str, list[int]] = {}
    for c in cfgs:
        t = total.setdefault(getattr(c, key), [0, 0])
        t[0] += c.hash in stored
        t[1] += 1
    return ", ".join(f"{server_name(v)} {k} of {n}" for v, (k, n) in total.items())


def matches(doc: dict, values: dict) -> bool:
    """Whether the run ``doc``'s configuration has every (dotted) key of ``values`` at its value."""
    return all(get(doc["config"], k) == v for k, v in values.items())


def phase_cell(docs: list[dict], table, column: str, values: dict) -> str:
    """``table[column]`` (indexed by run hash, e.g. :func:`flcore.analysis.stats.phase_means`) over
    the runs of ``docs`` whose configuration has ``values`` (:func:`matches`), as mean ± sd over
    those runs with their seeds (:func:`flcore.analysis.formats.fmt_measure`); ``not stored`` when
    no run matches."""
    cell = [d for d in docs if matches(d, values)]
    return fmt_measure(*mean_spread(table.loc[[d["hash"] for d in cell], column]),
                       seeds=[d["config"]["seed"] for d in cell])


def cells_sentence(docs: list[dict], settings: dict[str, dict]) -> tuple[str, list[str]]:
    """The stored cells of ``docs`` in prose, one per named setting (``settings``: name -> the
    configuration values of its runs, dotted keys allowed, see :func:`matches`; in the order to
    tell them): "no client defense: backdoor accuracy 80.0 ± 14.1 % final, 40.0 ± 14.1 % average
    (main 87.0 ± 1.4 %; seeds 0, 1)", joined by "; ", and the names of the settings without a
    stored run."""
    parts, missing = [], []
    for name, values in settings.items():
        cell = [d for d in docs if matches(d, values)]
        if not cell:
            missing.append(name)
            continue
        parts.append(f"{name}: {cell_text(cell)}")
    return "; ".join(parts), missing


def settings_table(docs: list[dict], settings: dict[str, dict], malicious: int = 5):
    """One row per named setting (``settings``: name -> configuration values, as
    :func:`cells_sentence`), in the given order, only those with a stored run: seeds, the three
    Table I numbers (mean ± sd over seeds) and the mean number of malicious models the server
    kept in the rounds with ``malicious`` malicious clients selected (``—`` for a rule that
    records no weights)."""
    import pandas as pd

    rows = []
    for name, values in settings.items():
        cell = sorted((d for d in docs if matches(d, values)), key=lambda d: d["config"]["seed"])
        if not cell:
            continue
        kept = [k["malicious_kept"] for d in cell for k in kept_clients(d) if k["malicious_selected"] == malicious]
        rows.append({"setting": name, "seeds": ", ".join(str(d["config"]["seed"]) for d in cell),
                     **headline_cells(cell),
                     f"malicious kept of {malicious} (mean)": fmt_num(sum(kept) / len(kept) if kept else None, 2)})
    return pd.DataFrame(rows)


def cell_text(cell: list[dict]) -> str:
    """The runs of one cell in prose: "backdoor accuracy 80.0 ± 14.1 % final, 40.0 ± 14.1 %
    average (main 87.0 ± 1.4 %; seeds 0, 1)", or ``not stored`` for no run."""
    from flcore.analysis.formats import fmt_seed_list

    if not cell:
        return "not stored"
    final, avg, main = (fmt_cell(*cell_stats(cell, m)) for m in
                        ("backdoor_acc_final", "backdoor_acc_avg", "main_acc_final"))
    return (f"backdoor accuracy {final} % final, {avg} % average "
            f"(main {main} %; seed{'s' if len(cell) > 1 else ''} {fmt_seed_list(cell)})")


def stored_summary(docs: list[dict], cfgs: list, settings: dict[str, dict]) -> dict:
    """What a chapter says of the stored runs ``docs`` of a parameter file's configurations
    ``cfgs``: ``n`` stored of ``total``, ``cells`` (:func:`cells_sentence` as a sentence, or that
    none is stored) and ``missing`` (the settings without a stored run, "; "-separated, or
    "none")."""
    text, missing = cells_sentence(docs, settings)
    return {"n": len(docs), "total": len(cfgs),
            "cells": f"{text[0].upper()}{text[1:]}." if text else "No run of this file is stored yet.",
            "missing": "; ".join(missing) if missing else "none"}


def phase_table(docs: list[dict], backdoor, main):
    """The selection chapter's per-phase table: per schedule and client defense (rows in the
    book's order), mean ± sd over the seeds of each run's mean backdoor and main-task accuracy
    in the burst rounds and in the other rounds (``backdoor``, ``main``: the runs' phase means,
    :func:`flcore.analysis.stats.phase_means`), and the number of seeds."""
    import pandas as pd

    from flcore.core.names import SCHEDULE_NAMES

    rows = []
    for s in order_key([d["config"]["schedule"] for d in docs], ["periodic", "random", "paper", "legacy"]):
        for c in order_key([d["config"]["client_defense"] for d in docs], CLIENT_ORDER):
            runs = [d["hash"] for d in docs if d["config"]["schedule"] == s and d["config"]["client_defense"] == c]
            if not runs:
                continue
            row = {"schedule": SCHEDULE_NAMES.get(s, s), "client defense": client_name(c)}
            for tab, what in ((backdoor, "backdoor"), (main, "main-task")):
                for col in ("burst", "benign"):
                    row[f"{what}, {col} rounds"] = fmt_cell(*mean_spread(tab.loc[runs, col]))
            row["seeds"] = len(runs)
            rows.append(row)
    return pd.DataFrame(rows)


def schedule_phases(docs: list[dict]):
    """The selection chapter's analysis of ``docs``: the per-round frame (keyed by schedule and
    client defense), the burst rounds of every run (periodic bursts; under random selection the
    rounds in which at least half of the selected clients are malicious) and the per-phase means
    of the backdoor and of the main-task accuracy (:func:`flcore.analysis.stats.phase_means`)."""
    from flcore.analysis.rounds import burst_set, half_selected, rounds_frame
    from flcore.analysis.stats import phase_means

    frame = rounds_frame(docs, keys=["schedule", "client_defense"])
    bursts = {d["hash"]: burst_set(d, threshold=half_selected(d)) for d in docs}
    return frame, bursts, phase_means(frame, bursts, "backdoor_acc"), phase_means(frame, bursts, "main_acc")


def mitigation_table(docs: list[dict], frame, bursts: dict, level: float):
    """Rounds until the backdoor accuracy falls under ``level`` (%) after each burst
    (:func:`flcore.analysis.stats.mitigation_rounds`), pooled over the seeds of each schedule and
    client defense. Returns ``(table, summary)``: the shown table (rows in the book's order) and
    ``{(schedule, client defense): {"mean", "not", "bursts"}}`` (``mean`` over the mitigated
    bursts, NaN if none; ``not`` the bursts not mitigated)."""
    import numpy as np
    import pandas as pd

    from flcore.analysis.stats import mitigation_rounds
    from flcore.core.names import SCHEDULE_NAMES

    rows, summary = [], {}
    for s in order_key([d["config"]["schedule"] for d in docs], ["periodic", "random", "paper", "legacy"]):
        for c in order_key([d["config"]["client_defense"] for d in docs], CLIENT_ORDER):
            res = []
            for d in docs:
                if d["config"]["schedule"] != s or d["config"]["client_defense"] != c:
                    continue
                f = frame[frame["run"] == d["hash"]].dropna(subset=["backdoor_acc"])
                res += mitigation_rounds(dict(zip(f["round"], f["backdoor_acc"])), bursts[d["hash"]], level,
                                         last_round=d["rounds"][-1]["round"])
            if not res:
                continue
            got = [r["rounds"] for r in res if r["rounds"] is not None]
            summary[s, c] = {"mean": float(np.mean(got)) if got else float("nan"), "not": len(res) - len(got),
                             "bursts": len(res)}
            rows.append({"schedule": SCHEDULE_NAMES.get(s, s), "client defense": client_name(c), "bursts": len(res),
                         "mean rounds to mitigate": fmt_num(np.mean(got) if got else None),
                         "median": fmt_num(np.median(got) if got else None, 0),
                         "not mitigated": len(res) - len(got),
                         "mean peak backdoor in burst (%)": fmt_num(np.nanmean([r["peak"] for r in res]))})
    return pd.DataFrame(rows), summary


def selection_cells(docs: list[dict], mitigation: dict, backdoor, main) -> dict:
    """The selection chapter's numbers per schedule (periodic, random) and client defense, keyed
    ``"<schedule>_<client>_<what>"``: ``mit`` (mean rounds to mitigate), ``notmit``, ``bursts``
    (``mitigation``: :func:`mitigation_table`'s summary), ``main_benign``, ``bd_benign`` and
    ``bd_burst`` (means over the runs of the phase means ``main``, ``backdoor``; None without a
    run)."""
    from flcore.analysis.stats import cell_mean

    out = {}
    for s in ("periodic", "random"):
        for c in CLIENT_ORDER:
            m = mitigation.get((s, c), {})
            out[f"{s}_{c}_mit"], out[f"{s}_{c}_notmit"], out[f"{s}_{c}_bursts"] = (m.get(k) for k in ("mean", "not", "bursts"))
            out[f"{s}_{c}_main_benign"] = cell_mean(docs, main, "benign", schedule=s, client_defense=c)
            out[f"{s}_{c}_bd_benign"] = cell_mean(docs, backdoor, "benign", schedule=s, client_defense=c)
            out[f"{s}_{c}_bd_burst"] = cell_mean(docs, backdoor, "burst", schedule=s, client_defense=c)
    return out


def random_vs_none_sentence(docs: list[dict], table, match: dict | None = None) -> str:
    """Each client defense's benign-round value (``table``: :func:`flcore.analysis.stats.phase_means`)
    under random selection against no client defense's over the seeds both cells have
    (:func:`flcore.analysis.stats.paired_cell_means`), as one "; "-separated sentence; ``match``
    restricts the runs (e.g. to one dataset)."""
    from flcore.analysis.formats import relation, seeds_prose
    from flcore.analysis.stats import paired_cell_means

    match = match or {}
    parts = []
    for c in CLIENT_ORDER[1:]:
        v, b, seeds = paired_cell_means(docs, table, "benign", {"schedule": "random", "client_defense": "none", **match},
                                        {"schedule": "random", "client_defense": c, **match})
        parts.append(f"with {client_name(c)} {fmt_num(v)} % against {fmt_num(b)} % without a client defense "
                     f"({seeds_prose(seeds)}), {relation(v, b)} that"
                     if seeds else f"{client_name(c)}: no seed stored both with and without a client defense")
    return "; ".join(parts)


TRADE_COLUMNS = ["setting", "backdoor avg", "backdoor avg sd", "backdoor final", "backdoor final sd",
                 "main final", "main final sd", "seeds"]


def trade_frame(docs: list[dict]):
    """The alpha chapter's trade-off: per setting (:func:`flcore.analysis.labels.defense_label`,
    in :func:`~flcore.analysis.labels.defense_label_order`) the mean and sd over the seeds of the
    average and final backdoor accuracy and of the final main-task accuracy (%), and the seeds."""
    import pandas as pd

    from flcore.analysis.labels import defense_label, defense_label_order

    setting = {id(d): defense_label(d) for d in docs}
    rows = []
    for o in defense_label_order(setting.values()):
        g = [d for d in docs if setting[id(d)] == o]
        bd, bds, n = cell_stats(g, "backdoor_acc_avg")
        mn, mns, _ = cell_stats(g, "main_acc_final")
        bf, bfs, _ = cell_stats(g, "backdoor_acc_final")
        rows.append(dict(zip(TRADE_COLUMNS, (o, bd, bds, bf, bfs, mn, mns, n))))
    return pd.DataFrame(rows, columns=TRADE_COLUMNS)


def trade_text(trade):
    """:func:`trade_frame` as shown: each accuracy "mean ± sd" text, no sd columns."""
    shown = trade.drop(columns=["backdoor avg sd", "backdoor final sd", "main final sd"]).copy()
    for col in ("backdoor avg", "backdoor final", "main final"):
        shown[col] = [fmt_cell(m, sd, n) for m, sd, n in zip(trade[col], trade[col + " sd"], trade["seeds"])]
    return shown


def alpha_choice(trade, max_main_loss: float) -> dict:
    """The alpha chapter's rule on a :func:`trade_frame`: among the settings whose final
    main-task accuracy is at most ``max_main_loss`` points below that of no defense (or, without
    an undefended setting, below the best one), the lowest average backdoor accuracy
    (:func:`flcore.analysis.stats.pick_constrained`).

    Returns ``pick`` (row index or None for an empty frame), ``how`` ("constraint" |
    "fallback" | "none"), ``reference_main`` (%) and ``reference_name``."""
    import math

    from flcore.analysis.stats import pick_constrained

    none_main = trade.loc[trade["setting"] == "no defense", "main final"] if len(trade) else []
    if len(none_main):
        reference_main, reference_name = float(none_main.iloc[0]), "no defense"
    else:
        best = max((float(v) for v in trade["main final"] if math.isfinite(v)), default=float("nan")) if len(trade) else float("nan")
        reference_main, reference_name = best, "the best setting of this sweep, which has no undefended run,"
    if not len(trade):
        return {"pick": None, "how": "none", "reference_main": reference_main, "reference_name": reference_name}
    points = list(zip(trade["backdoor avg"], trade["main final"]))
    pick, how = pick_constrained(points, reference_main, max_main_loss)
    return {"pick": pick, "how": how, "reference_main": reference_main, "reference_name": reference_name}


def budget_picks(trade, budgets) -> "pd.DataFrame":
    """:func:`alpha_choice` over several main-task budgets: one row per budget (points) with the
    picked setting, how it was picked, its average backdoor accuracy and final main-task
    accuracy (%) and their mean's cost against the reference (points); a budget at which
    nothing is picked (empty frame) gets empty cells."""
    import pandas as pd

    rows = []
    for b in budgets:
        c = alpha_choice(trade, b)
        r = trade.iloc[c["pick"]] if c["pick"] is not None else None
        rows.append({"budget (points)": float(b),
                     "picked": r["setting"] if r is not None else DASH,
                     "by": c["how"],
                     "backdoor avg": float(r["backdoor avg"]) if r is not None else float("nan"),
                     "backdoor final": float(r["backdoor final"]) if r is not None else float("nan"),
                     "main final": float(r["main final"]) if r is not None else float("nan"),
                     "main-task cost": (c["reference_main"] - float(r["main final"])) if r is not None
                     else float("nan")})
    return pd.DataFrame(rows)


def rule_cells_sentence(docs: list[dict], aggregator: str) -> str:
    """The stored paper-protocol cells of one server rule in prose (:func:`cells_sentence`), per
    client defense in :data:`CLIENT_ORDER`; the client defenses without a stored run are named
    at the end. Empty if the rule has no stored run."""
    mine = [d for d in docs if d["config"]["aggregator"] == aggregator]
    if not mine:
        return ""
    settings = {("no client defense" if c == "none" else client_name(c)): {"client_defense": c} for c in CLIENT_ORDER}
    text, missing = cells_sentence(mine, settings)
    text = f"{server_name(aggregator)} at the paper protocol: {text}."
    return text + (f" Not yet stored: {', '.join(missing)}." if missing else "")


def tie_rounds_all_kept(docs: list[dict], malicious: int = 5) -> dict[str, dict]:
    """Per client defense (in :data:`CLIENT_ORDER`, those with a run): over every stored run's
    rounds with exactly ``malicious`` malicious clients selected, the number of such rounds,
    those in which the rule kept all ``malicious`` of them, the mean number kept and the
    seeds (:func:`flcore.analysis.rounds.kept_clients`); for a rule that keeps fewer clients than
    there are malicious ones (the reference Bulyan keeps 3), also the rounds in which every kept
    client was malicious (``only_malicious``) and the mean number of clients kept (``mean_size``)."""
    out = {}
    for c in CLIENT_ORDER:
        mine = [d for d in docs if d["config"]["client_defense"] == c]
        rows = [k for d in mine for k in kept_clients(d) if k["malicious_selected"] == malicious]
        if not mine:
            continue
        kept = [k["malicious_kept"] for k in rows]
        out[c] = {"rounds": len(kept), "all_kept": sum(1 for k in kept if k == malicious),
                  "mean_kept": sum(kept) / len(kept) if kept else float("nan"),
                  "only_malicious": sum(1 for k in rows if k["kept"] and k["malicious_kept"] == k["kept"]),
                  "mean_size": sum(k["kept"] for k in rows) / len(rows) if rows else float("nan"),
                  "seeds": sorted(d["config"]["seed"] for d in mine)}
    return out


def only_malicious_sentence(stats: dict[str, dict]) -> str:
    """:func:`tie_rounds_all_kept` in prose for a rule that keeps fewer clients than there are
    malicious ones: per client defense, in how many of those rounds every kept client was
    malicious, and how many of the kept ones were on average."""
    parts = [f"{'no client defense' if c == 'none' else client_name(c)}: only malicious models kept in "
             f"{s['only_malicious']} of {s['rounds']} such rounds, {fmt_num(s['mean_kept'])} of "
             f"{fmt_num(s['mean_size'])} kept malicious on average (seeds {', '.join(map(str, s['seeds']))})"
             for c, s in stats.items()]
    return "; ".join(parts) if parts else DASH


def tie_rounds_sentence(stats: dict[str, dict], malicious: int = 5) -> str:
    """:func:`tie_rounds_all_kept` in prose, one clause per client defense: in how many of the
    rounds with ``malicious`` malicious clients the rule kept all of them, and the mean kept."""
    parts = [f"{'no client defense' if c == 'none' else client_name(c)}: all {malicious} kept in "
             f"{s['all_kept']} of {s['rounds']} such rounds, {fmt_num(s['mean_kept'])} kept on average "
             f"(seeds {', '.join(map(str, s['seeds']))})" for c, s in stats.items()]
    return "; ".join(parts) if parts else DASH


def measurement_cell(measured, defense: str, key: str, digits: int = 3, scale: float = 1.0,
                     unit: str = "") -> str:
    """``key`` of the attack-effect measurements of ``defense`` (``measured``: ``[(config,
    document)]``, :func:`flcore.experiments.attack_effect.stored`; ``key`` as
    :func:`~flcore.experiments.attack_effect.effect_value`), times ``scale``, as mean ± sd
    over the measured seeds with their seeds, or ``not stored``."""
    from flcore.experiments.attack_effect import effect_value

    got = [(c.seed, effect_value(d, key)) for c, d in measured if c.client_defense == defense]
    got = [(s, v * scale) for s, v in got if v is not None]
    return fmt_measure(*mean_spread(v for _, v in got), seeds=[s for s, _ in got], digits=digits, unit=unit)


def ratio_cell(ratios: dict[int, float], digits: int = 2) -> str:
    """Seed-matched ratios (:func:`flcore.experiments.attack_effect.matched_ratios`) as mean ± sd
    with their seeds, or ``not stored`` when no seed has both measurements."""
    return fmt_measure(*mean_spread(ratios.values()), seeds=list(ratios), digits=digits, unit="")


def decay_direction(measured, defense: str) -> str:
    """Whether benign rounds typically grow or shrink the attack effect of ``defense``'s
    measurements: the median one-round factor ``||delta_t|| / ||delta_{t-1}||`` over the benign
    rounds, averaged over the seeds, above 1 (``grows``), below 1 (``shrinks``) or 1 at three
    decimals (``stays the same``); ``is not stored`` without a measurement (each reads as the
    verb of "the attack effect ...")."""
    from flcore.experiments.attack_effect import effect_value

    got = [effect_value(d, "decay_benign_median") for c, d in measured if c.client_defense == defense]
    got = [v for v in got if v is not None]
    if not got:
        return "is not stored"
    m = round(sum(got) / len(got), 3)
    return "grows" if m > 1 else "shrinks" if m < 1 else "stays the same"


def kept_in_malicious_rounds(docs: list[dict]) -> dict[str, dict]:
    """Per client defense (in :data:`CLIENT_ORDER`, those with a run): over every stored run's
    rounds with at least one malicious client selected, the number of such rounds, the malicious
    clients selected and kept (weight > 0, :func:`flcore.analysis.rounds.kept_clients`), the kept
    share of the selected ones (%), the rounds in which every kept client was malicious, and the
    seeds. Runs without aggregation weights (rules that report none) count no round."""
    out = {}
    for c in CLIENT_ORDER:
        mine = [d for d in docs if d["config"]["client_defense"] == c]
        if not mine:
            continue
        rows = [k for d in mine for k in kept_clients(d) if k["malicious_selected"] > 0]
        sel = sum(k["malicious_selected"] for k in rows)
        kept = sum(k["malicious_kept"] for k in rows)
        out[c] = {"rounds": len(rows), "selected": sel, "kept": kept,
                  "share": 100 * kept / sel if sel else float("nan"),
                  "only_malicious": sum(1 for k in rows if k["kept"] and k["malicious_kept"] == k["kept"]),
                  "seeds": sorted(d["config"]["seed"] for d in mine)}
    return out


def kept_sentence(stats: dict[str, dict]) -> str:
    """:func:`kept_in_malicious_rounds` in prose, one clause per client defense."""
    parts = [f"{'no client defense' if c == 'none' else client_name(c)}: {s['kept']} of the {s['selected']} "
             f"malicious models selected kept ({fmt_num(s['share'])} %), only malicious models kept in "
             f"{s['only_malicious']} of {s['rounds']} rounds (seed{'s' if len(s['seeds']) > 1 else ''} "
             f"{', '.join(map(str, s['seeds']))})" for c, s in stats.items()]
    return "; ".join(parts) if parts else DASH


def late_range_cell(docs: list[dict], metric: str = "main_acc", start: float = 0.5) -> str:
    """:func:`flcore.analysis.stats.late_range` as ``32.1-73.4 % (seed 0)``, or ``not stored``."""
    from flcore.analysis.stats import late_range

    got = late_range(docs, metric, start)
    if got is None:
        return "not stored"
    seeds = sorted(d["config"]["seed"] for d in docs)
    return f"{got[0]:.1f}–{got[1]:.1f} % (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
