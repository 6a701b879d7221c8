"""The ``alchemiser`` command line (see CONTRACT, section CLI)."""

from worker.cli.main import app, main

__all__ = ["app", "main"]
