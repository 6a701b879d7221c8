"""The services a :class:`~resilience.task.ResilientTask` uses, built for any Celery app.

An application builds them once per process, lazily (a prefork child must not share its
parent's Redis sockets), and hands the builder to Celery under :data:`RUNTIME_SETTING`::

    install_runtime(app, lambda: build_resilience_runtime("redis://localhost:6379/0", "myapp"))
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from celery import Celery
from redis import Redis

from resilience.deadletter.store import DeadLetterStore
from resilience.guard.admission import Guard
from resilience.guard.resources import ResourceConfig
from resilience.observability.metrics import ErrorMetrics
from resilience.observability.outcomes import OutcomeCounter
from resilience.observability.reporting import FailureReporter
from resilience.patterns.history import ErrorHistory
from resilience.patterns.resolutions import ResolutionLog
from resilience.patterns.templates import MessageTemplater
from resilience.policy.classify import Classifier
from resilience.policy.handler import ErrorHandler
from resilience.recovery.registry import RecoveryRegistry
from resilience.scrub import Scrubber
from resilience.storage.clock import Clock, SystemClock
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace

__all__ = [
    "RUNTIME_SETTING",
    "LazyRuntime",
    "ResilienceRuntime",
    "build_resilience_runtime",
    "install_runtime",
]

# Where the app keeps its runtime provider (``app.conf[RUNTIME_SETTING]``).
RUNTIME_SETTING = "alchemiser_runtime"

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ResilienceRuntime:
    """The services a ResilientTask uses, built once per process by the application."""

    redis: Redis
    keys: KeySpace
    dead_letters: DeadLetterStore
    handler: ErrorHandler
    scrubber: Scrubber
    outcomes: OutcomeCounter
    clock: Clock
    max_countdown_s: float
    max_redeliveries: int = 3
    # Fleet-wide breakers and limits of the resources tasks declare; None: nothing is guarded.
    guard: Guard | None = None
    # Fleet-wide recovery counts (the handler's recorders count the errors); None: not kept.
    metrics: ErrorMetrics | None = None
    # The task a dead letter is sent to for escalation; None: dead letters are stored, no one told.
    escalation_task: str | None = "tasks.escalate"
    rng: random.Random = field(default_factory=random.Random)
    # Told of every retry, deferral and dead letter (an error tracker such as Sentry).
    reporters: tuple[FailureReporter, ...] = ()
    # The application's recovery strategies, tried on a failed attempt; None: none.
    recovery: RecoveryRegistry | None = None
    # The fleet's error history (patterns, prediction, runbooks); None: not kept.
    history: ErrorHistory | None = None
    # How failures of each error type ended (runbooks' "what worked here"); None: not kept.
    resolutions: ResolutionLog | None = None


def build_resilience_runtime(
    redis_url: str,
    namespace: str,
    *,
    resources: Mapping[str, ResourceConfig] | None = None,
    classifier: Classifier | None = None,
    secrets: Iterable[str] = (),
    clock: Clock | None = None,
    reporters: tuple[FailureReporter, ...] = (),
    escalation_task: str | None = None,
    recovery: RecoveryRegistry | None = None,
    message_masks: Iterable[tuple[str, str]] = (),
    max_countdown_s: float = 1800.0,
    max_redeliveries: int = 3,
    dlq_max_entries: int = 10_000,
    dlq_retention_s: float = 30 * 24 * 3600.0,
    socket_timeout_s: float = 1.0,
) -> ResilienceRuntime:
    """Every service a ResilientTask needs, on the Redis at ``redis_url`` under the key prefix
    ``namespace``.

    ``resources``: the guarded resources tasks may declare (``None``: no guard, a task that
    declares one fails at admission). ``classifier``: how foreign exceptions map into the
    error hierarchy (default: HTTP, socket, Redis and parser rules). ``secrets``: values scrubbed
    from everything that leaves the process. ``escalation_task``: the task name a dead letter is
    sent to for escalation (``None``: dead letters are stored, nobody is told). ``recovery``:
    the strategies tried on a failed attempt before the retry policy decides. ``message_masks``:
    the application's (regex, replacement) pairs that make error messages templates in the error
    history (e.g. ticker symbols).
    """
    clock = clock or SystemClock()
    keys = KeySpace(namespace)
    client = connect(redis_url, socket_timeout_s=socket_timeout_s)
    scrubber = Scrubber(secrets)
    metrics = ErrorMetrics(client, keys, clock, scrubber=scrubber)
    history = ErrorHistory(client, keys, clock, templater=MessageTemplater(message_masks))
    guard = (
        Guard(client, keys, resources, record_successes_late=True)
        if resources is not None
        else None
    )
    return ResilienceRuntime(
        redis=client,
        keys=keys,
        dead_letters=DeadLetterStore(
            client, keys, max_entries=dlq_max_entries, retention_s=dlq_retention_s
        ),
        handler=ErrorHandler(
            classifier=classifier, recorders=(metrics, history), scrubber=scrubber
        ),
        scrubber=scrubber,
        outcomes=OutcomeCounter(client, keys),
        clock=clock,
        max_countdown_s=max_countdown_s,
        max_redeliveries=max_redeliveries,
        guard=guard,
        metrics=metrics,
        escalation_task=escalation_task,
        reporters=reporters,
        recovery=recovery,
        history=history,
        resolutions=ResolutionLog(client, keys),
    )


class LazyRuntime(Generic[R]):
    """Builds a runtime on first use in each process, once (thread-safe); a forked child builds
    its own instead of using its parent's sockets."""

    def __init__(self, build: Callable[[], R]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._built: tuple[int, R] | None = None

    def __call__(self) -> R:
        built = self._built
        if built is None or built[0] != os.getpid():
            with self._lock:
                built = self._built
                if built is None or built[0] != os.getpid():
                    built = (os.getpid(), self._build())
                    self._built = built
        return built[1]

    def built(self) -> R | None:
        """The runtime this process built, if it built one."""
        built = self._built
        return built[1] if built is not None and built[0] == os.getpid() else None


def install_runtime(app: Celery, provider: Callable[[], ResilienceRuntime]) -> None:
    """Make ``provider`` (called in each worker process, e.g. a :class:`LazyRuntime`) the
    source of the app's ResilientTasks' services."""
    app.conf[RUNTIME_SETTING] = provider
