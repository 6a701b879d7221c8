"""The running application: ``from worker import app`` (CONTRACT).

The app is created on first access, not on import, so the CLI can report a bad setting as a
message instead of a traceback from the import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["app", "get_app"]

_app: Celery | None = None


def get_app() -> Celery:
    """The process's Celery app, created from the environment on first use."""
    global _app  # noqa: PLW0603 - one app per process is Celery's model; created once
    if _app is None:
        from worker.app import create_app  # noqa: PLC0415 - app built on first access, not import

        _app = create_app()
    return _app


def __getattr__(name: str) -> Any:
    if name == "app":
        return get_app()
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
