"""The attack-effect chapter's numbers, for either protocol it shows: the measurements of
:mod:`flcore.experiments.attack_effect` (``measured``: ``[(config, document)]``, one per client
defense and seed, as :func:`flcore.experiments.attack_effect.stored` returns them) and its
Hessian comparison (one document).

* per round and over the seeds: :func:`round_values`, :func:`group_norms` (the attack effect
  per layer), :func:`seed_band` (mean, min and max over the seeds);
* tables: :func:`cases_table`, :func:`layer_share_table`, :func:`stretch_table`,
  :func:`per_point_table`;
* prose: :func:`effect_cells` (each number as mean ± sd with its seeds), :func:`verdicts`,
  :func:`crosscheck_text`, :func:`setting_cells`, :func:`hessian_cells`.

Nothing here computes a measurement; :mod:`flcore.experiments.attack_effect` is imported
where it is used (it imports torch).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from flcore.analysis.formats import fmt_measure, fmt_num, fmt_pct
from flcore.analysis.labels import case_label
from flcore.analysis.rounds import same_rounds
from flcore.analysis.stats import local_steps, mean_spread

#: The two client defenses the chapter compares (numerator and denominator of its ratios).
PAIR = ("none", "leadfl")
#: The diagonal picture's one-round factors counted as a real shrinking: below 0.99 (more than
#: 1 % per round) and below 0.9 (more than 10 %).
FACTOR_LEVELS = (0.99, 0.9)
#: The median one-round factor of the attack effect without a client defense at or above which
#: the chapter says benign rounds do not shrink it, and the difference of LeadFL's median
#: factor from it that counts as lower or higher.
NO_DECAY = 0.95
FACTOR_TOLERANCE = 0.02
#: How much lower (a fraction, absolute) LeadFL's final backdoor accuracy must be than the
#: undefended run's of the same seed for the chapter to call it lower.
CLEARLY_LOWER = 0.05
#: The largest absolute Spearman correlation with the exact diagonal below which the chapter
#: says that no Hessian estimate of LeadFL follows it.
WEAK_CORRELATION = 0.3


# ----------------------------------------------------------------------------- per round


def by_case(measured) -> dict[str, list]:
    """The measurements grouped by client defense, in the order of ``measured``."""
    out: dict[str, list] = {}
    for c, d in measured:
        out.setdefault(c.client_defense, []).append((c, d))
    return out


def seed_list(measured) -> list[int]:
    """The seeds of the measurements, ascending, each once."""
    return sorted({c.seed for c, _ in measured})


def seeds_text(seeds) -> str:
    """Seeds in prose: ``seed 0``, ``seeds 0, 1, 2`` (ascending, each once) or ``no seed``."""
    from flcore.analysis.formats import seeds_prose

    return seeds_prose(set(seeds)) or "no seed"


def round_values(doc: dict, key: str) -> np.ndarray:
    """``key`` of every round record of a measurement (``delta_norm``, ``backdoor_acc``,
    ``decay``, ...) as floats, missing values as NaN."""
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in doc["rounds"]], dtype=float)


def group_norms(doc: dict, groups: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Per layer (``groups``: :func:`flcore.experiments.attack_effect.layer_groups`) and round,
    the norm of the attack effect over the layer's tensors: the root of the sum of their
    squared norms (``delta_layers``)."""
    return {g: np.array([math.sqrt(sum(r["delta_layers"][n] ** 2 for n in names)) for r in doc["rounds"]])
            for g, names in groups.items()}


