"""The explorer: every stored run of the results store, filtered by menus and plotted, with a
short live run of the menus' setting on demand (``notebooks/explorer.ipynb`` shows it).

The pure parts (the runs' menu fields, labels, filtering, the default view, the live run's
configuration) are plain functions over ``(folder, document)`` pairs, tested in
``tests/test_explorer.py``; :class:`Explorer` wires them to ipywidgets.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from typing import Callable

from flcore.analysis.configs import get
from flcore.analysis.formats import fmt_num
from flcore.analysis.labels import describe, override_label
from flcore.analysis.params import PARAMS, read_params, sweep_spec
from flcore.analysis.rounds import rounds_frame
from flcore.core.constants import ROOT
from flcore.core.names import (CLIENT_NAMES, DATASET_NAMES, PROFILE_NAMES, SCHEDULE_NAMES, SERVER_NAMES, client_name,
                               schedule_name, server_name)
from flcore.present.figures import FIG_WIDTH_IN, fit_width, legend_outside, plot_lines
from flcore.experiments.sweep import expand
from flcore.storage import store

ALL = "(all)"  # a menu value that filters nothing
#: The live run's menus and the configuration key each sets.
LIVE_KEYS = {"dataset": "dataset", "schedule": "schedule", "aggregator": "aggregator",
             "client defense": "client_defense"}
#: The menus: how each reads its value off a stored run (folder, document).
FIELDS: dict[str, Callable[[str, dict], object]] = {
    "experiment": lambda e, d: e,
    "profile": lambda e, d: d["config"].get("profile"),
    "dataset": lambda e, d: d["config"].get("dataset"),
    "schedule": lambda e, d: d["config"].get("schedule"),
    "aggregator": lambda e, d: d["config"].get("aggregator"),
    "client defense": lambda e, d: d["config"].get("client_defense"),
}
#: The menus' values as read (the configuration values stay the keys).
SHOWN = {"profile": PROFILE_NAMES, "dataset": DATASET_NAMES, "schedule": SCHEDULE_NAMES,
         "aggregator": SERVER_NAMES, "client defense": CLIENT_NAMES}


def stored_runs() -> list[tuple[str, dict]]:
    """``(folder, document)`` of every valid stored run (documents of other kinds, e.g. Hessian
    comparisons, skipped silently)."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path, doc in store.iter_runs():
            if doc.get("kind") in (None, "attack_effect"):
                out.append((path.parent.name, doc))
    return out


def store_label() -> str:
    """Where the runs come from, for the page: ``results/`` or the store of ``$FLCORE_RESULTS``."""
    results = store.results_dir().resolve()
    return f"{results.relative_to(ROOT)}/" if results.is_relative_to(ROOT) else \
        "the store named by $FLCORE_RESULTS"


def extras(doc: dict) -> str:
    """What sets a run apart besides dataset, rules, schedule and seed, as words."""
    c = doc["config"]
    out = {}
    if c.get("client_defense") == "leadfl":
        out["leadfl.alpha"] = get(c, "leadfl.alpha")
        if get(c, "leadfl.variant") != "code":
            out["leadfl.variant"] = get(c, "leadfl.variant")
    if c.get("attack") != "backdoor":
        out["attack"] = c.get("attack")
    if c.get("aggregate_state") == "trainable":
        out["aggregate_state"] = "trainable"
    return override_label(out, empty="")


def legend_label(exp: str, doc: dict) -> str:
    """A run in a legend: its rules and schedule (the title names dataset and profile)."""
    c = doc["config"]
    more = extras(doc)
    return (("live run: " if exp == "live" else "") + f"{server_name(c.get('aggregator'))}, "
            f"{client_name(c.get('client_defense'))}, {schedule_name(c.get('schedule'))}"
            + (f" ({more})" if more else ""))


def run_label(exp: str, doc: dict) -> str:
    """A run in the list: experiment, hash, dataset, rules, schedule, profile, seed."""
    c = doc["config"]
    return (f"{exp}/{doc['hash'][:8]}: {DATASET_NAMES.get(c.get('dataset'), c.get('dataset'))}, "
            f"{legend_label(exp, doc)}, {PROFILE_NAMES.get(c.get('profile'), c.get('profile'))}, "
            f"seed {c.get('seed')}")


