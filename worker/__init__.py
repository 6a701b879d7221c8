"""The running application: ``from worker import app`` (CONTRACT).

The app is created on first access, not on import, so the CLI can report a bad setting as a
message instead of a traceback from the import. No submodule is named ``app``: importing one
would bind the name on this package to the module and shadow the Celery app.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["app", "get_app"]

_app: Celery | None = None
_app_lock = threading.Lock()


def get_app() -> Celery:
    """The process's Celery app, created from the environment on first use."""
    global _app  # noqa: PLW0603 - one app per process is Celery's model; created once
    if _app is None:
        with _app_lock:
            if _app is None:
                from worker.application import create_app  # noqa: PLC0415 - on first access

                _app = create_app()
                # From now on a plain attribute: no lookup through __getattr__.
                globals()["app"] = _app
    return _app


def _under_celery_command() -> bool:
    """Whether this process is the ``celery`` command (``celery ...`` or ``python -m celery``)."""
    command = sys.argv[0] if sys.argv else ""
    return os.path.basename(command) == "celery" or command.endswith(
        os.path.join("celery", "__main__.py")
    )


def __getattr__(name: str) -> Any:
    if name == "app":
        from resilience.errors import ConfigurationError  # noqa: PLC0415 - keeps the import light

        try:
            return get_app()
        except ConfigurationError as invalid:
            if not _under_celery_command():
                raise  # a program of the user's handles it (or shows it) itself
            # `celery -A worker` turns any exception of the app's loading into its own
            # traceback; a bad setting is one line, and exit 2, as in the CLI.
            print(f"error: {invalid.message}", file=sys.stderr)
            raise SystemExit(2) from None
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