def seed_band(series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, minimum and maximum per position over several series (one per seed); a shorter
    series (a run that stopped early) and NaN entries count as missing. Positions without any
    value are NaN."""
    series = [np.asarray(s, dtype=float) for s in series]
    n = max((len(s) for s in series), default=0)
    m = np.full((len(series), n), np.nan)
    for i, s in enumerate(series):
        m[i, :len(s)] = s
    if not series:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # positions without a value stay NaN
        return np.nanmean(m, axis=0), np.nanmin(m, axis=0), np.nanmax(m, axis=0)


def burst_rounds(doc: dict) -> list[int]:
    """The rounds of a measurement with a malicious client selected."""
    return [r["round"] for r in doc["rounds"] if r["malicious"]]


# ----------------------------------------------------------------------------- values of one measurement


def _first_stretch(doc: dict) -> dict | None:
    s = doc["summary"]["attack_effect"]["stretches"]
    return s[0] if s else None


def value(doc: dict, key: str) -> float | None:
    """A number of one measurement: ``key`` of :func:`flcore.experiments.attack_effect.effect_value`
    (``delta_norm_final``, ``backdoor_acc_final``, ...) or one of ``delta_round0`` (the attack
    effect after the first round), ``update_median`` (the shadow run's median update norm per
    round), ``first_end`` (the last round of the first benign stretch), ``first_retained``
    (the attack effect then over its value after the burst), ``bd_first_end`` (the backdoor
    accuracy then) and ``wall_s`` (seconds of the real and the shadow run)."""
    rounds = doc["rounds"]
    st = _first_stretch(doc) if key.startswith(("first_", "bd_first")) else None
    if key == "delta_round0":
        return float(rounds[0]["delta_norm"]) if rounds else None
    if key == "update_median":
        upd = [r["shadow_update_norm"] for r in rounds if r.get("shadow_update_norm") is not None]
        return float(np.median(upd)) if upd else None
    if key == "first_end":
        return float(st["last_benign_round"]) if st else None
    if key == "first_retained":
        return None if st is None or st["retained"] is None else float(st["retained"])
    if key == "bd_first_end":
        if st is None:
            return None
        r = next((r for r in rounds if r["round"] == st["last_benign_round"]), None)
        return None if r is None else float(r["backdoor_acc"])
    if key == "wall_s":
        p = doc.get("provenance", {})
        return float(p["wall_s"]) + float(p.get("shadow_wall_s") or 0) if p.get("wall_s") is not None else None
    from flcore.experiments.attack_effect import effect_value

    return effect_value(doc, key)


def cell(measured, defense: str, key: str, digits: int = 3, scale: float = 1.0, unit: str = "") -> str:
    """:func:`value` of ``defense``'s measurements, times ``scale``, as mean ± sd over their
    seeds with the seeds (``1.234 ± 0.100 (seeds 0, 1)``, ``1.234 (seed 0)``), or ``not stored``."""
    got = [(c.seed, value(d, key)) for c, d in measured if c.client_defense == defense]
    got = [(s, v * scale) for s, v in got if v is not None and math.isfinite(v)]
    return fmt_measure(*mean_spread(v for _, v in got), seeds=[s for s, _ in got], digits=digits, unit=unit)


#: The chapter's numbers per client defense: glue key -> (:func:`value` key, digits, scale, unit).
FIELDS = {"delta_final": ("delta_norm_final", 3, 1, ""), "delta_max": ("delta_norm_max", 3, 1, ""),
          "delta_round0": ("delta_round0", 3, 1, ""), "update_median": ("update_median", 3, 1, ""),
          "decay_median": ("decay_benign_median", 3, 1, ""), "decay_geomean": ("decay_benign_geomean", 3, 1, ""),
          "decay_below1": ("decay_benign_frac_below_1", 0, 100, " %"), "decay_n": ("decay_benign_n", 0, 1, ""),
          "retained": ("retained_geomean", 2, 1, ""), "same_agg": ("same_aggregation_benign_frac", 0, 100, " %"),
          "first_end": ("first_end", 0, 1, ""), "first_retained": ("first_retained", 2, 1, ""),
          "bd_first_end": ("bd_first_end", 1, 100, " %"), "bd_avg": ("backdoor_acc_avg", 1, 100, " %"),
          "bd_final": ("backdoor_acc_final", 1, 100, " %"), "main_final": ("main_acc_final", 1, 100, " %")}


def matched_pairs(measured, key: str, num: str = "leadfl", den: str = "none") -> dict[int, tuple[float, float]]:
    """Per seed measured with both client defenses: :func:`value` ``key`` of the ``num`` and
    of the ``den`` measurement (same seed: the same initialisation, data order and selection);
    seeds with only one of them or a missing value are left out."""
    by = {(c.client_defense, c.seed): d for c, d in measured}
    out = {}
    for seed in sorted({s for _, s in by}):
        a, b = by.get((num, seed)), by.get((den, seed))
        if a is not None and b is not None:
            va, vb = value(a, key), value(b, key)
            if va is not None and vb is not None:
                out[seed] = (va, vb)
    return out


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def effect_cells(measured) -> dict[str, str]:
    """Every number the chapter's prose gives of one protocol's measurements, as text:
    ``<field>_<defense>`` for each field of :data:`FIELDS` and each client defense measured
    (always ``none`` and ``leadfl``: ``not stored`` without a measurement), ``ratio`` and
    ``decay_ratio`` (LeadFL's final attack effect and median one-round factor over the
    undefended one, seed by seed), ``decay_dir_<defense>`` (``grows``, ``shrinks``, ...),
    ``n`` (measurements), ``seeds`` (:func:`seeds_text`) and ``wall_min`` (minutes of a real and
    a shadow run)."""
    from flcore.analysis.tables import decay_direction, ratio_cell
    from flcore.experiments.attack_effect import matched_ratios

    defenses = list(dict.fromkeys([*PAIR, *(c.client_defense for c, _ in measured)]))
    out = {}
    for key, (field, digits, scale, unit) in FIELDS.items():
        for cd in defenses:
            out[f"{key}_{cd}"] = cell(measured, cd, field, digits, scale, unit)
    for cd in defenses:
        out[f"decay_dir_{cd}"] = decay_direction(measured, cd)
    out["ratio"] = ratio_cell(matched_ratios(measured, "delta_norm_final"))
    out["decay_ratio"] = ratio_cell(matched_ratios(measured, "decay_benign_median"), digits=3)
    out["n"] = str(len(measured))
    out["seeds"] = seeds_text(seed_list(measured))
    wall = _mean([value(d, "wall_s") for _, d in measured])
    out["wall_min"] = fmt_num(wall / 60, 0) if wall is not None else "—"
    return out


def verdicts(measured) -> dict[str, str]:
    """The chapter's readings of one protocol's measurements, as sentences or clauses:

    * ``decay_verdict``: whether benign rounds shrink the undefended attack effect (its median
      one-round factor, averaged over the seeds, below :data:`NO_DECAY`) and whether LeadFL
      lowers that factor (by more than :data:`FACTOR_TOLERANCE`);
    * ``growth_verdict``: whether the attack effect grows (median factor above 1) or shrinks in
      the typical benign round without a client defense;
    * ``lead_effect``: whether LeadFL comes with a larger or a smaller attack effect (the mean
      of its seed-matched final ratios);
    * ``reading``: what LeadFL's final backdoor accuracy (lower when by more than
      :data:`CLEARLY_LOWER`) and attack effect, each against the undefended run of the same
      seed, say together;
    * ``other_cases``: the median factor and final norm of the client defenses other than
      none and LeadFL.
    """
    from flcore.experiments.attack_effect import matched_ratios

    dn = _mean([value(d, "decay_benign_median") for c, d in measured if c.client_defense == "none"])
    dl = _mean([value(d, "decay_benign_median") for c, d in measured if c.client_defense == "leadfl"])
    out = {}
    if dn is None:
        out["decay_verdict"] = "Without a stored undefended measurement the decay cannot be judged."
        out["growth_verdict"] = ""
    else:
        if dn >= NO_DECAY:
            v = ("Without a client defense the attack effect does not decay: benign rounds leave it "
                 "essentially unchanged or larger, as the derivations predict for a product of factors "
                 "close to the identity.")
        else:
            v = ("Benign rounds do shrink the attack effect without a client defense, faster than a "
                 "product of factors close to the identity would.")
        if dl is not None:
            v += (" LeadFL lowers the typical factor." if dl < dn - FACTOR_TOLERANCE else
                  " LeadFL does not lower the typical factor; it raises it." if dl > dn + FACTOR_TOLERANCE else
                  " LeadFL leaves the typical factor about where it is.")
        out["decay_verdict"] = v
        out["growth_verdict"] = (
            "Measured, the attack effect grows in the typical benign round: the real and the shadow "
            "trajectories drift apart faster than the curvature pulls them together." if dn > 1 else
            "Measured, the attack effect shrinks in the typical benign round, but more slowly than a "
            "rate set by the whole curvature would make it.")
    ratio = matched_ratios(measured, "delta_norm_final")
    mr = _mean(ratio.values())
    out["lead_effect"] = ("is not measured against" if mr is None else
                          "comes with a larger attack effect, not a smaller one" if mr > 1 else
                          "comes with a smaller attack effect")
    pairs = matched_pairs(measured, "backdoor_acc_final")
    if ratio and pairs:
        lower_bd = all(lead < none - CLEARLY_LOWER for lead, none in pairs.values())
        larger = all(v > 1 for v in ratio.values())
        margin = f"{100 * CLEARLY_LOWER:g} points"
        if lower_bd and larger:
            out["reading"] = ("In every seed with both measurements LeadFL ends with a lower backdoor accuracy "
                              "and a larger attack effect than the undefended run: what removes the backdoor is "
                              "not a smaller distance to the shadow run. The norm measures the whole difference "
                              "of the two trajectories, and LeadFL's regulariser moves the benign clients' "
                              "models further, so the backdoor can be unlearnt in a few directions while the "
                              "two runs drift apart in all others.")
        elif lower_bd:
            out["reading"] = ("In every seed with both measurements LeadFL ends with a lower backdoor accuracy "
                              "than the undefended run, and its attack effect is not larger in every seed.")
        elif larger:
            out["reading"] = (f"LeadFL does not end with a backdoor accuracy more than {margin} below the "
                              "undefended run's in every seed with both measurements, although its attack effect "
                              "is larger in every one: a larger distance to the shadow run does not by itself "
                              "remove the backdoor.")
        else:
            out["reading"] = (f"LeadFL does not end with a backdoor accuracy more than {margin} below the "
                              "undefended run's in every seed with both measurements, and its attack effect is "
                              "not larger in every one.")
    else:
        out["reading"] = "No seed has both measurements stored yet."
    others = []
    for cd, ms in by_case(measured).items():
        if cd not in PAIR:
            others.append(f"With {case_label(ms[0][0])} the median factor is "
                          f"{cell(ms, cd, 'decay_benign_median')} and the final norm "
                          f"{cell(ms, cd, 'delta_norm_final')}.")
    out["other_cases"] = " ".join(others)
    return out


def crosscheck_text(measured, twins: dict[str, dict | None]) -> str:
    """Each measurement's real run against the stored run of the same configuration in another
    experiment (``twins``: run hash -> that document, or ``None``): identical in every round
    (selection, main-task and backdoor accuracy), or how it differs."""
    parts = []
    for c, d in measured:
        other = twins.get(d["hash"])
        same = same_rounds(d, other, keys=("selected", "main_acc", "backdoor_acc"))
        if same is None:
            continue
        if same:
            parts.append(f"{case_label(c)}, seed {c.seed}: identical in every round")
        else:
            k = (other["provenance"].get("cpu_capability", "not recorded"),
                 d["provenance"].get("cpu_capability", "not recorded"))
            parts.append(f"{case_label(c)}, seed {c.seed}: different (CPU kernels {k[0]} there, {k[1]} here; "
                         f"backdoor accuracy averaged over the rounds "
                         f"{100 * other['summary']['backdoor_acc_avg']:.1f} % there, "
                         f"{100 * d['summary']['backdoor_acc_avg']:.1f} % here)")
    return "; ".join(parts) if parts else "no run of these configurations is stored there"


def setting_cells(cfg) -> dict[str, str]:
    """The protocol of a measured configuration as text: ``rounds``, ``clients_per_round``,
    ``local_epochs``, ``steps`` (mini-batch steps per client and round), ``lr``,
    ``momentum``, ``test_samples``, and of the periodic schedule ``cycle``, ``burst``,
    ``mal_per_burst`` and ``benign_per_cycle``."""
    out = {"rounds": str(cfg.rounds), "clients_per_round": str(cfg.clients_per_round),
           "local_epochs": str(cfg.local_epochs), "steps": str(local_steps(cfg.to_dict())[0]),
           "lr": f"{cfg.lr:g}", "momentum": f"{cfg.momentum:g}", "test_samples": f"{cfg.eval.test_samples:,}"}
    per = cfg.options("periodic")
    if per is not None:
        out.update(cycle=str(per.cycle), burst=str(per.burst), mal_per_burst=str(per.malicious_per_round),
                   benign_per_cycle=str(per.cycle - per.burst))
    return out


# ----------------------------------------------------------------------------- tables


def cases_table(measured):
    """One row per measurement (case, seed): its run's hash, accuracies (%), the attack effect
    ‖δ‖ at the end and at most, its one-round decay over the benign rounds (median, geometric
    mean, share below 1), the share of it that survives a benign stretch, how often the
    aggregator chose the same clients in both runs, and the minutes of both runs."""
    import pandas as pd

    rows = []
    for c, d in measured:
        a = d["summary"]["attack_effect"]
        wall = value(d, "wall_s")
        rows.append({"case": case_label(c), "seed": c.seed, "hash": d["hash"],
                     "main acc. final (%)": 100 * d["summary"]["main_acc_final"],
                     "backdoor acc. avg (%)": 100 * d["summary"]["backdoor_acc_avg"],
                     "backdoor acc. final (%)": 100 * d["summary"]["backdoor_acc_final"],
                     "‖δ‖ final": a["delta_norm_final"], "‖δ‖ max": a["delta_norm_max"],
                     "decay median": a["decay_benign_median"], "decay geo. mean": a["decay_benign_geomean"],
                     "benign rounds with decay < 1": a["decay_benign_frac_below_1"],
                     "retained per stretch (geo. mean)": a["retained_geomean"],
                     "same aggregation (benign rounds)": a["same_aggregation_benign_frac"],
                     "minutes (real + shadow)": wall / 60 if wall is not None else float("nan")})
    cols = ["case", "seed"]
    return pd.DataFrame(rows, columns=None if rows else cols).set_index(cols)


def layer_shares(doc: dict, groups: dict[str, list[str]], index: int = -1) -> dict[str, float]:
    """Per layer, its share of ‖δ‖² in round record ``index`` (the last by default); NaN when
    the attack effect is zero."""
    r = doc["rounds"][index]["delta_layers"]
    tot = sum(v ** 2 for v in r.values())
    return {g: (sum(r[n] ** 2 for n in names) / tot if tot else float("nan")) for g, names in groups.items()}


def share_cells(measured, names: dict[str, str]) -> dict[str, str]:
    """Each layer's share of ‖δ‖² in the last round as text, ``share_<layer>_<defense>`` (mean ±
    sd over the seeds with the seeds, ``not stored`` without a measurement), for every layer of
    ``names`` (:func:`flcore.experiments.attack_effect.layer_names`) and every client defense
    measured (always ``none`` and ``leadfl``)."""
    from flcore.experiments.attack_effect import layer_groups

    defenses = list(dict.fromkeys([*PAIR, *(c.client_defense for c, _ in measured)]))
    out = {}
    for layer in dict.fromkeys(names.values()):
        for cd in defenses:
            got = [(c.seed, 100 * layer_shares(d, layer_groups(d, names)).get(layer, float("nan")))
                   for c, d in measured if c.client_defense == cd]
            got = [(s, v) for s, v in got if math.isfinite(v)]
            out[f"share_{layer}_{cd}"] = fmt_measure(*mean_spread(v for _, v in got), seeds=[s for s, _ in got],
                                                     digits=1)
    return out


def layer_share_table(measured, groups: dict[str, list[str]]):
    """Per client defense (rows), each layer's share of ‖δ‖² in the last round (fractions),
    the mean over the seeds."""
    import pandas as pd

    rows = []
    for cd, ms in by_case(measured).items():
        shares = [layer_shares(d, groups) for _, d in ms]
        rows.append({"case": case_label(ms[0][0]),
                     **{g: float(np.mean([s[g] for s in shares])) for g in groups}})
    return pd.DataFrame(rows, columns=None if rows else ["case"]).set_index("case")


def stretch_table(measured):
    """One row per benign stretch after a burst (case, seed, burst round): its length, the
    attack effect after the burst and at its end, the share that survives and that share per
    round."""
    import pandas as pd

    rows = []
    for c, d in measured:
        for s in d["summary"]["attack_effect"]["stretches"]:
            rows.append({"case": case_label(c), "seed": c.seed, "burst round": s["burst_round"],
                         "benign rounds": s["benign_rounds"], "‖δ‖ after burst": s["delta_after_burst"],
                         "‖δ‖ at end": s["delta_end"], "retained": s["retained"], "per round": s["per_round"]})
    cols = ["case", "seed", "burst round"]
    return pd.DataFrame(rows, columns=None if rows else cols).set_index(cols)


# ----------------------------------------------------------------------------- the Hessian comparison


def per_point_table(hdoc: dict):
    """Spearman correlation of each estimate with the exact diagonal, one row per point
    (round, local step)."""
    import pandas as pd

    from flcore.experiments.attack_effect import APPROXIMATIONS, ESTIMATE_NAMES

    return pd.DataFrame([{"round": p["round"], "step": p["step"],
                          **{ESTIMATE_NAMES[k]: p[k]["spearman"] for k in APPROXIMATIONS}}
                         for p in hdoc["summary"]["hessian"]["per_point"]]).set_index(["round", "step"])


def diagonal_factors(hdoc: dict) -> np.ndarray:
    """The diagonal picture's one-round factor ``(1 - lr H_jj)^K`` for every exact ``H_jj`` of
    the comparison, ``K`` the local steps per round and ``lr`` the learning rate of its run."""
    from flcore.experiments.attack_effect import diagonal_factors as factors

    exact = np.concatenate([np.asarray(p["exact"], dtype=float) for p in hdoc["points"]]) \
        if hdoc["points"] else np.zeros(0)
    return factors(exact, hdoc["config"]["lr"], local_steps(hdoc["config"])[0])


def _pct(x, digits: int = 1) -> str:
    return fmt_pct(None if x is None else 100 * x, digits)


def _g(x, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits (``—`` when missing)."""
    return "—" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}g}"


