"""The fleet's error history in Redis: one stream entry per handled error, bounded.

An :class:`~resilience.policy.handler.ErrorRecorder`: every failed attempt and every dead letter
written before its body ran is appended (time, error type, component, operation, message
template) to ``<namespace>:{patterns}:errors``, trimmed to about ``max_events`` entries, so the
memory it takes is bounded whatever the error rate. Recording is best effort: a Redis error is
logged, never raised into the task.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import structlog
from redis import Redis
from redis.exceptions import RedisError

from resilience.patterns.templates import MessageTemplater
from resilience.policy.handler import ErrorDetails
from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace

__all__ = ["DEFAULT_MAX_EVENTS", "RETENTION_S", "ErrorEvent", "ErrorHistory"]

DEFAULT_MAX_EVENTS = 50_000
# The history goes away this long after the last error recorded in it (an abandoned namespace).
RETENTION_S = 30 * 24 * 3600
_READ_BATCH = 5_000

_log = structlog.get_logger("alchemiser.patterns")


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """One handled error, as the history keeps it."""

    at_s: float
    error_type: str
    component: str
    operation: str
    template: str
    # A checksum of the message before masking: how many variants a template stands for.
    variant: int = 0


class ErrorHistory:
    """Appends handled errors to the fleet's history and reads them back."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        clock: Clock,
        *,
        templater: MessageTemplater | None = None,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self._client = client
        self._key = keys.app_key("patterns", "errors")
        self._clock = clock
        self._templater = templater or MessageTemplater()
        self.max_events = max_events

    def record(self, details: ErrorDetails) -> None:
        """Append one handled error (its message as a template: no values, so no secrets)."""
        error = details.error
        self.append(
            ErrorEvent(
                at_s=self._clock.now_s(),
                error_type=error.error_type,
                component=details.component,
                operation=details.context.operation or "",
                template=self._templater.template(error.message),
                variant=zlib.crc32(error.message.encode()),
            )
        )

    def append(self, *events: ErrorEvent) -> None:
        """Append ``events`` in one round trip (the recorder's path, and synthetic histories)."""
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(
                self._key,
                {
                    "at_s": repr(event.at_s),
                    "error_type": event.error_type,
                    "component": event.component,
                    "operation": event.operation,
                    "template": event.template,
                    "variant": str(event.variant),
                },
                maxlen=self.max_events,
                approximate=True,
            )
        pipe.expire(self._key, RETENTION_S)
        try:
            pipe.execute()
        except RedisError as unavailable:
            _log.warning("error_history_not_recorded", events=len(events), error=str(unavailable))

    def events(self, since_s: float | None = None) -> list[ErrorEvent]:
        """Every kept event (at or after ``since_s``), oldest first."""
        return [e for e in self._read() if since_s is None or e.at_s >= since_s]

    def _read(self) -> Iterator[ErrorEvent]:
        start = "-"
        while True:
            batch = cast(
                "list[tuple[str, dict[str, str]]]",
                self._client.xrange(self._key, min=start, count=_READ_BATCH),
            )
            for entry_id, fields in batch:
                if entry_id == start:
                    continue
                try:
                    yield ErrorEvent(
                        at_s=float(fields["at_s"]),
                        error_type=fields["error_type"],
                        component=fields.get("component", ""),
                        operation=fields.get("operation", ""),
                        template=fields.get("template", ""),
                        variant=int(fields.get("variant", 0)),
                    )
                except (KeyError, ValueError):
                    continue  # an entry this release cannot read
            if len(batch) < _READ_BATCH:
                return
            start = batch[-1][0]
