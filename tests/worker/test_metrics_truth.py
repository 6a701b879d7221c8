"""Issue 12, item 8: ``/metrics`` tells the truth. Each case is driven through the real code
(a ResilientTask delivered as a worker delivers it, the escalation service) on the real Redis,
then read back by parsing the exposition ``/metrics`` serves."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Ignore
from prometheus_client.parser import text_string_to_metric_families

from resilience.errors import InsufficientFundsError
from resilience.guard.status import GuardStatus
from resilience.policy.context import ErrorNotificationData
from resilience.storage.keys import KeySpace
from resilience.task import HEADER, RUNTIME_SETTING, DeliveryState, ResilientTask
from tasks.runtime import TradingRuntime
from worker.exporter import render_metrics
from worker.runtime import build_runtime
from worker.settings import Settings

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment the tests run in."""
    for name in list(os.environ):
        if name.upper().startswith(("ALCHEMISER_", "ALPACA_")):
            monkeypatch.delenv(name)


@pytest.fixture
def runtime(redis_url: str, keys: KeySpace) -> Iterator[TradingRuntime]:
    """A paper deployment's runtime in the test's namespace (default channels and resources)."""
    built = build_runtime(Settings(redis_url=redis_url, namespace=keys.namespace))
    yield built
    # Settle the successes recorded late now: the settler thread would otherwise write them
    # after the namespace was deleted, leaving keys behind.
    assert built.resilience.guard is not None
    built.resilience.guard.flush()
    built.resilience.redis.close()


def metrics(runtime: TradingRuntime) -> Samples:
    """``/metrics`` parsed: every sample value by sample name, then by sorted labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(render_metrics(runtime).decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


# --- every dead letter is an error counted once ---------------------------------------------------


class OrderLike(ResilientTask):
    """A task with a deadline (its ``valid_until_s`` kwarg) that asks ``broker.orders`` to
    admit every run, as an order does."""

    component = "trading"
    resources = ("broker.orders",)

    def deadline_s(self, kwargs: dict[str, Any]) -> float | None:
        value = kwargs.get("valid_until_s")
        return float(value) if value is not None else None


def order_task(runtime: TradingRuntime, monkeypatch: pytest.MonkeyPatch) -> ResilientTask:
    """``unit.order`` on an app whose tasks use ``runtime``; its body raises
    InsufficientFundsError when asked for more than it can fund (``qty`` over 100)."""
    app = Celery("unit", broker="memory://", set_as_current=False)
    app.conf[RUNTIME_SETTING] = lambda: runtime.resilience
    monkeypatch.setattr(app, "send_task", lambda *args, **kwargs: None)  # escalations

    def body(self: ResilientTask, /, **kwargs: Any) -> str:
        if kwargs.get("qty", 1) > 100:
            raise InsufficientFundsError("buying power 1000.00 < 100000.00")
        return "booked"

    task: ResilientTask = app.task(bind=True, base=OrderLike, name="unit.order", shared=False)(body)
    return task


def deliver(
    task: ResilientTask, task_id: str, *, redelivered: bool = False, **kwargs: Any
) -> object:
    """Run ``task`` as a worker delivers its message (first delivery, or a redelivery)."""
    task.push_request(
        id=task_id,
        headers={HEADER: DeliveryState().to_header()},
        delivery_info={"routing_key": "trading", "redelivered": redelivered},
        called_directly=False,
        hostname="worker-1@test",
    )
    try:
        return task(**kwargs)
    finally:
        task.pop_request()


def error_counts(found: Samples) -> dict[str, float]:
    """``alchemiser_errors_total`` summed per error type."""
    counts: dict[str, float] = {}
    for labels, value in found.get("alchemiser_errors_total", {}).items():
        error_type = dict(labels)["error_type"]
        counts[error_type] = counts.get(error_type, 0.0) + value
    return counts


def test_every_dead_letter_is_counted_once_in_errors_total(
    runtime: TradingRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three stale orders, a poison message (its fourth redelivery) and a run its breaker
    refuses past its deadline are dead-lettered before the body runs; two unfunded orders
    fail in the body. Seven dead letters, seven errors: one per dead letter, by type."""
    task = order_task(runtime, monkeypatch)
    now = time.time()
    for _ in range(3):
        with pytest.raises(Ignore):
            deliver(task, uuid.uuid4().hex, valid_until_s=now - 5)
    for _ in range(2):
        with pytest.raises(InsufficientFundsError):
            deliver(task, uuid.uuid4().hex, qty=100_000)
    poison = uuid.uuid4().hex
    for _ in range(3):  # the worker died after each of these runs; the message came back
        assert deliver(task, poison, redelivered=True) == "booked"
    with pytest.raises(Ignore):
        deliver(task, poison, redelivered=True)
    resilience = runtime.resilience
    assert resilience.guard is not None
    GuardStatus(resilience.redis, resilience.keys, resilience.guard.resources).force_open(
        "broker.orders"
    )
    with pytest.raises(Ignore):
        deliver(task, uuid.uuid4().hex, valid_until_s=time.time() + 1)

    found = metrics(runtime)
    dead = found["alchemiser_task_dead_lettered_total"]
    assert dead == {(("name", "unit.order"),): 7.0}
    assert error_counts(found) == {
        "StaleOrderError": 3.0,
        "InsufficientFundsError": 2.0,
        "PoisonMessageError": 1.0,
        "CircuitBreakerOpenError": 1.0,
    }
    assert len(resilience.dead_letters.entries()) == 7