def menu_options(runs: list[tuple[str, dict]], field: str) -> list[tuple[str, str]]:
    """``(shown, value)`` of a menu: "(all)", then every value the stored runs take."""
    values = sorted({str(FIELDS[field](e, d)) for e, d in runs})
    return [(ALL, ALL)] + [(SHOWN.get(field, {}).get(v, v), v) for v in values]


def filtered(runs: list[tuple[str, dict]], choice: dict[str, str]) -> list[int]:
    """Indices of the runs matching every menu value ("(all)" matches any)."""
    return [i for i, (e, d) in enumerate(runs)
            if all(v == ALL or str(FIELDS[k](e, d)) == v for k, v in choice.items())]


def default_view(runs: list[tuple[str, dict]], max_runs: int) -> tuple[dict, list[tuple[str, dict]]]:
    """The default view's menu values and runs: the paper-protocol runs of Table I
    (Fashion-MNIST, Multi-Krum); if none is stored, the default profile's Table I runs; else
    the first ``max_runs`` runs of the store."""
    for prof in ("paper", "default"):
        pick = [(e, d) for e, d in runs if e == "original_tables" and d["config"].get("profile") == prof
                and d["config"].get("dataset") == "fmnist" and d["config"].get("aggregator") == "multikrum"]
        if pick:
            return {"experiment": "original_tables", "profile": prof, "dataset": "fmnist",
                    "aggregator": "multikrum"}, pick
    return {}, runs[:max_runs]


def live_base(base: dict | None, rounds: int) -> dict:
    """The live run's base: ``base`` (default: the top-level keys of ``params/smoke.yaml``) with
    ``rounds`` rounds, without experiment and profile (a live run is never a book run)."""
    out = dict(base) if base is not None else read_params(PARAMS / "smoke.yaml")
    out["rounds"] = int(rounds)
    out.pop("experiment", None)
    out.pop("profile", None)
    return out


def live_config(base: dict, choice: dict[str, str], cases=None, grid=None, description: str = ""):
    """The live run's configuration: ``base`` with the menus' values on top (a menu at "(all)"
    keeps the base's value), the first of ``cases`` x ``grid``. Raises on an invalid setting."""
    over = {LIVE_KEYS[k]: v for k, v in choice.items() if k in LIVE_KEYS and v != ALL}
    spec = sweep_spec("explorer_live", "smoke", {**base, **over}, cases, grid, description)
    return expand(spec)[0]


def plot_runs(selected: list[tuple[str, dict]], backdoor: bool = True):
    """Per-round accuracy of the selected (folder, document) runs, one line per setting (the
    mean over its seeds, a band spanning them); returns the figure."""
    import matplotlib.pyplot as plt

    key, name = ("backdoor_acc", "backdoor accuracy (%)") if backdoor else ("main_acc", "main-task accuracy (%)")
    fig, ax = plt.subplots(figsize=(FIG_WIDTH_IN, 3.6))
    if selected:
        docs = [d for _, d in selected]
        frame = rounds_frame(docs)
        labels = {d["hash"]: legend_label(e, d) for e, d in selected}
        frame["setting"] = frame["run"].map(labels)
        plot_lines(ax, frame, "setting", key, order=list(dict.fromkeys(labels.values())))
        legend_outside(ax, "below", ncol=1)
        ax.set_title(describe(docs))
    else:
        ax.set_title("no run selected")
    ax.set_ylabel(name)
    return fig


