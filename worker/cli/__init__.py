"""The ``alchemiser`` command line (docs/INTERFACE.md): ``worker.cli.main``.

Nothing is imported here: ``python -m worker.cli.main`` would otherwise find the module
already imported by its package and warn (runpy's RuntimeWarning) on every run.
"""