def test_a_retried_failure_that_ends_in_a_dead_letter_counts_each_attempt_once(
    runtime: TradingRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body failure is counted by the error handler when it happens; its dead letter adds no
    second count (the dead letter's error is the attempt's)."""
    task = order_task(runtime, monkeypatch)
    with pytest.raises(InsufficientFundsError):
        deliver(task, uuid.uuid4().hex, qty=100_000)
    found = metrics(runtime)
    labels = (("component", "trading"), ("error_type", "InsufficientFundsError"))
    assert found["alchemiser_errors_total"] == {(*labels, ("severity", "high")): 1.0}
    assert found["alchemiser_task_dead_lettered_total"] == {(("name", "unit.order"),): 1.0}


# --- an unconfigured channel fails as not_configured ----------------------------------------------


def critical_failure() -> ErrorNotificationData:
    """A final failure the default policy's critical rule sends at once."""
    return {
        "severity": "critical",
        "priority": "P1",
        "title": "SecurityError in trading: tasks.submit_order",
        "error_type": "SecurityError",
        "error_id": "err-1",
        "message": "HTTP 401",
        "component": "trading",
        "operation": "tasks.submit_order",
        "task_name": "tasks.submit_order",
        "occurred_at": "2026-11-29T03:00:00+00:00",
        "dead_letter_id": "dl-1",
    }


def test_an_unconfigured_channel_is_counted_as_not_configured(runtime: TradingRuntime) -> None:
    """The default policy sends a critical alert to email, Slack and SMS, none configured:
    each is one failed delivery with reason ``not_configured`` (none is a ``client_error``),
    and the console, their fallback, delivers it."""
    service = runtime.escalation
    (first_flush,) = service.note(critical_failure())
    service.flush(**first_flush.kwargs)

    found = metrics(runtime)
    assert found["alertmanager_notifications_failed_total"] == {
        (("integration", channel), ("reason", "not_configured")): 1.0
        for channel in ("email", "slack", "sms")
    }
    assert found["alertmanager_notifications_total"] == {
        (("integration", channel),): 1.0 for channel in ("console", "email", "slack", "sms")
    }


# --- names follow Prometheus' conventions ---------------------------------------------------------


def test_the_breaker_failure_ratio_is_named_a_ratio(runtime: TradingRuntime) -> None:
    """The breaker's share of failed calls (0 to 1) is ``alchemiser_breaker_failure_ratio``,
    one series per breaker; no metric is named a rate."""
    found = metrics(runtime)
    resilience = runtime.resilience
    assert resilience.guard is not None
    breakers = GuardStatus(resilience.redis, resilience.keys, resilience.guard.resources)
    assert found["alchemiser_breaker_failure_ratio"] == {
        (("resource", breaker.name),): 0.0 for breaker in breakers.breakers()
    }
    assert not [name for name in found if name.endswith(("_rate", "_percent", "_pct"))]


def test_every_family_is_named_by_its_type(runtime: TradingRuntime) -> None:
    """Counters' samples end in ``_total``, the histogram's unit is ``_seconds``, gauges carry
    no ``_total``; the families are the documented ones."""
    families = {
        family.name: family.type
        for family in text_string_to_metric_families(render_metrics(runtime).decode())
    }
    assert families == {
        "alchemiser_task_retried": "counter",
        "alchemiser_task_deferred": "counter",
        "alchemiser_task_recovered": "counter",
        "alchemiser_task_dead_lettered": "counter",
        "alchemiser_task_duplicate_avoided": "counter",
        "alchemiser_errors": "counter",
        "alchemiser_task_recovered_after_retries": "counter",
        "alchemiser_task_replayed": "counter",
        "alchemiser_recovery_results": "counter",
        "alchemiser_dlq_depth": "gauge",
        "alchemiser_dlq_evicted": "counter",
        "alchemiser_breaker_state": "gauge",
        "alchemiser_breaker_failure_ratio": "gauge",
        "alchemiser_breaker_calls": "gauge",
        "alchemiser_limiter_admitted": "counter",
        "alchemiser_limiter_refused": "counter",
        "alchemiser_limiter_without_redis": "counter",
        "alertmanager_notifications": "counter",
        "alertmanager_notifications_failed": "counter",
        "alertmanager_notifications_suppressed": "counter",
        "alertmanager_notification_latency_seconds": "histogram",
    }
    exposition = render_metrics(runtime).decode()
    for name, kind in families.items():
        assert f"# TYPE {name}{'_total' if kind == 'counter' else ''} {kind}" in exposition
