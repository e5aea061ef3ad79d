"""The methods a parameter file names: aggregators, attacks, client defenses, schedules, models.

Each module cites its paper in its docstring and registers its methods in
:mod:`flcore.core.registry`; :func:`discover` imports them all. May import :mod:`flcore.core` only.
"""
