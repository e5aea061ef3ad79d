# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Explorer
#
# Every run in the results store, whatever experiment produced it, can be plotted here.
# In a running notebook (Jupyter with ipywidgets) the menus filter the stored runs by
# experiment, profile, dataset, selection schedule, server-side aggregator and client-side
# defense; the list picks the runs to draw; the check box switches between backdoor and
# main-task accuracy; and the button starts a short live run of the setting the menus name
# (the small configuration of `params/smoke.yaml`, a few rounds, with the menus' dataset,
# schedule, aggregator and client defense) with a progress bar, written to a temporary store
# that is deleted afterwards, so that the committed results stay untouched. The static book
# cannot run code, so it shows the default view as a figure first, then the controls as they
# were saved.
#
# The parameters describe the live run: `base` (default: the configuration of
# `params/smoke.yaml`) with `live_rounds` rounds; `cases` and `grid` may add variants (the
# button computes the first configuration, with the menus' values on top).

# %% tags=["parameters"]
profile = "default"
experiment = "explorer"
description = "every stored run, interactively; a short live run on demand"
# the live run's configuration; None: the top-level keys of params/smoke.yaml
base = None
live_rounds = 2
cases = None
grid = None
# runs drawn in the default view
max_default_runs = 8

# %% tags=["hide-input"]
import os
import shutil
import tempfile
import warnings

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython.display import display

from flcore import report as R
from flcore import store
from flcore.sweep import expand

R.start_page("explorer", profile)
# the live run: the smoke configuration, profile smoke (a live run is never a book run)
live_base = dict(base) if base is not None else R.read_params(R.PARAMS / "smoke.yaml")
live_base["rounds"] = int(live_rounds)
live_base.pop("experiment", None)
live_base.pop("profile", None)
# the settings the menus set in a live run
LIVE_KEYS = {"dataset": "dataset", "schedule": "schedule", "aggregator": "aggregator",
             "client defense": "client_defense"}


def live_config(choice):
    """The live run's configuration: the parameters' base with the menus' values on top
    (a menu at "(all)" keeps the base's value). Raises on an invalid combination."""
    over = {LIVE_KEYS[k]: v for k, v in choice.items() if k in LIVE_KEYS and v != ALL}
    spec = R.sweep_spec("explorer_live", "smoke", {**live_base, **over}, cases, grid, description)
    return expand(spec)[0]


RUNS = []  # (folder, doc) of every valid stored run (other stored documents, e.g. Hessian comparisons, skipped)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # documents of other kinds in the store are skipped silently
    for path, doc in store.iter_runs():
        if doc.get("kind") in (None, "attack_effect"):
            RUNS.append((path.parent.name, doc))
results = store.results_dir().resolve()
where = f"{results.relative_to(R.ROOT)}/" if results.is_relative_to(R.ROOT) else "the store named by $FLCORE_RESULTS"
print(f"{len(RUNS)} stored runs in {where}")
ALL = "(all)"
FIELDS = {"experiment": lambda e, d: e, "profile": lambda e, d: d["config"].get("profile"),
          "dataset": lambda e, d: d["config"].get("dataset"),
          "schedule": lambda e, d: d["config"].get("schedule"), "aggregator": lambda e, d: d["config"].get("aggregator"),
          "client defense": lambda e, d: d["config"].get("client_defense")}
# menu values as read (the configuration values stay the keys)
SHOWN = {"profile": R.PROFILE_NAMES, "dataset": R.DATASET_NAMES, "schedule": R.SCHEDULE_NAMES,
         "aggregator": R.SERVER_NAMES, "client defense": R.CLIENT_NAMES}


def extras(doc):
    """What sets a run apart besides dataset, rules, schedule and seed, as words."""
    c = doc["config"]
    out = {}
    if c.get("client_defense") == "leadfl":
        out["leadfl.alpha"] = R.get(c, "leadfl.alpha")
        if R.get(c, "leadfl.variant") != "code":
            out["leadfl.variant"] = R.get(c, "leadfl.variant")
    if c.get("attack") != "backdoor":
        out["attack"] = c.get("attack")
    if c.get("aggregate_state") == "trainable":
        out["aggregate_state"] = "trainable"
    return R.override_label(out, empty="")


