"""What runs many simulations: sweeps and their time estimates, verification, benchmarks, the
attack-effect and tie analyses. May import the store and below.
"""
