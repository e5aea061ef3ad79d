"""Building the book: sweeps, notebook execution, generated pages, the Sphinx extension. May import
everything but the CLI.
"""
