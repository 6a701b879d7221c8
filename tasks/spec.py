"""The trading application, declared in one place: its task modules, queues and routes, the
resources its tasks claim, what the classifier knows of its errors, what it recovers from, and
the advice operators get. ``worker/`` builds the Celery app, the runtime and the health report
from :data:`SPEC`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from resilience.errors import AlchemiserError
from resilience.guard.resources import ResourceConfig
from resilience.policy.domain import ClassifierDomain
from resilience.recovery.registry import RecoveryRegistry
from resilience.runbooks.guidance import Guidance
from tasks.advice import TRADING_ADVICE
from tasks.classification import TRADING_DOMAIN, TRADING_MESSAGE_MASKS
from tasks.recovery import TradingErrorRecovery
from tasks.resources import defaults_for
from tasks.runbooks import TRADING_GUIDANCE

__all__ = ["SPEC", "AppSpec", "PeriodicTask", "TaskRoute"]


@dataclass(frozen=True, slots=True)
class TaskRoute:
    """A task the application registers, and the queue every message for it goes to."""

    name: str
    queue: str


@dataclass(frozen=True, slots=True)
class PeriodicTask:
    """A task beat sends every ``every_s`` seconds, with ``kwargs``."""

    name: str
    task: str
    every_s: float
    kwargs: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppSpec:
    """Everything the worker needs to know of an application's tasks."""

    # Imported by every worker (they register the tasks).
    modules: tuple[str, ...]
    queues: tuple[str, ...]
    default_queue: str
    routes: tuple[TaskRoute, ...]
    # The default resources for a broker name (the config file's tables are merged over them).
    resources_for: Callable[[str], dict[str, ResourceConfig]]
    domain: ClassifierDomain
    advice: Mapping[str, str]
    # The recovery strategies tried on a failed attempt (built once per worker process).
    recovery: Callable[[], RecoveryRegistry] = RecoveryRegistry
    # (regex, replacement) pairs that mask the application's own values in error messages, so
    # the error history sees one template for "the same error, another symbol".
    message_masks: tuple[tuple[str, str], ...] = ()
    # Runbook steps in the application's words for its own error families.
    guidance: Mapping[type[AlchemiserError], Guidance] = field(default_factory=dict)
    # Modules a broker needs imported once before the pool forks (slow imports).
    broker_modules: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    periodic: tuple[PeriodicTask, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted({r.queue for r in self.routes} - set(self.queues))
        if unknown or self.default_queue not in self.queues:
            raise ValueError(f"routes or the default queue name undeclared queues: {unknown}")
        names = [r.name for r in self.routes]
        if len(names) != len(set(names)):
            raise ValueError("a task is routed twice")
        unrouted = sorted({p.task for p in self.periodic} - set(names))
        if unrouted:
            raise ValueError(f"periodic tasks without a route: {unrouted}")

    def task_routes(self) -> dict[str, dict[str, str]]:
        """Celery's ``task_routes``."""
        return {r.name: {"queue": r.queue} for r in self.routes}

    def beat_schedule(self) -> dict[str, dict[str, object]]:
        """Celery's ``beat_schedule``."""
        return {
            p.name: {"task": p.task, "schedule": p.every_s, "kwargs": dict(p.kwargs)}
            for p in self.periodic
        }

    def modules_for(self, broker: str) -> tuple[str, ...]:
        """The task modules, and the broker's own, to import in a worker."""
        return (*self.modules, *self.broker_modules.get(broker, ()))


SPEC = AppSpec(
    modules=("tasks.trading", "tasks.escalation"),
    queues=("trading", "market_data", "escalation"),
    default_queue="trading",
    routes=(
        TaskRoute("tasks.submit_order", "trading"),
        TaskRoute("tasks.cancel_order", "trading"),
        TaskRoute("tasks.rebalance", "trading"),
        TaskRoute("tasks.sync_positions", "trading"),
        TaskRoute("tasks.fetch_quote", "market_data"),
        TaskRoute("tasks.escalate", "escalation"),
    ),
    resources_for=defaults_for,
    domain=TRADING_DOMAIN,
    advice=TRADING_ADVICE,
    recovery=TradingErrorRecovery,
    message_masks=TRADING_MESSAGE_MASKS,
    guidance=TRADING_GUIDANCE,
    # alpaca-py takes ~2 s to import: once in the worker's parent, before the pool forks,
    # rather than in every child on its first order.
    broker_modules={"alpaca": ("tasks.brokers.alpaca",)},
    periodic=(
        # Positions are re-read from the broker (the source of truth) every minute.
        PeriodicTask("sync-positions", "tasks.sync_positions", 60.0),
        # Restarts an alert's chain of flushes if one could not be published.
        PeriodicTask("escalation-sweep", "tasks.escalate", 60.0, {"sweep": {}}),
        # The alert thresholds (resilience.observability.thresholds) against the fleet's metrics.
        PeriodicTask("alert-thresholds", "tasks.escalate", 60.0, {"evaluate": {}}),
    ),
)
