"""Which Celery app this package's task objects publish through, whatever is imported first.

``@shared_task`` hands out an object bound to Celery's *current* app. Imported before any app
was built (``from tasks.trading import submit_order; submit_order.delay(...)`` in a fresh
interpreter), that is Celery's default app, which publishes to ``amqp://guest@localhost//``,
queue ``celery``: where a RabbitMQ answers, the order is accepted there and no worker of ours
ever sees it. The objects made here resolve, on each use, to

1. the current app when it is an Alchemiser application (it carries the trading runtime, as
   every app built by the installed application and every worker's app does), else
2. the app of the installed application, found through the ``alchemiser.application`` entry
   point (``worker:get_app``, declared in pyproject.toml; ``tasks`` does not import it), else
3. nothing: they refuse, with the reason, instead of publishing anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from importlib.metadata import entry_points
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from celery import Celery, Task, current_app, shared_task
from celery.local import Proxy

from resilience.errors import ConfigurationError
from tasks.runtime import TRADING_RUNTIME_SETTING

__all__ = ["ENTRY_POINT_GROUP", "application_task", "configured_app"]

ENTRY_POINT_GROUP = "alchemiser.application"

_P = ParamSpec("_P")
_R = TypeVar("_R")
_TaskT = TypeVar("_TaskT", bound="Task[Any, Any]")


def configured_app() -> Celery:
    """The Alchemiser application to publish through (see the module docstring)."""
    current = cast(Celery, current_app._get_current_object())  # type: ignore[attr-defined]
    if TRADING_RUNTIME_SETTING in current.conf:
        return current
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name)
    if not found:
        raise ConfigurationError(
            "no Alchemiser application to publish tasks through: no Celery app carrying the "
            f"trading runtime exists yet and no {ENTRY_POINT_GROUP!r} entry point is installed. "
            "Install the project (pip install -e .) or build the app first "
            "(from worker import app)"
        )
    factory: Callable[[], Celery] = found[0].load()
    return factory()


def _task_named(name: str) -> Task[Any, Any]:
    return configured_app().tasks[name]


def application_task(
    *, name: str, base: type[_TaskT]
) -> Callable[[Callable[Concatenate[_TaskT, _P], _R]], _TaskT]:
    """``@shared_task(bind=True, base=..., name=...)`` whose object is the configured app's.

    The task is registered on every app as it is finalized, as ``shared_task`` does; the object
    returned stands for it in the app that :func:`configured_app` picks at each use.
    """

    def register(body: Callable[Concatenate[_TaskT, _P], _R]) -> _TaskT:
        shared_task(bind=True, base=base, name=name)(body)
        return cast(_TaskT, Proxy(partial(_task_named, name)))

    return register
