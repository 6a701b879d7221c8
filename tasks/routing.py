"""Queues and routes (CONTRACT): every task lands on its queue whoever sends it."""

from __future__ import annotations

from kombu import Exchange, Queue

__all__ = ["QUEUES", "ROUTES", "queue_declarations", "queue_of"]

QUEUES = ("trading", "market_data", "escalation")

ROUTES: dict[str, dict[str, str]] = {
    "tasks.submit_order": {"queue": "trading"},
    "tasks.cancel_order": {"queue": "trading"},
    "tasks.rebalance": {"queue": "trading"},
    "tasks.sync_positions": {"queue": "trading"},
    "tasks.fetch_quote": {"queue": "market_data"},
    "tasks.escalate": {"queue": "escalation"},
}


def queue_declarations() -> list[Queue]:
    """Each queue bound to an exchange of its own name under its own name as routing key.

    A ``Queue(name)`` takes Celery's default exchange and routing key, which binds every queue
    to the same key: one publish to it was delivered to all three queues.
    """
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]


def queue_of(task_name: str) -> str:
    """The queue ``task_name`` is routed to (``trading`` for unknown names)."""
    return ROUTES.get(task_name, {"queue": "trading"})["queue"]
