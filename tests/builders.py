"""Test data shared by several test modules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from resilience.deadletter.store import DeadLetter
from resilience.delivery import HEADER, DeliveryState
from resilience.guard.resources import BreakerConfig, ResourceConfig
from resilience.policy.context import ErrorNotificationData
from resilience.task import ResilientTask
from tasks.payloads import OrderRequest

__all__ = [
    "ORDER_VALID_UNTIL",
    "breaker",
    "dead_order",
    "deliver_as_worker",
    "final_failure",
    "guarded",
    "order_request",
]

ORDER_VALID_UNTIL = datetime(2030, 1, 1, tzinfo=UTC)


def breaker(**overrides: Any) -> BreakerConfig:
    """A breaker small enough to trip in a test: no jitter, no slow-call tripping."""
    settings: dict[str, Any] = {
        "window_s": 10,
        "minimum_calls": 4,
        "failure_rate_threshold": 50.0,
        "slow_call_rate_threshold": 0.0,
        "wait_duration_in_open_s": 30.0,
        "max_wait_in_open_s": 300.0,
        "wait_jitter": 0.0,
        "permitted_calls_in_half_open": 3,
        "probe_lease_s": 30.0,
    }
    settings.update(overrides)
    return BreakerConfig(**settings)


def guarded(name: str = "api", **parts: Any) -> ResourceConfig:
    """Resource ``name`` with the given guards (``breaker=...``, ``rate_limit=...``, ...)."""
    return ResourceConfig(name=name, **parts)


def dead_order(entry_id: str = "dl-1", **changes: Any) -> DeadLetter:
    """A ``tasks.submit_order`` dead-lettered after its attempts ran out, valid another hour;
    ``changes`` replaces any field."""
    entry = DeadLetter(
        id=entry_id,
        task="tasks.submit_order",
        queue="trading",
        args=[],
        kwargs={
            "symbol": "AAPL",
            "side": "buy",
            "qty": 5.0,
            "client_order_id": "alc-1",
            "valid_until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
        headers={},
        idempotency_key="alc-1",
        error_type="TradingClientError",
        message="TimeoutError: read timed out",
        reason="attempts exhausted (5 of 5)",
        severity="high",
        traceback="Traceback (most recent call last):\n  ...\nTimeoutError: read timed out",
        context={"component": "trading"},
        attempts=[{"attempt": 1, "error_type": "TradingClientError"}],
        hostname="worker-1@host",
        dead_at=datetime.now(UTC).isoformat(),
    )
    return replace(entry, **changes)


def final_failure(n: int = 1, **changes: Any) -> ErrorNotificationData:
    """Final failure number ``n`` of an order, as the escalation task is told of it."""
    failure: dict[str, Any] = {
        "severity": "critical",
        "priority": "P1",
        "title": "OrderExecutionError in trading: submit_order",
        "error_type": "OrderExecutionError",
        "error_id": f"err-{n}",
        "message": "broker answered 503",
        "component": "trading",
        "operation": "submit_order",
        "task_name": "tasks.submit_order",
        "occurred_at": "2026-11-29T03:00:00+00:00",
        "dead_letter_id": f"dl-{n}",
        **changes,
    }
    return failure  # type: ignore[return-value]


def order_request(coid: str = "alc-1", **changes: Any) -> OrderRequest:
    """A market buy of 10 AAPL under client_order_id ``coid``, valid until
    :data:`ORDER_VALID_UNTIL`; ``changes`` replaces any field (``side="sell"``,
    ``type="limit", limit_price=90.0``, ...)."""
    fields: dict[str, Any] = {
        "symbol": "AAPL",
        "side": "buy",
        "qty": 10,
        "client_order_id": coid,
        "valid_until": ORDER_VALID_UNTIL,
    }
    fields.update(changes)
    return OrderRequest(**fields)


def deliver_as_worker(
    task: ResilientTask,
    *,
    task_id: str,
    queue: str,
    state: DeliveryState | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``task`` as a worker delivers it from ``queue``: a request with the ``alchemiser``
    header of ``state``, not called directly."""
    headers = {HEADER: state.to_header()} if state is not None else {}
    task.push_request(
        id=task_id,
        headers=headers,
        delivery_info={"routing_key": queue, "redelivered": False},
        called_directly=False,
        hostname="worker-1@test",
    )
    try:
        return task(**kwargs)
    finally:
        task.pop_request()
