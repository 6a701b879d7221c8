"""Notification rate limits, shared by every worker through Redis (the plan's numbers by default).

One limit per severity class and error type: at most ``limit`` notifications in any window of
``window_s``, counted exactly (a log of send times in a sorted set, ``notify_throttle.lua``). The
plan's defaults: critical 5 per 5 min, error 10 per 15 min, warning 20 per hour; the hierarchy's
severities map onto those classes (CRITICAL critical, HIGH error, MEDIUM and LOW warning).

What a limit holds back is never silently dropped: it is counted, and the next notification of
the same kind that goes out takes the count and says it (``Notification.held_back``). When Redis
cannot be asked the notification goes out (a person not told of an outage is worse than one
told twice) and the decision is logged.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from pydantic import RootModel, field_validator, model_validator
from redis import Redis
from redis.exceptions import RedisError

from resilience.config_table import ConfigTable, is_, unknown_keys
from resilience.errors import ConfigurationError
from resilience.notify.model import Notification
from resilience.policy.retry import ErrorSeverity
from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace
from resilience.storage.scripts import CLOCK_LIB, register

__all__ = [
    "DEFAULT_LIMITS",
    "SEVERITY_CLASS",
    "LimitTable",
    "NotificationLimits",
    "NotificationThrottle",
    "ThrottleDecision",
    "ThrottleLimit",
]

_log = structlog.get_logger("alchemiser.notify")


@dataclass(frozen=True, slots=True)
class ThrottleLimit:
    """At most ``limit`` notifications in any ``window_s``."""

    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ConfigurationError(f"a notification limit is a whole number >= 1: {self.limit!r}")
        if not (isinstance(self.window_s, int | float) and 0 < self.window_s < math.inf):
            raise ConfigurationError(f"a notification window is > 0 seconds: {self.window_s!r}")


DEFAULT_LIMITS: Mapping[str, ThrottleLimit] = {
    "critical": ThrottleLimit(limit=5, window_s=300.0),
    "error": ThrottleLimit(limit=10, window_s=900.0),
    "warning": ThrottleLimit(limit=20, window_s=3600.0),
}


class LimitTable(ConfigTable):
    """A ``[notification_limits.<class>]`` table: either field may be left to the default."""

    limit: int | None = None
    window_s: float | None = None

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise is_("a whole number >= 1", value)
        return value

    @field_validator("window_s", mode="before")
    @classmethod
    def _window_s(cls, value: object) -> object:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value < math.inf
        ):
            raise is_("finite seconds > 0", value)
        return float(value)


class NotificationLimits(RootModel[dict[str, LimitTable]]):
    """The ``[notification_limits.<class>]`` tables, one per severity class of
    :data:`DEFAULT_LIMITS`."""

    model_config = {"frozen": True}

    @model_validator(mode="before")
    @classmethod
    def _known_classes(cls, value: object) -> object:
        if isinstance(value, dict):
            unknown = sorted(repr(name) for name in value if name not in DEFAULT_LIMITS)
            if unknown:
                raise unknown_keys("class", unknown, DEFAULT_LIMITS)
        return value

    def build(self) -> dict[str, ThrottleLimit]:
        """:data:`DEFAULT_LIMITS` with the tables over them."""
        limits = dict(DEFAULT_LIMITS)
        for name, table in self.root.items():
            default = DEFAULT_LIMITS[name]
            limits[name] = ThrottleLimit(
                limit=default.limit if table.limit is None else table.limit,
                window_s=default.window_s if table.window_s is None else table.window_s,
            )
        return limits


SEVERITY_CLASS: Mapping[ErrorSeverity, str] = {
    ErrorSeverity.CRITICAL: "critical",
    ErrorSeverity.HIGH: "error",
    ErrorSeverity.MEDIUM: "warning",
    ErrorSeverity.LOW: "warning",
}


@dataclass(frozen=True, slots=True)
class ThrottleDecision:
    """Whether a notification may go out now."""

    sent: bool
    held_back: int  # if sent: how many were held back before it; if not: so far, it included
    retry_after_s: float = 0.0  # if not sent: when the window lets the next one through
    degraded: bool = False  # Redis could not be asked: sent without counting


class NotificationThrottle:
    """The fleet's notification rate limits; thread-safe."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        limits: Mapping[str, ThrottleLimit] = DEFAULT_LIMITS,
        *,
        server_clock: Clock | None = None,
    ) -> None:
        missing = set(SEVERITY_CLASS.values()) - set(limits)
        if missing:
            raise ConfigurationError(
                f"notification limits need every severity class; missing {sorted(missing)}"
            )
        self._keys = keys
        self._limits = dict(limits)
        self._server_clock = server_clock
        self._admit = register(client, "resilience.notify", "notify_throttle", library=(CLOCK_LIB,))

    def admit(
        self, notification: Notification, notification_id: str | None = None
    ) -> ThrottleDecision:
        """Count ``notification`` against its limit; whether it goes out, and what it carries."""
        severity_class = SEVERITY_CLASS[notification.severity]
        limit = self._limits[severity_class]
        now = "" if self._server_clock is None else str(int(self._server_clock.now_s() * 1e6))
        try:
            sent, held, retry_us = self._admit(
                keys=list(self._keys.notify_throttle(severity_class, notification.error_type)),
                args=[
                    now,
                    int(limit.window_s * 1_000_000),
                    limit.limit,
                    notification_id or uuid.uuid4().hex,
                ],
            )
        except RedisError as unavailable:
            _log.warning(
                "notification_not_throttled",
                key=notification.key,
                severity=severity_class,
                error=str(unavailable),
            )
            return ThrottleDecision(sent=True, held_back=0, degraded=True)
        return ThrottleDecision(
            sent=int(sent) == 1, held_back=int(held), retry_after_s=int(retry_us) / 1_000_000
        )