def hessian_cells(hdoc: dict | None) -> dict[str, str]:
    """Every number the chapter's prose gives of a Hessian comparison, as text (``not stored``
    for each without one): the points (``rounds``, ``steps``, ``coords``, ``points``), the exact
    diagonal (``frac_positive``, ``median_abs``, ``eta_h_median``: the median of lr |H_jj|),
    per estimate against it ``<estimate>_spearman``, ``_pearson``, ``_sign`` (sign agreement),
    ``_median_rel_err``, per gradient difference against the exact H ΔW ``hdw_<name>_pearson``,
    ``diag_share_median`` (the diagonal part's median share of (H ΔW)_j), ``frac_clip`` (the
    coordinates LeadFL's clipping of the stored gradient would change), ``secant_vs_const``
    (the secant's sign agreement against always guessing "positive"), ``corr_max`` (the
    largest absolute Spearman correlation of the paper's, the corrected and the code's
    estimate), ``steps_per_round``, ``lr``, and the diagonal picture's one-round factors
    (``factor_median``, ``factor_below_small`` and ``factor_below_large``: the shares below
    :data:`FACTOR_LEVELS`, ``thr_small`` and ``thr_large``: the shrinking per round they mean),
    and two sentences: ``factor_verdict`` (whether the median factor stays above the first
    level, close to the identity) and ``corr_verdict`` (whether any of LeadFL's estimates
    reaches :data:`WEAK_CORRELATION`)."""
    from flcore.experiments.attack_effect import APPROXIMATIONS, STEP_TARGETS

    keys = (["rounds", "steps", "run_seed", "coords", "points", "frac_positive", "median_abs", "eta_h_median",
             "diag_share_median", "frac_clip", "secant_vs_const", "corr_max", "steps_per_round", "lr",
             "factor_median", "factor_below_small", "factor_below_large"]
            + [f"{k}_{m}" for k in APPROXIMATIONS for m in ("spearman", "pearson", "sign", "median_rel_err")]
            + [f"hdw_{k}_pearson" for k in STEP_TARGETS])
    thr = {"thr_small": fmt_pct(100 * (1 - FACTOR_LEVELS[0]), 0), "thr_large": fmt_pct(100 * (1 - FACTOR_LEVELS[1]), 0)}
    if hdoc is None:
        return {**{k: "not stored" for k in keys}, **thr,
                "factor_verdict": "The Hessian comparison of this protocol is not stored.", "corr_verdict": ""}
    hs = hdoc["summary"]["hessian"]
    opts = hdoc["hessian_options"]
    pts = hdoc["points"]
    exact = np.concatenate([np.asarray(p["exact"], dtype=float) for p in pts]) if pts else np.zeros(0)
    lr = hdoc["config"]["lr"]
    factor = diagonal_factors(hdoc)
    out = {"rounds": ", ".join(map(str, opts["rounds"])), "steps": ", ".join(map(str, opts["steps"])),
           "run_seed": str(hdoc["config"]["seed"]),
           "coords": str(opts["coordinates"]), "points": str(len(pts)),
           "frac_positive": _pct(hs["exact"]["frac_positive"], 0), "median_abs": _g(hs["exact"]["median_abs"]),
           "eta_h_median": _g(float(np.median(lr * np.abs(exact))) if len(exact) else None, 2),
           "steps_per_round": str(local_steps(hdoc["config"])[0]), "lr": f"{lr:g}",
           "factor_median": fmt_num(float(np.median(factor)) if len(factor) else None, 4),
           "factor_below_small": _pct(float(np.mean(factor < FACTOR_LEVELS[0])) if len(factor) else None),
           "factor_below_large": _pct(float(np.mean(factor < FACTOR_LEVELS[1])) if len(factor) else None), **thr}
    for k in APPROXIMATIONS:
        v = hs["vs_exact"][k]
        out[f"{k}_spearman"] = fmt_num(v["spearman"], 2)
        out[f"{k}_pearson"] = fmt_num(v["pearson"], 2)
        out[f"{k}_sign"] = _pct(v["sign_agreement"], 0)
        out[f"{k}_median_rel_err"] = _g(v["median_rel_err"])
    for k in STEP_TARGETS:
        out[f"hdw_{k}_pearson"] = fmt_num(hs["vs_hdw"][k]["pearson"], 2)
    dd = np.concatenate([np.asarray(p["diag_dw"], dtype=float) for p in pts]) if pts else np.zeros(0)
    hd = np.concatenate([np.asarray(p["hdw"], dtype=float) for p in pts]) if pts else np.zeros(0)
    nz = hd != 0
    share = 100 * float(np.median(np.abs(dd[nz]) / np.abs(hd[nz]))) if nz.any() else None
    out["diag_share_median"] = f"{_g(share, 2)} %"
    out["frac_clip"] = _pct(float(np.mean([p["frac_prev_grad_above_q"] for p in pts])) if pts else None)
    sec, pos = hs["vs_exact"]["secant"]["sign_agreement"], hs["exact"]["frac_positive"]
    out["secant_vs_const"] = ("—" if sec is None or pos is None else
                              "fewer than the constant guess “positive” would" if sec < pos else
                              "more than the constant guess “positive” would")
    corr = max(abs(hs["vs_exact"][k]["spearman"] or 0) for k in ("paper", "corrected", "code"))
    out["corr_max"] = fmt_num(corr, 2)
    out["corr_verdict"] = ("None of LeadFL's Hessian estimates, the printed, the corrected or the coded one, "
                           "follows the exact diagonal, so its regulariser cannot steer the curvature coordinate "
                           "by coordinate" if corr < WEAK_CORRELATION else
                           "At least one of LeadFL's Hessian estimates (the printed, the corrected or the coded "
                           "one) follows the exact diagonal in rank, so its regulariser may act on the curvature "
                           "coordinate by coordinate")
    med = float(np.median(factor)) if len(factor) else float("nan")
    if not math.isfinite(med):
        out["factor_verdict"] = "The comparison holds no exact diagonal."
    elif med >= FACTOR_LEVELS[0]:
        out["factor_verdict"] = ("The curvature alone therefore predicts one-round factors close to the "
                                 "identity's, as the derivations claim.")
    else:
        out["factor_verdict"] = (f"The curvature alone therefore predicts that a benign round shrinks most "
                                 f"coordinates of the attack effect noticeably (the median one by "
                                 f"{fmt_num(100 * (1 - med), 1)} % per round): the product of the factors is "
                                 f"not close to the identity here.")
    return out
