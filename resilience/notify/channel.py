"""The seam every notification channel sits behind, and what a send answers.

A channel (email, Slack, SMS, webhook, PagerDuty, console) renders a
:class:`~resilience.notify.model.Notification` its own way and sends it with a timeout; it never
raises for a failed send, it answers a :class:`Delivery` that says whether it was delivered and,
if not, why (the escalation decides on fallback and retry from that). A delivery's ``detail``
never holds a webhook URL, a token or a password: channels build it from status codes and
exception class names only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from resilience.notify.model import Notification

__all__ = ["Delivery", "FailureReason", "NotificationChannel"]


class FailureReason(enum.Enum):
    """Why a send failed; the transient ones are worth a retry later on the same channel."""

    CLIENT_ERROR = "client_error"  # the receiver refused what was sent (4xx, SMTP 5xx)
    # The receiver failed (5xx), or an SMTP server said "try again later" (4xx: 421 and 450
    # are sent for maintenance, greylisting and throttling alike).
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"  # the receiver asked to come back later (HTTP 429)
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # no connection (refused, DNS, TLS)
    # The escalation policy names the channel but the deployment does not configure it: nothing
    # was sent, and nothing will be until someone configures it.
    NOT_CONFIGURED = "not_configured"

    @property
    def transient(self) -> bool:
        """Whether the same send may succeed later."""
        return self not in (FailureReason.CLIENT_ERROR, FailureReason.NOT_CONFIGURED)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The answer to one send."""

    channel: str
    delivered: bool
    reason: FailureReason | None = None
    detail: str = ""  # status code or exception class: never a URL or a secret
    retry_after_s: float | None = None  # when the receiver said when to come back
    latency_s: float = 0.0

    @classmethod
    def ok(cls, channel: str, latency_s: float) -> Delivery:
        """Delivered."""
        return cls(channel=channel, delivered=True, latency_s=latency_s)

    @classmethod
    def not_configured(cls, channel: str) -> Delivery:
        """Not delivered: the channel is not configured (nothing was sent, in no time)."""
        return cls.failed(channel, FailureReason.NOT_CONFIGURED, "not configured", 0.0)

    @classmethod
    def failed(
        cls,
        channel: str,
        reason: FailureReason,
        detail: str,
        latency_s: float,
        retry_after_s: float | None = None,
    ) -> Delivery:
        """Not delivered, and why."""
        return cls(
            channel=channel,
            delivered=False,
            reason=reason,
            detail=detail,
            retry_after_s=retry_after_s,
            latency_s=latency_s,
        )


class NotificationChannel(Protocol):
    """Sends one notification, within its timeout, and says how it went."""

    @property
    def name(self) -> str:
        """The channel's name in the escalation policy (``email``, ``slack``, ...)."""
        ...

    def send(self, notification: Notification) -> Delivery:
        """Render and send; never raises for a failed send."""
        ...
