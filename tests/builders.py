"""Test data shared by several test modules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from resilience.deadletter import DeadLetter

__all__ = ["dead_order"]


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
        client_order_id="alc-1",
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
