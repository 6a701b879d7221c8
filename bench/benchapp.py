"""The Celery app the throughput benchmark runs: ``celery -A bench.benchapp worker -Q bench``.

It is the real application (``worker.application.create_app``: JSON, ``acks_late``, prefetch 1, the
resilience runtime) plus four no-op tasks on a dedicated ``bench`` queue. Every body does the
same single Redis ``INCR`` of a completion counter, so they cost the same and the benchmark can
tell when a round is done. ``bench.plain_noop`` is a plain Celery task, ``bench.resilient_noop``
has ``base=ResilientTask``, and ``bench.guarded_noop`` is a ``ResilientTask`` that declares the
resource ``bench.noop``: each run is admitted by the fleet-wide guard before its body and
recorded after. The benchmark configures that resource (breaker, a rate limit and a concurrency
limit, none of which ever refuses) with ``ALCHEMISER_RESOURCES`` = :data:`GUARDED_RESOURCES`;
without it the resource is unknown and the guard lets the task through without asking Redis.
:func:`guarded_resources` with a lease is the same resource leasing its admissions to each
worker process in batches (``permit_lease``; no concurrency limit, which a lease cannot have, a
retry budget instead).
``bench.round_trip_noop`` is the plain task plus one ``PING`` per run: what any per-task check on
Redis costs at the least, whatever it decides.

The app is created on first access (as in ``worker/__init__.py``), from the environment, so the
benchmark gives its worker a private namespace with ``ALCHEMISER_NAMESPACE``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu import Queue
from redis import Redis

from bench.lazyapp import LazyApp
from resilience.storage.connection import connect
from resilience.task import ResilientTask
from worker.application import create_app
from worker.settings import Settings, load_settings

__all__ = [
    "BENCH_QUEUE",
    "GUARDED_RESOURCE",
    "GUARDED_RESOURCES",
    "GUARDED_TASK",
    "LEASE_TTL_S",
    "PLAIN_TASK",
    "RESILIENT_TASK",
    "BenchCounter",
    "build_app",
    "done_key",
    "get_app",
    "guarded_resources",
]

BENCH_QUEUE = "bench"
PLAIN_TASK = "bench.plain_noop"
RESILIENT_TASK = "bench.resilient_noop"
GUARDED_TASK = "bench.guarded_noop"
# The plain task plus one bare Redis round trip (PING) per run: the floor any per-task check
# on Redis pays, whatever it decides.
ROUND_TRIP_TASK = "bench.round_trip_noop"
GUARDED_RESOURCE = "bench.noop"
# The guarded task's resource: every protection on, none refusing at a few thousand tasks/s
# (the breaker sees only successes; GCRA admits 1 per µs plus a burst of 1000; 1000 at once).
GUARDED_RESOURCES: dict[str, dict[str, Any]] = {
    GUARDED_RESOURCE: {
        "breaker": {"minimum_calls": 1000},
        "rate_limit": {"rate": 1_000_000, "period_s": 1, "burst": 1000},
        "concurrency": {"limit": 1000},
    }
}
# How long a leased batch may be spent: at ~500 runs/s a process spends 10 in ~20 ms.
LEASE_TTL_S = 0.25


def guarded_resources(lease: int = 0) -> dict[str, dict[str, Any]]:
    """The guarded resource's configuration: :data:`GUARDED_RESOURCES`, or with ``lease`` > 0
    admissions leased that many at a time (every protection it can have with a lease on, none
    refusing)."""
    if not lease:
        return GUARDED_RESOURCES
    return {
        GUARDED_RESOURCE: {
            "breaker": {"minimum_calls": 1000},
            "rate_limit": {"rate": 1_000_000, "period_s": 1, "burst": 1000},
            "retry_budget": {"capacity": 1000},
            "permit_lease": {"permits": lease, "ttl_s": LEASE_TTL_S},
        }
    }


def done_key(namespace: str) -> str:
    """The completion counter both bench tasks ``INCR``."""
    return f"{namespace}:bench:done"


class BenchCounter:
    """One Redis client per process, built on first use (prefork children get their own)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._key = done_key(settings.namespace)
        self._lock = threading.Lock()
        self._client: Redis | None = None

    def incr(self) -> int:
        """Count one completed task."""
        return int(self._redis().incr(self._key))

    def ping(self) -> bool:
        """One bare round trip to the same Redis."""
        return bool(self._redis().ping())

    def _redis(self) -> Redis:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = connect(
                        self._settings.redis_url,
                        socket_timeout_s=self._settings.redis_socket_timeout_s,
                    )
                client = self._client
        return client


def build_app(
    settings: Settings | None = None,
    *,
    count: Callable[[], object] | None = None,
) -> Celery:
    """``create_app(settings)`` plus the ``bench`` queue and the four bench tasks.

    ``count`` is what every body calls (default: the Redis completion counter); the in-process
    measurement passes a no-op to time Celery's tracer and ``ResilientTask`` alone.
    Task events follow the settings (``ALCHEMISER_TASK_EVENTS``), as in the application.
    """
    settings = settings or load_settings()
    app = create_app(settings)
    app.conf.task_queues = [*app.conf.task_queues, Queue(BENCH_QUEUE)]
    app.conf.task_routes = {
        **app.conf.task_routes,
        PLAIN_TASK: {"queue": BENCH_QUEUE},
        RESILIENT_TASK: {"queue": BENCH_QUEUE},
        GUARDED_TASK: {"queue": BENCH_QUEUE},
        ROUND_TRIP_TASK: {"queue": BENCH_QUEUE},
    }
    counter = BenchCounter(settings)
    body: Callable[[], object] = count or counter.incr

    # shared=False keeps these bodies on this app only (the in-process measurement builds a
    # second app). No other options: both take acks_late, prefetch etc. from the app's config
    # (ResilientTask also sets acks_late/reject_on_worker_lost itself, to the same values).
    @app.task(name=PLAIN_TASK, shared=False)
    def plain_noop() -> None:
        body()

    @app.task(name=RESILIENT_TASK, base=ResilientTask, shared=False)
    def resilient_noop() -> None:
        body()

    # Celery makes the decorator's extra keywords class attributes of the task's class, so
    # this sets ResilientTask.resources for this task only.
    @app.task(name=GUARDED_TASK, base=ResilientTask, resources=(GUARDED_RESOURCE,), shared=False)
    def guarded_noop() -> None:
        body()

    @app.task(name=ROUND_TRIP_TASK, shared=False)
    def round_trip_noop() -> None:
        counter.ping()
        body()

    return app


_lazy = LazyApp(build_app, __name__)
get_app = _lazy.get
__getattr__ = _lazy.attribute
