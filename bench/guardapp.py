"""The Celery app of the fleet guard's scenarios: ``celery -A bench.guardapp worker -Q guard``.

The real application (``worker.application.create_app``) plus three tasks on a ``guard`` queue that
make the same HTTP call (``GET <url>/v2/account`` with Alpaca's key headers) to an API whose
server logs every arrival:

- ``guard.limited_call``: a ResilientTask admitted by the resource ``guard.limited`` (a rate
  limit, from ``ALCHEMISER_RESOURCES``);
- ``guard.breaker_call``: a ResilientTask admitted by ``guard.breaker`` (a circuit breaker);
- ``guard.celery_limited_call``: a plain Celery task with Celery's own ``rate_limit``
  (``GUARD_CELERY_RATE_LIMIT``, e.g. ``100/s``), the baseline: Celery enforces it per worker.
"""

from __future__ import annotations

import os
import threading

import requests
from celery import Celery
from kombu import Queue

from bench.lazyapp import LazyApp
from resilience.task import ResilientTask
from worker.application import create_app
from worker.settings import Settings, load_settings

__all__ = [
    "ADMITTED_AT_HEADER",
    "BREAKER_RESOURCE",
    "BREAKER_TASK",
    "CELERY_LIMITED_TASK",
    "GUARD_QUEUE",
    "LIMITED_RESOURCE",
    "LIMITED_TASK",
    "build_app",
    "get_app",
]

GUARD_QUEUE = "guard"
LIMITED_TASK = "guard.limited_call"
BREAKER_TASK = "guard.breaker_call"
CELERY_LIMITED_TASK = "guard.celery_limited_call"
LIMITED_RESOURCE = "guard.limited"
BREAKER_RESOURCE = "guard.breaker"
CALL_TIMEOUT_S = 5.0
ADMITTED_AT_HEADER = "X-Admitted-At-Us"
_HEADERS = {"APCA-API-KEY-ID": "fake-key-id", "APCA-API-SECRET-KEY": "fake-secret-key"}

_session = threading.local()


def _call(url: str, admitted_at_us: int | None = None) -> int:
    """One API call; a 4xx/5xx answer raises (the task layer classifies it).

    ``admitted_at_us`` (Redis time of the admission) travels in ``X-Admitted-At-Us`` so the
    API's log holds both when each call was admitted and when it arrived.
    """
    session: requests.Session | None = getattr(_session, "value", None)
    if session is None:
        session = _session.value = requests.Session()
    headers = dict(_HEADERS)
    if admitted_at_us:
        headers[ADMITTED_AT_HEADER] = str(admitted_at_us)
    response = session.get(f"{url}/v2/account", headers=headers, timeout=CALL_TIMEOUT_S)
    response.raise_for_status()
    return response.status_code


class LimitedCall(ResilientTask):
    """Admitted by the shared rate limiter of ``guard.limited``."""

    resources = (LIMITED_RESOURCE,)
    escalates = False


class BreakerCall(ResilientTask):
    """Admitted by the shared circuit breaker of ``guard.breaker``."""

    resources = (BREAKER_RESOURCE,)
    escalates = False


def build_app(settings: Settings | None = None) -> Celery:
    """``create_app`` (from the environment unless given) plus the ``guard`` queue and its
    three tasks."""
    app = create_app(settings or load_settings())
    app.conf.task_queues = [*app.conf.task_queues, Queue(GUARD_QUEUE)]
    app.conf.task_routes = {
        **app.conf.task_routes,
        **{name: {"queue": GUARD_QUEUE} for name in (LIMITED_TASK, BREAKER_TASK)},
        CELERY_LIMITED_TASK: {"queue": GUARD_QUEUE},
    }

    @app.task(name=LIMITED_TASK, base=LimitedCall, shared=False, bind=True)
    def limited_call(self: LimitedCall, url: str) -> int:
        return _call(url, self.admission.at_us if self.admission else None)

    @app.task(name=BREAKER_TASK, base=BreakerCall, shared=False, bind=True)
    def breaker_call(self: BreakerCall, url: str) -> int:
        return _call(url, self.admission.at_us if self.admission else None)

    @app.task(
        name=CELERY_LIMITED_TASK,
        shared=False,
        rate_limit=os.environ.get("GUARD_CELERY_RATE_LIMIT"),
    )
    def celery_limited_call(url: str) -> int:
        return _call(url)

    return app


_lazy = LazyApp(build_app, __name__)
get_app = _lazy.get
__getattr__ = _lazy.attribute