def legend_label(exp, doc):
    """A run in a legend: its rules and schedule (the title names dataset and profile)."""
    c = doc["config"]
    more = extras(doc)
    return (("live run: " if exp == "live" else "") + f"{R.server_name(c.get('aggregator'))}, "
            f"{R.client_name(c.get('client_defense'))}, {R.schedule_name(c.get('schedule'))}"
            + (f" ({more})" if more else ""))


def run_label(exp, doc):
    """A run in the list: experiment, hash, dataset, rules, schedule, profile, seed."""
    c = doc["config"]
    return (f"{exp}/{doc['hash'][:8]}: {R.DATASET_NAMES.get(c.get('dataset'), c.get('dataset'))}, "
            f"{legend_label(exp, doc)}, {R.PROFILE_NAMES.get(c.get('profile'), c.get('profile'))}, "
            f"seed {c.get('seed')}")


def filtered(choice):
    """Indices of the runs matching every menu value."""
    return [i for i, (e, d) in enumerate(RUNS) if all(v == ALL or str(FIELDS[k](e, d)) == v for k, v in choice.items())]


def plot_runs(selected, backdoor=True):
    """Per-round accuracy of the selected (folder, doc) runs, one line per setting (the mean
    over its seeds, a band spanning them); returns the figure."""
    key, name = ("backdoor_acc", "backdoor accuracy (%)") if backdoor else ("main_acc", "main-task accuracy (%)")
    fig, ax = plt.subplots(figsize=(R.FIG_WIDTH_IN, 3.6))
    if selected:
        docs = [d for _, d in selected]
        frame = R.rounds_frame(docs)
        labels = {d["hash"]: legend_label(e, d) for e, d in selected}
        frame["setting"] = frame["run"].map(labels)
        R.plot_lines(ax, frame, "setting", key, order=list(dict.fromkeys(labels.values())))
        R.legend_outside(ax, "below", ncol=1)
        ax.set_title(R.describe(docs))
    else:
        ax.set_title("no run selected")
    ax.set_ylabel(name)
    return fig


def default_view():
    """The default view: the paper-protocol runs of Table I (Fashion-MNIST, Multi-Krum); if
    none is stored, the default profile's Table I runs; else the first runs of the store."""
    for prof in ("paper", "default"):
        pick = [(e, d) for e, d in RUNS if e == "original_tables" and d["config"].get("profile") == prof
                and d["config"].get("dataset") == "fmnist" and d["config"].get("aggregator") == "multikrum"]
        if pick:
            return {"experiment": "original_tables", "profile": prof, "dataset": "fmnist",
                    "aggregator": "multikrum"}, pick
    return {}, RUNS[:max_default_runs]


DEFAULT_CHOICE, DEFAULT_RUNS = default_view()
DEFAULT_HASHES = {d["hash"] for _, d in DEFAULT_RUNS}

# %% [markdown]
# ## Default view
#
# Backdoor accuracy per round of the runs behind Table I at the paper protocol (Fashion-MNIST,
# Multi-Krum, one line per client defense), when stored; otherwise those of the default
# profile.

# %% tags=["hide-input"]
R.show_figure(plot_runs(DEFAULT_RUNS, backdoor=True), "default-view")

# %% [markdown]
# ## Interactive view
#
# In a live notebook, change the menus to filter the runs, select several runs in the list
# (Ctrl/Shift-click), and press the button for a live run of the menus' setting. In the
# static book these controls show their saved state only.

# %% tags=["hide-input"]
def menu_options(field):
    values = sorted({str(FIELDS[field](e, d)) for e, d in RUNS})
    return [(ALL, ALL)] + [(SHOWN.get(field, {}).get(v, v), v) for v in values]


