"""What may be replayed from the dead-letter store, and with which payload.

Only registered trading tasks are replayed, and only with a payload that still validates; an
order keeps its ``client_order_id`` so the broker sees the replay as the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from pydantic import BaseModel

from resilience.deadletter.replay import PublishReplay, ReplayRefused
from resilience.deadletter.store import DeadLetter
from resilience.errors import MalformedMessageError, ValidationError
from resilience.task import HEADER
from tasks.ordering import parse_deadline_s
from tasks.payloads import (
    CancelRequest,
    OrderRequest,
    QuoteRequest,
    RebalanceRequest,
    SyncRequest,
    parse_payload,
)
from tasks.routing import queue_of

__all__ = ["REPLAYABLE", "prepare_replay", "replay_publisher"]

REPLAYABLE: dict[str, type[BaseModel]] = {
    "tasks.submit_order": OrderRequest,
    "tasks.cancel_order": CancelRequest,
    "tasks.fetch_quote": QuoteRequest,
    "tasks.rebalance": RebalanceRequest,
    "tasks.sync_positions": SyncRequest,
}


def prepare_replay(
    *, now_s: Callable[[], float], renew_ttl_s: float | None = None
) -> Callable[[DeadLetter], dict[str, Any]]:
    """A ``prepare`` callable for :class:`resilience.deadletter.replay.Replayer`.

    Refuses unregistered tasks, payloads that no longer validate, and orders past their
    deadline (unless ``renew_ttl_s`` gives them a new one).
    """

    def prepare(entry: DeadLetter) -> dict[str, Any]:
        if entry.error_type == MalformedMessageError.__name__:
            raise ReplayRefused(
                "a quarantined message that never ran as a task: read its raw body"
                " (dlq show) and send the order again yourself"
            )
        model = REPLAYABLE.get(entry.task)
        if model is None:
            raise ReplayRefused(f"{entry.task!r} is not a registered trading task")
        kwargs = dict(entry.kwargs)
        if entry.task == "tasks.submit_order":
            if entry.idempotency_key:
                kwargs["client_order_id"] = entry.idempotency_key
            deadline = parse_deadline_s(kwargs.get("valid_until"))
            if renew_ttl_s is not None:
                renewed = datetime.fromtimestamp(now_s(), UTC) + timedelta(seconds=renew_ttl_s)
                kwargs["valid_until"] = renewed.isoformat()
            elif deadline is not None and deadline < now_s():
                raise ReplayRefused(
                    "the order's valid_until has passed; replay with --ttl to renew it"
                )
        try:
            parse_payload(model, kwargs)
        except ValidationError as invalid:
            raise ReplayRefused(f"payload no longer validates: {invalid.message}") from None
        return kwargs

    return prepare


def replay_publisher(app: Celery) -> PublishReplay:
    """A ``publish`` callable for :class:`resilience.deadletter.replay.Replayer`: the original task,
    on its queue, marked as a replay of the entry (so an order is looked up before it is sent)."""

    def publish(entry: DeadLetter, kwargs: dict[str, Any]) -> str:
        result = app.send_task(
            entry.task,
            kwargs=kwargs,
            queue=queue_of(entry.task),
            headers={HEADER: {"replay_of": entry.id}},
        )
        return str(result.id)

    return publish
