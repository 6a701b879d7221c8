"""Queues and routes (CONTRACT): every task lands on its queue whoever sends it."""

from __future__ import annotations

__all__ = ["QUEUES", "ROUTES", "queue_of"]

QUEUES = ("trading", "market_data", "escalation")

ROUTES: dict[str, dict[str, str]] = {
    "tasks.submit_order": {"queue": "trading"},
    "tasks.cancel_order": {"queue": "trading"},
    "tasks.rebalance": {"queue": "trading"},
    "tasks.sync_positions": {"queue": "trading"},
    "tasks.fetch_quote": {"queue": "market_data"},
    "tasks.escalate": {"queue": "escalation"},
}


def queue_of(task_name: str) -> str:
    """The queue ``task_name`` is routed to (``trading`` for unknown names)."""
    return ROUTES.get(task_name, {"queue": "trading"})["queue"]