class Explorer:
    """The menus, the run list, the metric switch, the plot and the live-run button over the
    stored runs; :meth:`widget` is the box to display."""

    def __init__(self, runs: list[tuple[str, dict]], base: dict, *, cases=None, grid=None,
                 description: str = "", max_default_runs: int = 8):
        import ipywidgets as W

        self.runs, self.base, self.cases, self.grid = runs, base, cases, grid
        self.description, self.max_default_runs = description, max_default_runs
        choice, default = default_view(runs, max_default_runs)
        self.default_hashes = {d["hash"] for _, d in default}
        self.menus = {k: W.Dropdown(options=menu_options(runs, k), value=ALL, description=k,
                                    layout=W.Layout(width="320px")) for k in FIELDS}
        for k, v in choice.items():
            if v in [value for _, value in menu_options(runs, k)]:
                self.menus[k].value = v
        self.runs_box = W.SelectMultiple(options=[], rows=10, description="runs", layout=W.Layout(width="95%"))
        self.metric = W.Checkbox(value=True, description="backdoor accuracy (unchecked: main-task accuracy)",
                                 indent=False)
        self.plot_out = W.Output()
        self.live_button = W.Button(description=f"live run ({base['rounds']} rounds)", icon="play",
                                    tooltip="params/smoke.yaml with the menus' dataset, schedule, aggregator "
                                            "and client defense, in a temporary store")
        self.live_out = W.Output()
        self._busy = False
        for m in self.menus.values():
            m.observe(self.refresh, names="value")
        self.runs_box.observe(self.redraw, names="value")
        self.metric.observe(self.redraw, names="value")
        self.live_button.on_click(self.live_run)
        self.refresh()

    def choice(self) -> dict[str, str]:
        return {k: m.value for k, m in self.menus.items()}

    def refresh(self, *_) -> None:
        """The run list and the live-run button after a menu change, then the plot."""
        if self._busy:
            return
        self._busy = True
        try:
            ids = filtered(self.runs, self.choice())
            keep = [i for i in self.runs_box.value if i in ids]
            self.runs_box.options = [(run_label(*self.runs[i]), i) for i in ids]
            default_ids = [i for i in ids if self.runs[i][1]["hash"] in self.default_hashes]
            self.runs_box.value = tuple(keep or default_ids or ids[:self.max_default_runs])
            try:
                cfg = live_config(self.base, self.choice(), self.cases, self.grid, self.description)
                self.live_button.description = (
                    f"live run: {DATASET_NAMES.get(cfg.dataset, cfg.dataset)}, {server_name(cfg.aggregator)}, "
                    f"{client_name(cfg.client_defense)}, {cfg.rounds} rounds")
                self.live_button.disabled = False
            except (Exception, SystemExit) as e:  # an invalid combination: say why, offer no run
                self.live_button.description = "live run: not a valid setting"
                self.live_button.tooltip = str(e)
                self.live_button.disabled = True
        finally:
            self._busy = False
        self.redraw()

    def redraw(self, *_) -> None:
        import matplotlib.pyplot as plt

        if self._busy:
            return
        with self.plot_out:
            self.plot_out.clear_output(wait=True)
            fig = plot_runs([self.runs[i] for i in self.runs_box.value], backdoor=self.metric.value)
            fit_width(fig)
            plt.show()
            plt.close(fig)  # shown (the inline backend has drawn it); outside a notebook it would pile up

    def live_run(self, _=None) -> None:
        """Compute the menus' setting in a temporary store (deleted afterwards, so the committed
        results stay untouched) and add it to the runs as experiment "live"."""
        from flcore.storage import runs

        self.live_button.disabled = True
        old = os.environ.get("FLCORE_RESULTS")
        tmp = tempfile.mkdtemp(prefix="flcore-live-")
        with self.live_out:
            try:
                cfg = live_config(self.base, self.choice(), self.cases, self.grid, self.description)
                os.environ["FLCORE_RESULTS"] = tmp
                print(f"computing {cfg.rounds} rounds: {cfg.dataset}, {cfg.schedule}, {cfg.aggregator}, "
                      f"{cfg.client_defense} (a temporary store, deleted afterwards)")
                _, doc = runs.run(cfg, progress=True)
                self.runs.append(("live", doc))
                print("done:", {k: fmt_num(100 * doc["summary"][k]) + " %"
                                for k in ("main_acc_final", "backdoor_acc_final")
                                if doc["summary"].get(k) is not None})
            except (Exception, SystemExit) as e:
                print(f"live run failed: {e}")
                return
            finally:
                if old is None:
                    os.environ.pop("FLCORE_RESULTS", None)
                else:
                    os.environ["FLCORE_RESULTS"] = old
                shutil.rmtree(tmp, ignore_errors=True)
                self.live_button.disabled = False
        self._busy = True
        for k, m in self.menus.items():
            m.options = menu_options(self.runs, k)
            m.value = ALL
        self._busy = False
        self.menus["experiment"].value = "live"

    def widget(self):
        import ipywidgets as W

        m = self.menus
        return W.VBox([W.HBox([m["experiment"], m["profile"], m["dataset"]]),
                       W.HBox([m["schedule"], m["aggregator"], m["client defense"]]), self.metric,
                       self.runs_box, self.plot_out, W.HBox([self.live_button]), self.live_out])
