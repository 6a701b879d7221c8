"""Every Redis key Alchemiser owns, built in one place under one namespace.

Keys that one script touches together share a hash tag (``{dlq}``, ``{paper}``, ...) so each
script stays on one Redis Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeySpace"]


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Key builder for one deployment (or test run), all keys prefixed ``<namespace>:``."""

    namespace: str = "alchemiser"

    def __post_init__(self) -> None:
        if not self.namespace or any(c in self.namespace for c in " {}"):
            raise ValueError(
                f"namespace must be non-empty without spaces or braces: {self.namespace!r}"
            )

    def _key(self, tag: str, *parts: str) -> str:
        return ":".join((self.namespace, "{" + tag + "}", *parts))

    def app_key(self, tag: str, *parts: str) -> str:
        """A key the application owns under this namespace: ``<namespace>:{tag}:<parts>``
        (keys of one tag share a Redis Cluster slot, so one script may touch them all)."""
        return self._key(tag, *parts)

    @property
    def broker_prefix(self) -> str:
        """kombu ``global_keyprefix`` for the Redis broker (queues live under it too)."""
        return f"{self.namespace}:"

    # Dead letters
    @property
    def dlq_entries(self) -> str:
        return self._key("dlq", "entries")

    @property
    def dlq_status(self) -> str:
        return self._key("dlq", "status")

    @property
    def dlq_index(self) -> str:
        return self._key("dlq", "index")

    @property
    def dlq_ids(self) -> str:
        """Every entry's id at score 0: the lexicographic index that id prefixes resolve in."""
        return self._key("dlq", "ids")

    @property
    def dlq_audit(self) -> str:
        return self._key("dlq", "audit")

    @property
    def dlq_claims(self) -> str:
        return self._key("dlq", "claims")

    @property
    def dlq_evicted(self) -> str:
        return self._key("dlq", "evicted")

    # Guarded resources: breaker, rate limiter, concurrency leases, retry budget. Keys of one
    # resource share its hash tag; the guard scripts get them in this order (guard_lib.lua).
    def resource(self, name: str) -> tuple[str, ...]:
        """Keys of resource ``name``: breaker, window, probes, events, rate, leases, budget,
        stats (admission counters)."""
        tag = f"res:{name}"
        return tuple(
            self._key(tag, part)
            for part in (
                "breaker",
                "window",
                "probes",
                "events",
                "rate",
                "leases",
                "budget",
                "stats",
            )
        )

    # Notification rate limits: per severity class and error type, the times of the
    # notifications sent in the window and the count of those held back since the last one.
    def notify_throttle(self, severity: str, error_type: str) -> tuple[str, str]:
        """Keys of one notification rate limit: sent (zset of send times), held (counter)."""
        tag = f"notify:{severity}:{error_type}"
        return self._key(tag, "sent"), self._key(tag, "held")

    # Notification delivery counters (notifications_total, failed, suppressed, latency)
    @property
    def notify_stats(self) -> str:
        return self._key("notify", "stats")

    # Alerts: one hash per group of alike failures (its escalation state), and the index of
    # the open ones by alert id, which the alert scripts update with the group's hash.
    def alert(self, group: str) -> str:
        """The state of the alert of group ``group`` (error type and component)."""
        return self._key(f"alert:{group}", "state")

    @property
    def alerts_open(self) -> str:
        """alert id -> group of every open alert."""
        return self._key("alerts", "open")

    # Redelivery (poison message) counters: one key per delivery of a task message
    def redeliveries(self, task_id: str, delivery: str) -> str:
        return self._key("redeliveries", task_id, delivery)

    # Alert thresholds
    def threshold_cooldown(self, name: str) -> str:
        """Set while threshold ``name`` was breached within its cool-down (one incident)."""
        return self._key("thresholds", "cooldown", name)

    # Fault injection
    @property
    def chaos_rules(self) -> str:
        return self._key("chaos", "rules")

    @property
    def chaos_fired(self) -> str:
        return self._key("chaos", "fired")

    @property
    def chaos_clock_shift(self) -> str:
        """Seconds the fleet's escalation clock runs ahead of Redis time (a drill's time jump)."""
        return self._key("chaos", "clock_shift")

    # Task outcome counters
    @property
    def outcomes(self) -> str:
        return self._key("outcomes", "counts")

    # Error metrics (resilience/observability/metrics.py): totals per error type, component and
    # severity, one hash per time bucket (expiring after the metrics' horizon), the capped log of
    # critical errors and the recovery counters.
    @property
    def error_totals(self) -> str:
        return self._key("metrics", "errors")

    def error_bucket(self, start_s: int) -> str:
        """The errors counted in the bucket that starts at ``start_s`` (epoch seconds)."""
        return self._key("metrics", "errors", str(start_s))

    @property
    def critical_errors(self) -> str:
        return self._key("metrics", "critical")

    @property
    def recovery(self) -> str:
        return self._key("metrics", "recovery")

    # The fleet epoch (resilience/storage/epoch.py): written by the first worker, never expiring, so
    # the workers that remember it notice a Redis that lost its data; and the last such loss.
    @property
    def epoch(self) -> str:
        return self._key("epoch", "record")

    @property
    def data_lost(self) -> str:
        return self._key("epoch", "lost")
