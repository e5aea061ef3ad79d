"""The ground floor: errors, the method registry, the constants table and the run configuration schema.

Imports nothing else of flcore.
"""
