"""The ``alchemiser`` command line (see CONTRACT, section CLI); the app is
``worker.cli.main.app``.

Nothing is imported here: ``python -m worker.cli.main`` would otherwise find the module
already imported by its package and warn (runpy's RuntimeWarning) on every run.
"""
