"""Queues and routes (CONTRACT): every task lands on its queue whoever sends it. Read from the
application's spec (tasks/spec.py)."""

from __future__ import annotations

from kombu import Exchange, Queue

from tasks.spec import SPEC

__all__ = ["QUEUES", "ROUTES", "queue_declarations", "queue_of"]

QUEUES = SPEC.queues

ROUTES: dict[str, dict[str, str]] = SPEC.task_routes()


def queue_declarations() -> list[Queue]:
    """Each queue bound to an exchange of its own name under its own name as routing key.

    A ``Queue(name)`` takes Celery's default exchange and routing key, which binds every queue
    to the same key: one publish to it was delivered to all three queues.
    """
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]


def queue_of(task_name: str) -> str:
    """The queue ``task_name`` is routed to (the default queue for unknown names)."""
    return ROUTES.get(task_name, {"queue": SPEC.default_queue})["queue"]