menus = {k: W.Dropdown(options=menu_options(k), value=ALL, description=k,
                       layout=W.Layout(width="320px")) for k in FIELDS}
for k, v in DEFAULT_CHOICE.items():
    if v in [value for _, value in menu_options(k)]:
        menus[k].value = v
runs_box = W.SelectMultiple(options=[], rows=10, description="runs", layout=W.Layout(width="95%"))
metric = W.Checkbox(value=True, description="backdoor accuracy (unchecked: main-task accuracy)", indent=False)
plot_out = W.Output()
live_button = W.Button(description=f"live run ({live_base['rounds']} rounds)", icon="play",
                       tooltip="params/smoke.yaml with the menus' dataset, schedule, aggregator and client defense, "
                               "in a temporary store")
live_out = W.Output()
_state = {"busy": False}


def refresh_options(*_):
    if _state["busy"]:
        return
    _state["busy"] = True
    try:
        ids = filtered({k: m.value for k, m in menus.items()})
        keep = [i for i in runs_box.value if i in ids]
        runs_box.options = [(run_label(*RUNS[i]), i) for i in ids]
        default_ids = [i for i in ids if RUNS[i][1]["hash"] in DEFAULT_HASHES]
        runs_box.value = tuple(keep or default_ids or ids[:max_default_runs])
        try:
            cfg = live_config({k: m.value for k, m in menus.items()})
            live_button.description = (f"live run: {R.DATASET_NAMES.get(cfg.dataset, cfg.dataset)}, "
                                       f"{R.server_name(cfg.aggregator)}, {R.client_name(cfg.client_defense)}, "
                                       f"{cfg.rounds} rounds")
            live_button.disabled = False
        except (Exception, SystemExit) as e:  # an invalid combination: say why, offer no run
            live_button.description = "live run: not a valid setting"
            live_button.tooltip = str(e)
            live_button.disabled = True
    finally:
        _state["busy"] = False
    redraw()


def redraw(*_):
    if _state["busy"]:
        return
    with plot_out:
        plot_out.clear_output(wait=True)
        fig = plot_runs([RUNS[i] for i in runs_box.value], backdoor=metric.value)
        R.fit_width(fig)
        plt.show()


def live_run(_):
    from flcore import runs

    live_button.disabled = True
    old = os.environ.get("FLCORE_RESULTS")
    tmp = tempfile.mkdtemp(prefix="flcore-live-")
    with live_out:
        try:
            cfg = live_config({k: m.value for k, m in menus.items()})
            os.environ["FLCORE_RESULTS"] = tmp  # the committed store stays untouched
            print(f"computing {cfg.rounds} rounds: {cfg.dataset}, {cfg.schedule}, {cfg.aggregator}, "
                  f"{cfg.client_defense} (a temporary store, deleted afterwards)")
            _, doc = runs.run(cfg, progress=True)
            RUNS.append(("live", doc))
            print("done:", {k: R.fmt_num(100 * doc["summary"][k]) + " %"
                            for k in ("main_acc_final", "backdoor_acc_final") if doc["summary"].get(k) is not None})
        except (Exception, SystemExit) as e:
            print(f"live run failed: {e}")
            return
        finally:
            if old is None:
                os.environ.pop("FLCORE_RESULTS", None)
            else:
                os.environ["FLCORE_RESULTS"] = old
            shutil.rmtree(tmp, ignore_errors=True)
            live_button.disabled = False
    _state["busy"] = True
    for k, m in menus.items():
        m.options = menu_options(k)
        m.value = ALL
    _state["busy"] = False
    menus["experiment"].value = "live"


for m in menus.values():
    m.observe(refresh_options, names="value")
runs_box.observe(redraw, names="value")
metric.observe(redraw, names="value")
live_button.on_click(live_run)
refresh_options()
display(W.VBox([W.HBox([menus["experiment"], menus["profile"], menus["dataset"]]),
                W.HBox([menus["schedule"], menus["aggregator"], menus["client defense"]]), metric,
                runs_box, plot_out, W.HBox([live_button]), live_out]))
