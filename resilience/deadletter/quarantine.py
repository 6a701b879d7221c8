"""Quarantine: a message the worker refuses before any task runs becomes a dead letter.

Celery acknowledges (or rejects) a message it cannot run as a task: an unregistered task name,
an ETA or expiry it cannot read, a body that is not in a task format. It only logs it, so the
message and whatever order it carried were gone. Here such a message is kept as a dead letter
of its own kind (:class:`~resilience.errors.MalformedMessageError`) holding its raw body and
headers, scrubbed of secrets and bounded in size, for an operator to read; it is never
replayed as it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from resilience.deadletter.store import DeadLetter, bound_value
from resilience.errors import MalformedMessageError
from resilience.policy.context import ErrorContext
from resilience.scrub import Scrubber
from resilience.task import ResilienceRuntime

__all__ = ["RAW_BODY_LIMIT", "quarantine", "quarantine_message", "quarantined"]

_log = structlog.get_logger("alchemiser.quarantine")

# Enough to read what was sent; a 10 MB body is not kept whole.
RAW_BODY_LIMIT = 16_384
_ID_LIMIT = 128
_HEADER_VALUE_LIMIT = 1_024


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else repr(value)


def _short_string(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _ID_LIMIT else None


def quarantined(
    *,
    body: Any,
    headers: Mapping[str, Any] | None,
    delivery_info: Mapping[str, Any] | None,
    reason: str,
    scrubber: Scrubber,
    hostname: str,
    now_s: float,
) -> DeadLetter:
    """The dead letter of a message refused before it ran, ``reason`` saying why."""
    headers = dict(headers or {})
    error = MalformedMessageError(reason)
    original = _text(body)
    raw_body = scrubber.text(original[: RAW_BODY_LIMIT * 2])
    task_id = _short_string(headers.get("id")) or f"quarantine-{uuid.uuid4().hex}"
    routing = dict(delivery_info or {})
    return DeadLetter(
        id=task_id,
        task=_short_string(headers.get("task")) or "unknown",
        queue=_short_string(routing.get("routing_key")),
        args=[],
        kwargs={},
        headers=bound_value(scrubber(_json_safe(headers)), _HEADER_VALUE_LIMIT),
        idempotency_key=None,
        error_type=error.error_type,
        message=scrubber.text(reason)[:500],
        reason="malformed message",
        severity=error.severity.value,
        traceback=None,
        context={"component": "transport", "operation": "receive", "error_id": error.error_id},
        attempts=[],
        hostname=hostname,
        dead_at=datetime.fromtimestamp(now_s, UTC).isoformat(),
        extra={
            "raw_body": bound_value(raw_body, RAW_BODY_LIMIT),
            "raw_body_length": len(original),
        },
    )


def _json_safe(value: Any) -> Any:
    """Headers as JSON can hold them (a broker may hand over bytes or other objects)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return _text(value)


def quarantine(
    runtime: ResilienceRuntime,
    *,
    body: Any,
    headers: Mapping[str, Any] | None,
    delivery_info: Mapping[str, Any] | None,
    reason: str,
    hostname: str,
) -> DeadLetter | None:
    """Store the dead letter of a refused message, count it as a handled error and log it.

    Contained: the broker has already let go of the message, so a failure here is logged
    (with the scrubbed, bounded body: the last place it is seen) and never raised into the
    consumer, which would stop the worker.
    """
    entry: DeadLetter | None = None
    try:
        entry = quarantined(
            body=body,
            headers=headers,
            delivery_info=delivery_info,
            reason=reason,
            scrubber=runtime.scrubber,
            hostname=hostname,
            now_s=runtime.clock.now_s(),
        )
        runtime.dead_letters.add(entry)
        runtime.outcomes.incr("dead_lettered", entry.task)
        runtime.handler.handle_error(
            MalformedMessageError(entry.message),
            ErrorContext(operation=entry.task, component="transport", request_id=entry.id),
            "trading",
            {"task_name": entry.task, "task_id": entry.id},
        )
    except Exception as failure:
        _log.critical(
            "message_quarantine_failed",
            reason=runtime.scrubber.text(reason)[:500],
            raw_body=runtime.scrubber.text(_text(body)[:RAW_BODY_LIMIT]),
            error=repr(failure),
        )
        return None
    _log.error(
        "message_quarantined",
        task=entry.task,
        task_id=entry.id,
        queue=entry.queue,
        reason=entry.message,
    )
    return entry


def quarantine_message(
    runtime: ResilienceRuntime, message: Any, *, reason: str, hostname: str
) -> DeadLetter | None:
    """:func:`quarantine` of a broker message (kombu's: ``body``, ``headers``,
    ``delivery_info``; any of them may be missing on a message that is garbage)."""
    return quarantine(
        runtime,
        body=getattr(message, "body", None),
        headers=getattr(message, "headers", None),
        delivery_info=getattr(message, "delivery_info", None),
        reason=reason,
        hostname=hostname,
    )
