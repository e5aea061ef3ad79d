# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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
from IPython.display import display

from flcore.present import explorer as X
from flcore.present import page

page.start_page("explorer", profile)
RUNS = X.stored_runs()
print(f"{len(RUNS)} stored runs in {X.store_label()}")
_, DEFAULT_RUNS = X.default_view(RUNS, max_default_runs)

# %% [markdown]
# ## Default view
#
# Backdoor accuracy per round of the runs behind Table I at the paper protocol (Fashion-MNIST,
# Multi-Krum, one line per client defense), when stored; otherwise those of the default
# profile.

# %% tags=["hide-input"]
page.show_figure(X.plot_runs(DEFAULT_RUNS, backdoor=True), "default-view")

# %% [markdown]
# ## Interactive view
#
# In a live notebook, change the menus to filter the runs, select several runs in the list
# (Ctrl/Shift-click), and press the button for a live run of the menus' setting. In the
# static book these controls show their saved state only.

# %% tags=["hide-input"]
explorer = X.Explorer(RUNS, X.live_base(base, live_rounds), cases=cases, grid=grid, description=description,
                      max_default_runs=max_default_runs)
display(explorer.widget())
