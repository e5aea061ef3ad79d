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
# experiment, dataset, selection schedule, server-side aggregator and client-side defense;
# the list picks the runs to draw; the check box switches between backdoor and main-task
# accuracy; and the button starts a short live run (the smoke configuration of
# `params/smoke.yaml`, cut to a few rounds) with a progress bar, written to a temporary
# store so that the committed results stay untouched. The static book cannot run code, so
# it shows the default view as a figure first, then the controls as they were saved.
#
# The parameters describe the live run: `base` (default: the configuration of
# `params/smoke.yaml`) with `live_rounds` rounds; `cases` and `grid` may add variants (the
# button computes the first configuration).

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
import tempfile

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython.display import display
from matplotlib.ticker import MaxNLocator

from flcore import report as R
from flcore import store
from flcore.sweep import expand

# the live run: the smoke configuration, profile smoke (a live run is never a book run)
live_base = dict(base) if base is not None else R.read_params(R.PARAMS / "smoke.yaml")
live_base["rounds"] = int(live_rounds)
live_spec = R.sweep_spec("explorer_live", "smoke", live_base, cases, grid, description)
live_cfgs = expand(live_spec)
print(f"live run: {len(live_cfgs)} configuration(s), {live_cfgs[0].rounds} rounds, "
      f"{live_cfgs[0].dataset}/{live_cfgs[0].aggregator}/{live_cfgs[0].client_defense}")

RUNS = []  # (folder, doc) of every valid stored run (other stored documents, e.g. Hessian comparisons, skipped)
for path, doc in store.iter_runs():
    if doc.get("kind") in (None, "attack_effect"):
        RUNS.append((path.parent.name, doc))
print(f"{len(RUNS)} stored runs in {store.results_dir()}")
ALL = "(all)"
FIELDS = {"experiment": lambda e, d: e, "dataset": lambda e, d: d["config"].get("dataset"),
          "schedule": lambda e, d: d["config"].get("schedule"), "aggregator": lambda e, d: d["config"].get("aggregator"),
          "client defense": lambda e, d: d["config"].get("client_defense")}


def run_label(exp, doc):
    c = doc["config"]
    extra = []
    if c.get("client_defense") == "leadfl":
        extra.append(f"alpha={R.get(c, 'leadfl.alpha')}, {R.get(c, 'leadfl.variant')}")
    if c.get("attack") not in ("backdoor",):
        extra.append(f"attack={c.get('attack')}")
    if c.get("aggregate_state") == "trainable":
        extra.append("trainable")
    return (f"{exp}/{doc['hash'][:8]}: {c.get('dataset')}, {R.server_name(c.get('aggregator'))}, "
            f"{R.client_name(c.get('client_defense'))}, {c.get('schedule')}, seed {c.get('seed')}, "
            f"{c.get('profile')}" + (f" ({'; '.join(extra)})" if extra else ""))


def filtered(choice):
    """Indices of the runs matching every menu value."""
    return [i for i, (e, d) in enumerate(RUNS) if all(v == ALL or str(FIELDS[k](e, d)) == v for k, v in choice.items())]


def plot_runs(selected, backdoor=True, ax=None):
    """Per-round accuracy of the selected (folder, doc) runs; returns the figure."""
    key, name = ("backdoor_acc", "backdoor accuracy (%)") if backdoor else ("main_acc", "main-task accuracy (%)")
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 4.5))
    else:
        fig = ax.figure
    for e, d in selected:
        f = R.rounds_frame([d]).dropna(subset=[key])
        ax.plot(f["round"], f[key], marker="." if len(f) < 30 else None, label=run_label(e, d))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(name)
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    if selected:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.18), ncol=1)
        ax.set_title(R.describe([d for _, d in selected]), fontsize=9)
    else:
        ax.set_title("no run selected", fontsize=9)
    fig.tight_layout()
    return fig


def default_view():
    """The runs of the default view: the Multi-Krum cells of the first table experiment of
    this profile if stored, else the first runs of the store."""
    for exp in ("original_tables", "selection", "alpha_sensitivity"):
        pick = [(e, d) for e, d in RUNS if e == exp and d["config"].get("profile") == profile]
        mk = [(e, d) for e, d in pick if d["config"].get("aggregator") == "multikrum"]
        if mk or pick:
            return exp, (mk or pick)[:max_default_runs]
    return (RUNS[0][0] if RUNS else ALL), RUNS[:max_default_runs]


DEFAULT_EXP, DEFAULT_RUNS = default_view()
DEFAULT_HASHES = {d["hash"] for _, d in DEFAULT_RUNS}

# %% [markdown]
# ## Default view
#
# Backdoor accuracy per round of the default selection (the Multi-Krum runs of the
# published-tables experiment of this profile, when stored).

# %% tags=["hide-input"]
fig = plot_runs(DEFAULT_RUNS, backdoor=True)
plt.show()

# %% [markdown]
# ## Interactive view
#
# In a live notebook, change the menus to filter the runs, select several runs in the list
# (Ctrl/Shift-click), and press the button for a live run. In the static book these
# controls show their saved state only.

# %% tags=["hide-input"]
def menu_options(field):
    return [ALL] + sorted({str(FIELDS[field](e, d)) for e, d in RUNS})


menus = {k: W.Dropdown(options=menu_options(k), value=ALL, description=k,
                       layout=W.Layout(width="320px")) for k, f in FIELDS.items()}
if DEFAULT_EXP in menus["experiment"].options:
    menus["experiment"].value = DEFAULT_EXP
runs_box = W.SelectMultiple(options=[], rows=10, description="runs", layout=W.Layout(width="95%"))
metric = W.Checkbox(value=True, description="backdoor accuracy (unchecked: main-task accuracy)", indent=False)
plot_out = W.Output()
live_button = W.Button(description=f"live run ({live_cfgs[0].rounds} rounds)", icon="play",
                       tooltip="params/smoke.yaml, written to a temporary store")
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
    finally:
        _state["busy"] = False
    redraw()


def redraw(*_):
    if _state["busy"]:
        return
    with plot_out:
        plot_out.clear_output(wait=True)
        plot_runs([RUNS[i] for i in runs_box.value], backdoor=metric.value)
        plt.show()


def live_run(_):
    from flcore import runs

    live_button.disabled = True
    old = os.environ.get("FLCORE_RESULTS")
    tmp = tempfile.mkdtemp(prefix="flcore-live-")
    with live_out:
        try:
            os.environ["FLCORE_RESULTS"] = tmp  # the committed store stays untouched
            print(f"computing into {tmp}")
            _, doc = runs.run(live_cfgs[0], progress=True)
            RUNS.append(("live", doc))
            print("done:", {k: doc["summary"].get(k) for k in ("main_acc_final", "backdoor_acc_final")})
        finally:
            if old is None:
                os.environ.pop("FLCORE_RESULTS", None)
            else:
                os.environ["FLCORE_RESULTS"] = old
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
display(W.VBox([W.HBox([menus["experiment"], menus["dataset"], menus["schedule"]]),
                W.HBox([menus["aggregator"], menus["client defense"], metric]),
                runs_box, plot_out, W.HBox([live_button]), live_out]))
