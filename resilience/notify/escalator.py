"""Sends what an alert's flush decided: on its levels' channels, within the notification rate
limits, falling back when a channel fails, and counting every delivery for the fleet.

A notification (or a reminder) is counted once against its rate limit (``throttle``), however
many channels it goes to; held back, it is counted as suppressed and the next one of its kind
says how many were held back. A resolved notice is not limited (one per alert), and goes only to
the channels that want one (``resolved_to``, Alertmanager's per-receiver ``send_resolved``): the
others are skipped, which is neither a failure nor a reason to fall back, and is not counted.
Each channel of the levels is sent to once; when one fails, the same notification goes to that
level's fallbacks in order until one delivers, and a transient failure is also handed back to be
retried later on the failed channel itself (after the receiver's Retry-After when it gave one).

Delivery counts live in one Redis hash, named like Alertmanager's metrics, so any exporter sees
the whole fleet; a field is ``<metric>|<label values>``:

* ``notifications_total|<channel>`` and ``notifications_failed_total|<channel>|<reason>``;
* ``notifications_suppressed_total|<reason>``;
* the latency of each delivery (failed ones too) as a Prometheus histogram per channel:
  ``notification_latency_seconds_bucket|<channel>|<le>`` (cumulative: deliveries that took at
  most ``le`` seconds, for each bound of :data:`LATENCY_BUCKETS_S`, ``le`` formatted as
  Prometheus does: ``0.05``, ``1``, ``+Inf``; every bucket of a channel exists from its first
  delivery on), ``notification_latency_seconds_sum|<channel>`` and
  ``notification_latency_seconds_count|<channel>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog
from redis import Redis
from redis.exceptions import RedisError

from resilience.notify.alert_store import AcknowledgedNotice, Flush
from resilience.notify.channel import Delivery, NotificationChannel
from resilience.notify.escalation_policy import CHANNEL_NAMES, EscalationRule
from resilience.notify.model import Notification, NotificationStatus
from resilience.notify.throttle import NotificationThrottle
from resilience.storage.keys import KeySpace

__all__ = [
    "ACKNOWLEDGED_TO",
    "DEFAULT_RESOLVED_TO",
    "DEFAULT_RETRY_S",
    "LATENCY_BUCKETS_S",
    "DeliveryStats",
    "Escalator",
    "Retry",
    "SendReport",
]

_log = structlog.get_logger("alchemiser.notify")

# When a transient failure came without a Retry-After: try the channel again this much later.
DEFAULT_RETRY_S = 30.0
# The channels a resolved notice goes to unless told otherwise: all but SMS (a text at night to
# say all is well wakes people). PagerDuty's resolve event closes its incident.
DEFAULT_RESOLVED_TO = CHANNEL_NAMES - {"sms"}
# The receivers told that an alert was acknowledged: those that keep an incident open until then
# (PagerDuty's acknowledge event stops its own escalation).
ACKNOWLEDGED_TO = frozenset({"pagerduty"})
# Upper bounds of the latency histogram's buckets, in seconds (Prometheus' le, +Inf last).
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, math.inf)


def _le(bound_s: float) -> str:
    """A bucket bound as Prometheus writes it: ``0.05``, ``1``, ``+Inf``."""
    return "+Inf" if math.isinf(bound_s) else f"{bound_s:g}"


_BUCKETS = tuple((bound_s, _le(bound_s)) for bound_s in LATENCY_BUCKETS_S)


@dataclass(frozen=True, slots=True)
class Retry:
    """Send ``notification`` on ``channel`` again ``after_s`` from now."""

    channel: str
    after_s: float


@dataclass(frozen=True, slots=True)
class SendReport:
    """What one send of a flush did."""

    sent: bool  # False: the rate limit held it back
    notification: Notification | None  # as sent (with held_back)
    deliveries: tuple[Delivery, ...] = ()  # every attempt, fallbacks included, in order
    retries: tuple[Retry, ...] = ()
    held_back: int = 0

    @property
    def delivered_to(self) -> tuple[str, ...]:
        """The channels that delivered."""
        return tuple(d.channel for d in self.deliveries if d.delivered)


class DeliveryStats:
    """Fleet-wide delivery counters in one Redis hash (``<metric>|<labels>`` fields)."""

    def __init__(self, client: Redis, keys: KeySpace) -> None:
        self._client = client
        self._key = keys.notify_stats

    def record(self, deliveries: Sequence[Delivery], suppressed: str | None = None) -> None:
        """Count the deliveries (and one notification suppressed for ``suppressed``)."""
        pipe = self._client.pipeline(transaction=False)
        for d in deliveries:
            pipe.hincrby(self._key, f"notifications_total|{d.channel}", 1)
            pipe.hincrbyfloat(
                self._key, f"notification_latency_seconds_sum|{d.channel}", d.latency_s
            )
            pipe.hincrby(self._key, f"notification_latency_seconds_count|{d.channel}", 1)
            for bound_s, le in _BUCKETS:
                # By 0 below the latency: every bucket of the channel exists for an exporter.
                pipe.hincrby(
                    self._key,
                    f"notification_latency_seconds_bucket|{d.channel}|{le}",
                    1 if d.latency_s <= bound_s else 0,
                )
            if not d.delivered and d.reason is not None:
                pipe.hincrby(
                    self._key, f"notifications_failed_total|{d.channel}|{d.reason.value}", 1
                )
        if suppressed is not None:
            pipe.hincrby(self._key, f"notifications_suppressed_total|{suppressed}", 1)
        try:
            pipe.execute()
        except RedisError as unavailable:
            _log.warning("notification_stats_not_recorded", error=str(unavailable))

    def snapshot(self) -> dict[str, float]:
        """Every counter, by field."""
        raw: dict[str, str] = self._client.hgetall(self._key)  # type: ignore[assignment]
        return {field: float(value) for field, value in raw.items()}


class Escalator:
    """Sends flush decisions on the configured channels."""

    def __init__(
        self,
        channels: Mapping[str, NotificationChannel],
        throttle: NotificationThrottle,
        stats: DeliveryStats,
        *,
        retry_s: float = DEFAULT_RETRY_S,
        resolved_to: frozenset[str] = DEFAULT_RESOLVED_TO,
    ) -> None:
        self._channels = channels
        # The channels that want resolved notices; a firing notification goes to every one.
        self._resolved_to = resolved_to
        self._throttle = throttle
        self._stats = stats
        # A transient failure without a Retry-After is retried this long after (then doubling).
        self.retry_s = retry_s

    def send(self, flush: Flush, rule: EscalationRule) -> SendReport:
        """Send ``flush``'s notification to the channels of its levels of ``rule`` (a resolved
        notice: to those of them that want one)."""
        notification = flush.notification
        if notification is None or not flush.levels:
            return SendReport(sent=False, notification=None)
        if notification.status is NotificationStatus.FIRING:
            decision = self._throttle.admit(notification)
            if not decision.sent:
                self._stats.record((), suppressed="rate_limited")
                _log.info(
                    "notification_held_back", key=notification.key, held_back=decision.held_back
                )
                return SendReport(sent=False, notification=None, held_back=decision.held_back)
            notification = notification.with_held_back(decision.held_back)
        deliveries: list[Delivery] = []
        retries: list[Retry] = []
        for index in flush.levels:
            level = rule.levels[index]
            for name in level.channels:
                if not self._wants(name, notification) or any(
                    d.channel == name for d in deliveries
                ):
                    continue
                delivery = self._deliver(name, notification)
                deliveries.append(delivery)
                if delivery.delivered:
                    continue
                if delivery.reason is not None and delivery.reason.transient:
                    retries.append(Retry(name, delivery.retry_after_s or self.retry_s))
                deliveries.extend(self._fall_back(level.fallback, notification, deliveries))
        self._stats.record(deliveries)
        return SendReport(
            sent=True,
            notification=notification,
            deliveries=tuple(deliveries),
            retries=tuple(retries),
            held_back=notification.held_back,
        )

    def acknowledge(self, notice: AcknowledgedNotice, rule: EscalationRule) -> SendReport:
        """Tell the receivers that track incidents (:data:`ACKNOWLEDGED_TO`) among the channels
        and fallbacks of the levels told that the alert was acknowledged; not rate limited, no
        fallback (the others were told nothing they need to take back)."""
        told = [rule.levels[i] for i in notice.levels_told if i < len(rule.levels)]
        names = dict.fromkeys(
            name
            for level in told
            for name in (*level.channels, *level.fallback)
            if name in ACKNOWLEDGED_TO
        )
        deliveries = tuple(self._deliver(name, notice.notification) for name in names)
        self._stats.record(deliveries)
        return SendReport(
            sent=True,
            notification=notice.notification,
            deliveries=deliveries,
            retries=tuple(
                Retry(d.channel, d.retry_after_s or self.retry_s)
                for d in deliveries
                if d.reason is not None and d.reason.transient
            ),
        )

    def retry(self, channel: str, notification: Notification) -> Delivery:
        """Send again on ``channel`` alone (a transient failure's retry); counted."""
        delivery = self._deliver(channel, notification)
        self._stats.record((delivery,))
        return delivery

    def _fall_back(
        self, fallback: Sequence[str], notification: Notification, so_far: Sequence[Delivery]
    ) -> list[Delivery]:
        """The fallbacks in order until one has the notification: one that delivered it
        earlier in this send already does; one that failed earlier, or that does not want
        this (resolved) notice, is not asked."""
        delivered = {d.channel for d in so_far if d.delivered}
        failed = {d.channel for d in so_far if not d.delivered}
        attempts: list[Delivery] = []
        for name in fallback:
            if name in delivered:
                return attempts
            if name in failed or not self._wants(name, notification):
                continue
            delivery = self._deliver(name, notification)
            attempts.append(delivery)
            if delivery.delivered:
                return attempts
            failed.add(name)
        return attempts

    def _wants(self, name: str, notification: Notification) -> bool:
        """Whether channel ``name`` is sent ``notification``: a firing one always, a resolved
        notice only when the channel wants resolved notices."""
        return notification.status is NotificationStatus.FIRING or name in self._resolved_to

    def _deliver(self, name: str, notification: Notification) -> Delivery:
        channel = self._channels.get(name)
        if channel is None:
            return Delivery.not_configured(name)
        delivery = channel.send(notification)
        log = _log.info if delivery.delivered else _log.warning
        log(
            "notification_delivery",
            channel=name,
            key=notification.key,
            delivered=delivery.delivered,
            reason=delivery.reason.value if delivery.reason else None,
            detail=delivery.detail,
            latency_s=round(delivery.latency_s, 4),
        )
        return delivery
