"""Open alerts and their escalation, shared by the fleet through Redis.

An alert is a group of alike failures (error type and component, Alertmanager's ``group_by``)
from its first failure until it is resolved. :meth:`AlertStore.note` adds a failure and says,
for the first one, when the alert's first flush is due (``group_wait`` later); the caller
schedules it as an escalation task with that countdown. :meth:`AlertStore.flush`, run by that
task, says what to send now (``notify``, ``repeat``, ``resolve``) to which escalation levels, and
when the next flush is due (``group_interval`` later, or a level's delay if sooner): one chain of
flushes per alert, each scheduled by the one before, so they survive worker restarts like any
task message. ``alchemiser alerts ack ID`` (:meth:`ack`) stops further levels and reminders.

As in Alertmanager, a flush notifies when the group changed (it opened, an operation failed in it
for the first time, its severity rose) or a level is newly reached; more of the same failures are
counted and told by the reminder after ``repeat_interval``, by the next level, and by the
resolved notice. An unacknowledged alert stays open until its last level was told, so a burst
that stopped still escalates at each level's delay.

The decisions are Lua on Redis time (``alert_note.lua``, ``alert_flush.lua``).
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import asdict, dataclass
from typing import Literal

from redis import Redis

from resilience.errors import ConfigurationError
from resilience.notify.escalation_policy import EscalationRule
from resilience.notify.model import MAX_EXAMPLES, Example, Notification, group_key
from resilience.policy.context import ErrorNotificationData
from resilience.policy.retry import ErrorSeverity
from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace
from resilience.storage.scripts import CLOCK_LIB, register

__all__ = [
    "MAX_MEMBERS",
    "AcknowledgedNotice",
    "AlertState",
    "AlertStore",
    "Flush",
    "GroupTiming",
    "Noted",
]

# The distinct operations an alert tracks to tell when one fails in its group for the first
# time; beyond them a new operation is only counted (operations are a handful of task names).
MAX_MEMBERS = 64

FlushAction = Literal["notify", "repeat", "resolve", "none", "wait", "stale"]
_FLUSH_ACTIONS: tuple[FlushAction, ...] = ("notify", "repeat", "resolve", "none", "wait", "stale")


@dataclass(frozen=True, slots=True)
class GroupTiming:
    """Alertmanager's grouping times (its defaults) and when a quiet group is resolved."""

    group_wait_s: float = 30.0
    group_interval_s: float = 300.0
    repeat_interval_s: float = 4 * 3600.0
    resolve_after_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("group_wait_s", "group_interval_s", "repeat_interval_s", "resolve_after_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigurationError(f"grouping: {name} is seconds >= 0, got {value!r}")
        if self.group_interval_s <= 0:
            raise ConfigurationError("grouping: group_interval_s must be > 0")


@dataclass(frozen=True, slots=True)
class Noted:
    """The answer to :meth:`AlertStore.note`."""

    opened: bool  # this failure opened the alert: schedule its first flush
    alert_id: str
    flush_at_s: float  # when the alert's next flush is due (Redis time, s)


@dataclass(frozen=True, slots=True)
class Flush:
    """What one flush of an alert decided."""

    action: FlushAction
    levels: range  # the escalation levels to tell (empty for none and stale)
    next_flush_at_s: float | None  # schedule the next flush then (None: the chain ends)
    notification: Notification | None = None  # what to send, for notify / repeat / resolve
    alert_id: str = ""


@dataclass(frozen=True, slots=True)
class AlertState:
    """One open alert, as ``alchemiser alerts list`` shows it."""

    alert_id: str
    group: str
    rule: str
    status: str
    severity: str
    count: int
    opened_at_s: float
    level: int  # the highest escalation level told so far (-1: none yet)
    next_flush_at_s: float | None = None  # when its chain of flushes runs next (Redis time)


@dataclass(frozen=True, slots=True)
class AcknowledgedNotice:
    """What to tell receivers that track incidents when an alert was acknowledged."""

    notification: Notification
    rule: str  # the escalation rule the alert goes by
    levels_told: range  # the levels told so far (their channels had the alert)


class AlertStore:
    """The fleet's open alerts; thread-safe."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        timing: GroupTiming | None = None,
        *,
        server_clock: Clock | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self.timing = timing or GroupTiming()
        self._server_clock = server_clock
        self._note = register(client, "resilience.notify", "alert_note", library=(CLOCK_LIB,))
        self._flush = register(client, "resilience.notify", "alert_flush", library=(CLOCK_LIB,))
        self._ack = register(client, "resilience.notify", "alert_ack")

    def _now(self) -> str:
        return "" if self._server_clock is None else str(int(self._server_clock.now_s() * 1e6))

    def _clock_now_s(self) -> float:
        if self._server_clock is not None:
            return self._server_clock.now_s()
        seconds, micros = self._client.time()
        return int(seconds) + int(micros) / 1e6

    def note(self, failure: ErrorNotificationData, rule: EscalationRule) -> Noted:
        """Add one final failure to its group's alert, opening the alert if none is open."""
        group = group_key(failure["error_type"], failure["component"])
        group_wait_s = self.timing.group_wait_s if rule.group_wait_s is None else rule.group_wait_s
        opened, alert_id, flush_at_us = self._note(
            keys=[self._keys.alert(group), self._keys.alerts_open],
            args=[
                self._now(),
                uuid.uuid4().hex[:12],
                group,
                rule.name,
                failure["severity"],
                failure["error_type"],
                failure["component"],
                json.dumps(asdict(Example.from_data(failure))),
                int(group_wait_s * 1e6),
                MAX_EXAMPLES,
                failure["operation"],
                MAX_MEMBERS,
            ],
        )
        return Noted(
            opened=int(opened) == 1, alert_id=str(alert_id), flush_at_s=int(flush_at_us) / 1e6
        )

    def flush(self, group: str, rule: EscalationRule, scheduled_at_s: float) -> Flush:
        """Decide what the flush scheduled for ``scheduled_at_s`` sends now, and when the next
        one is due."""
        reply = self._flush(
            keys=[self._keys.alert(group), self._keys.alerts_open],
            args=[
                self._now(),
                round(scheduled_at_s * 1e6),
                int(self.timing.group_interval_s * 1e6),
                int(self.timing.repeat_interval_s * 1e6),
                int(self.timing.resolve_after_s * 1e6),
                len(rule.levels),
                *(int(level.after_s * 1e6) for level in rule.levels),
            ],
        )
        action = next(a for a in _FLUSH_ACTIONS if a == reply[0])
        first, last, next_us = int(reply[1]), int(reply[2]), int(reply[3])
        next_at = next_us / 1e6 if next_us else None
        if action == "stale":
            return Flush(action, range(0), next_at)
        if action == "wait":
            return Flush(action, range(0), next_at, alert_id=str(reply[4]))
        alert_id, severity, count = str(reply[4]), str(reply[6]), int(reply[7])
        if action == "none":
            return Flush(action, range(0), next_at, alert_id=alert_id)
        notification = _notification(group, severity, count, str(reply[8]))
        if action == "resolve":
            notification = notification.resolved()
        return Flush(action, range(first, last + 1), next_at, notification, alert_id)

    def ack(self, alert_id: str) -> bool:
        """Acknowledge an open alert: no further levels, no reminders. False if no open alert
        has that id."""
        group = self._client.hget(self._keys.alerts_open, alert_id)
        if group is None:
            return False
        # The script checks the id again: the group may hold a newer alert by now.
        return int(self._ack(keys=[self._keys.alert(str(group))], args=[alert_id])) == 1

    def acknowledged_notice(self, alert_id: str) -> AcknowledgedNotice | None:
        """The acknowledged notice of open alert ``alert_id``, with the rule it escalates by
        and the levels told so far; None unless it is open and acknowledged."""
        group = self._client.hget(self._keys.alerts_open, alert_id)
        if group is None:
            return None
        fields: dict[str, str] = self._client.hgetall(self._keys.alert(str(group)))  # type: ignore[assignment]
        if fields.get("alert_id") != alert_id or fields.get("status") != "acknowledged":
            return None
        notification = _notification(
            str(group), fields["severity"], int(fields["count"]), fields["examples"]
        )
        return AcknowledgedNotice(
            notification.acknowledged(), fields["rule"], range(int(fields["sent_level"]) + 1)
        )

    def overdue(self, grace_s: float) -> list[AlertState]:
        """Open alerts whose next flush is more than ``grace_s`` late: their chain of flushes
        was lost (say, the next flush could not be published). A flush for that time restarts
        it; should the lost one turn up after all, it answers stale."""
        now_s = self._clock_now_s()
        return [
            alert
            for alert in self.open_alerts()
            if alert.next_flush_at_s is not None and now_s - alert.next_flush_at_s > grace_s
        ]

    def open_alerts(self) -> list[AlertState]:
        """Every open alert, oldest first."""
        index: dict[str, str] = self._client.hgetall(self._keys.alerts_open)  # type: ignore[assignment]
        states: list[AlertState] = []
        for alert_id, group in index.items():
            fields: dict[str, str] = self._client.hgetall(self._keys.alert(group))  # type: ignore[assignment]
            if fields.get("alert_id") != alert_id:
                continue
            states.append(
                AlertState(
                    alert_id=alert_id,
                    group=group,
                    rule=fields["rule"],
                    status=fields["status"],
                    severity=fields["severity"],
                    count=int(fields["count"]),
                    opened_at_s=int(fields["opened_us"]) / 1e6,
                    level=int(fields["sent_level"]),
                    next_flush_at_s=int(fields["next_flush_us"]) / 1e6
                    if int(fields.get("next_flush_us") or 0)
                    else None,
                )
            )
        return sorted(states, key=lambda s: s.opened_at_s)


def _notification(group: str, severity: str, count: int, examples_json: str) -> Notification:
    error_type, _, component = group.partition(":")
    return Notification(
        key=group,
        severity=ErrorSeverity(severity),
        error_type=error_type,
        component=component,
        count=count,
        examples=tuple(Example.from_json(e) for e in json.loads(examples_json)),
    )
