"""The run store (one checksummed JSON document per run, with provenance) and computing a run into it.

May import the simulation and below.
"""
