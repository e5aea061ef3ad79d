"""Plain data from stored runs: tidy tables, statistics, metrics, exports. Never runs a
simulation: the notebooks get the documents of their runs (the missing ones computed) from
:mod:`flcore.experiments.load` and pass them here. May import the experiments and below.
"""
