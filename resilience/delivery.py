"""One delivery of a task: the ``alchemiser`` header carried from attempt to attempt, its typed
attempt records, and the :class:`Delivery` every step of a run reads.

The attempt history travels in the message's header, so retries need no shared state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, cast

import structlog

from resilience.errors import AlchemiserError
from resilience.guard.admission import Admission
from resilience.policy.resolver import Decision
from resilience.runtime import ResilienceRuntime

__all__ = [
    "HEADER",
    "HISTORY_LIMIT",
    "MESSAGE_LIMIT",
    "AttemptRecord",
    "Delivery",
    "DeliveryState",
    "iso",
]

HEADER = "alchemiser"
HISTORY_LIMIT = 25
# A count in the header beyond this is garbage, not a history (deferrals are the larger one).
MAX_HEADER_COUNT = 1_000_000
MESSAGE_LIMIT = 500

_log = structlog.get_logger("alchemiser.task")


class AttemptRecord(TypedDict, total=False):
    """One failed or refused attempt, as the header, the dead letter and reporters carry it
    (JSON). Records read from a header may lack fields an older release did not write."""

    attempt: int
    at: str
    error_type: str
    message: str
    action: str
    countdown_s: float
    hostname: str
    # What the application's recovery strategies did about this attempt (RecoveryResult records).
    recovery: list[dict[str, Any]]


def iso(now_s: float) -> str:
    """``now_s`` as ISO-8601 UTC."""
    return datetime.fromtimestamp(now_s, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What the ``alchemiser`` header carries from one attempt to the next."""

    failures: int = 0
    deferrals: int = 0
    history: tuple[AttemptRecord, ...] = ()
    replay_of: str | None = None
    # Recoveries that ran the task again later (bounded by the recovery registry).
    recoveries: int = 0

    @classmethod
    def from_headers(cls, headers: dict[str, Any] | None) -> DeliveryState:
        """Read the header (absent on a first delivery).

        A malformed header (not an object, counts that are not small non-negative integers, a
        history that is not a list of objects, a replay id that is not a string) is read as
        absent, and said in the log: raising here would drop a valid order unrecorded.
        """
        raw = (headers or {}).get(HEADER)
        if raw is None:
            return cls()
        state = cls._parse(raw)
        if state is None:
            _log.warning("malformed_delivery_header", header=repr(raw)[:200])
            return cls()
        return state

    @classmethod
    def _parse(cls, raw: Any) -> DeliveryState | None:
        if not isinstance(raw, dict):
            return None
        failures = raw.get("failures", 0)
        deferrals = raw.get("deferrals", 0)
        history = raw.get("history", ())
        replay_of = raw.get("replay_of")
        recoveries = raw.get("recoveries", 0)
        counts_ok = all(
            type(n) is int and 0 <= n <= MAX_HEADER_COUNT for n in (failures, deferrals, recoveries)
        )
        history_ok = isinstance(history, list | tuple) and all(
            isinstance(record, dict) for record in history
        )
        if not counts_ok or not history_ok or not isinstance(replay_of, str | None):
            return None
        return cls(
            failures=failures,
            deferrals=deferrals,
            history=cast("tuple[AttemptRecord, ...]", tuple(history)[-HISTORY_LIMIT:]),
            replay_of=replay_of,
            recoveries=recoveries,
        )

    def to_header(self) -> dict[str, Any]:
        """The header value (JSON)."""
        return {
            "failures": self.failures,
            "deferrals": self.deferrals,
            "history": list(self.history),
            "replay_of": self.replay_of,
            "recoveries": self.recoveries,
        }

    @property
    def delivery(self) -> str:
        """Which delivery of the task this is: the same on a redelivery, new on a retry."""
        return f"{self.failures}.{self.deferrals}"

    def after(
        self, record: AttemptRecord, *, deferred: bool, recovered: bool = False
    ) -> DeliveryState:
        """The state carried to the next attempt; ``recovered``: a recovery strategy sends the
        task to run again (a deferral that counts as one of its recoveries)."""
        return DeliveryState(
            failures=self.failures + (0 if deferred else 1),
            deferrals=self.deferrals + (1 if deferred else 0),
            history=(*self.history, record)[-HISTORY_LIMIT:],
            replay_of=self.replay_of,
            recoveries=self.recoveries + (1 if recovered else 0),
        )


@dataclass(slots=True)
class Delivery:
    """One run of a task, built once in ``ResilientTask.__call__``: what every step of the run
    (admission, the body, failure handling, the dead letter) reads instead of a long list of
    parameters. ``kwargs``, ``deadline``, ``admission`` and ``started`` are filled in as the
    run goes."""

    runtime: ResilienceRuntime
    task_id: str
    hostname: str
    queue: str | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: DeliveryState
    redelivered: bool
    deadline: float | None = None
    admission: Admission | None = None
    started: float = 0.0
    # The body's own classification of a failure, reused for the same exception object.
    classified: tuple[BaseException, AlchemiserError] | None = None

    def attempt_record(
        self, error: AlchemiserError, decision: Decision, now_s: float, state: DeliveryState
    ) -> AttemptRecord:
        """The record of attempt ``state.failures + 1``: its time, its error (scrubbed, bounded)
        and what followed."""
        return {
            "attempt": state.failures + 1,
            "at": iso(now_s),
            "error_type": error.error_type,
            "message": self.runtime.scrubber.text(error.message)[:MESSAGE_LIMIT],
            "action": decision.action.value,
            "countdown_s": round(decision.countdown_s, 3),
            "hostname": self.hostname,
        }
