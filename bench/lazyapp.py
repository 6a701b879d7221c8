"""One Celery app per process, built from the environment on first use.

``celery -A bench.<module>`` imports the module and reads its ``app``; building it lazily lets
the benchmark set the worker's environment (namespace, resources) before anything reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import Celery

__all__ = ["LazyApp"]


class LazyApp:
    """The app behind a module's ``get_app()`` and its ``app`` attribute (PEP 562)."""

    def __init__(self, build: Callable[[], Celery], module: str) -> None:
        self._build = build
        self._module = module
        self._app: Celery | None = None
        self._lock = threading.Lock()

    def get(self) -> Celery:
        """This process's app, built on first use."""
        with self._lock:
            if self._app is None:
                self._app = self._build()
            return self._app

    def attribute(self, name: str) -> Any:
        """The module's ``__getattr__``: ``app`` is the lazily built app."""
        if name == "app":
            return self.get()
        raise AttributeError(f"module {self._module!r} has no attribute {name!r}")
