"""The simulation: datasets and partitions, the flat model state, the trainer, the server round and
:func:`~flcore.sim.engine.simulate`. May import :mod:`flcore.core` and :mod:`flcore.methods`.
"""
