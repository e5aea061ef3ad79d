"""flcore: a compact federated-learning simulation core for the LeadFL and PoisonedFL/ProDiGy report.

Packages, each importing only those listed before it (``tests/test_architecture.py``):
``core`` <- ``methods`` <- ``sim`` <- ``storage`` <- ``experiments`` <- ``analysis`` <- ``present``
<- ``build``, with the command line (:mod:`flcore.cli`) on top. Importing flcore has no side
effects; :func:`flcore.sim.memory.tune` is called by the command line and by each simulation.
"""

__version__ = "0.1.0"
