"""Figures, widgets and glue for the notebooks. May import the analysis and below.
"""
