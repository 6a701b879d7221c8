"""Fleet-wide error metrics in Redis: counts, sliding-window rates, critical errors, recoveries.

Every handled error (every failed attempt, and every dead letter written before its body ran: a
stale order, a poison message, a run refused past its deadline) is counted per
``ErrorType:component`` and severity, in a total and in the time bucket it fell in. Buckets
expire once they are older than the horizon, so memory stays bounded by (horizon / bucket)
hashes of a few fields each, whatever the error rate. Nothing is kept in the process: a prefork
pool's children and every worker add to the same keys, and any process reads the whole fleet.

Layout (:class:`~resilience.storage.keys.KeySpace`): ``error_totals`` and each ``error_bucket`` are
hashes of ``<ErrorType>:<component>|<severity>`` -> count; ``critical_errors`` is a list of JSON
entries, newest first, capped; ``recovery`` holds ``recovered``, ``recovered_after|<retries>``,
``replayed`` and ``strategy|<name>|<outcome>`` (the recovery strategies' results). Dead
letters are the task outcome counters' ``dead_lettered``
(:class:`~resilience.observability.outcomes.OutcomeCounter`), not counted twice.

Windows are whole buckets ending with the current (partial) one: a 5-minute window with
60-second buckets counts the current bucket and the four before it.

Recording is best effort, like the outcome counters: a Redis error is logged, never raised
into the task being counted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from resilience.policy.handler import ErrorDetails
from resilience.policy.retry import ErrorSeverity
from resilience.recovery.result import RecoveryResult
from resilience.scrub import Scrubber
from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace

__all__ = [
    "BUCKET_S",
    "CRITICAL_LOG_LIMIT",
    "HORIZON_S",
    "ErrorMetrics",
    "RecoveryStats",
]

_log = structlog.get_logger("alchemiser.metrics")

BUCKET_S = 60
# A day of history for the health report and thresholds, plus slack for a window that starts
# a little before "24 h ago".
HORIZON_S = 26 * 3600
CRITICAL_LOG_LIMIT = 100
MESSAGE_LIMIT = 500
_CRITICAL = ErrorSeverity.CRITICAL.value


@dataclass(frozen=True, slots=True)
class RecoveryStats:
    """How failing tasks ended, fleet-wide, since the counters began.

    ``recovered_after`` maps the number of failed attempts before the run that succeeded
    (0: a redelivery that succeeded) to how many tasks recovered after that many.
    """

    recovered: int
    recovered_after: dict[int, int]
    replayed: int
    dead: int
    # (strategy, outcome) -> how many of the strategy's tries ended so.
    strategies: dict[tuple[str, str], int] = dataclass_field(default_factory=dict)

    @property
    def failure_rate(self) -> float:
        """Dead letters among the tasks that failed and then ended: dead / (recovered + dead)."""
        ended = self.recovered + self.dead
        return self.dead / ended if ended else 0.0


def _field(error_type: str, component: str, severity: str) -> str:
    return f"{error_type}:{component}|{severity}"


def _split(field: str) -> tuple[str, str]:
    """``(ErrorType:component, severity)`` of a stored field."""
    key, _, severity = field.rpartition("|")
    return key, severity


class ErrorMetrics:
    """Records handled errors and recoveries in Redis; answers counts, rates and series.

    An :class:`~resilience.policy.handler.ErrorRecorder`. Buckets are taken on ``clock``: the
    runtime's clock (the host's, NTP-synchronised) rather than Redis TIME, because asking Redis
    for the time first would cost every record a second round trip, and a few milliseconds of
    skew between hosts only moves an error that lands on a bucket edge into its neighbour.
    """

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        clock: Clock,
        *,
        scrubber: Scrubber,
        bucket_s: int = BUCKET_S,
        horizon_s: int = HORIZON_S,
        critical_limit: int = CRITICAL_LOG_LIMIT,
    ) -> None:
        if bucket_s < 1:
            raise ValueError(f"bucket_s must be at least 1, got {bucket_s}")
        if horizon_s < bucket_s:
            raise ValueError(f"horizon_s ({horizon_s}) must be at least bucket_s ({bucket_s})")
        if critical_limit < 1:
            raise ValueError(f"critical_limit must be at least 1, got {critical_limit}")
        self._client = client
        self._keys = keys
        self._clock = clock
        self._scrub = scrubber
        self.bucket_s = bucket_s
        self.horizon_s = horizon_s
        self._critical_limit = critical_limit

    # Recording

    def record(self, details: ErrorDetails) -> None:
        """Count one handled error (one round trip); a critical one is also logged."""
        error = details.error
        severity = error.severity.value
        field = _field(error.error_type, details.component, severity)
        now_s = self._clock.now_s()
        start_s = self._bucket_start(now_s)
        bucket = self._keys.error_bucket(start_s)
        # The bucket is read for a horizon after it ends; then Redis drops it.
        ttl_ms = math.ceil((start_s + self.bucket_s + self.horizon_s - now_s) * 1000)
        pipe = self._client.pipeline(transaction=False)
        pipe.hincrby(self._keys.error_totals, field, 1)
        pipe.hincrby(bucket, field, 1)
        pipe.pexpire(bucket, ttl_ms)
        if severity == _CRITICAL:
            pipe.lpush(self._keys.critical_errors, self._critical_entry(details, now_s))
            pipe.ltrim(self._keys.critical_errors, 0, self._critical_limit - 1)
        self._execute(pipe, "error_not_counted", error_type=error.error_type)

    def record_recovered(self, retries: int) -> None:
        """Count a task that succeeded after ``retries`` failed attempts."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hincrby(self._keys.recovery, "recovered", 1)
        pipe.hincrby(self._keys.recovery, f"recovered_after|{retries}", 1)
        self._execute(pipe, "recovery_not_counted", retries=retries)

    def record_recovery(self, results: tuple[RecoveryResult, ...]) -> None:
        """Count each recovery strategy's result by strategy and outcome."""
        if not results:
            return
        pipe = self._client.pipeline(transaction=False)
        for result in results:
            pipe.hincrby(self._keys.recovery, f"strategy|{result.strategy}|{result.outcome}", 1)
        self._execute(pipe, "recovery_results_not_counted", results=len(results))

    def record_replayed(self) -> None:
        """Count a dead letter replayed (its task's first delivery)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hincrby(self._keys.recovery, "replayed", 1)
        self._execute(pipe, "replay_not_counted")

    # Queries

    def error_counts(self) -> dict[str, int]:
        """Errors counted since the counters began, per ``ErrorType:component``."""
        counts: dict[str, int] = {}
        for (error_type, component, _), count in self.error_counts_by_severity().items():
            key = f"{error_type}:{component}"
            counts[key] = counts.get(key, 0) + count
        return counts

    def error_counts_by_severity(self) -> dict[tuple[str, str, str], int]:
        """Errors counted since the counters began, per (error type, component, severity)."""
        raw = cast("dict[str, str]", self._client.hgetall(self._keys.error_totals))
        counts: dict[tuple[str, str, str], int] = {}
        for field, count in raw.items():
            key, severity = _split(field)
            error_type, _, component = key.partition(":")
            counts[(error_type, component, severity)] = int(count)
        return counts

    def error_rate_per_min(self, window_s: float, key: str | None = None) -> float:
        """Errors per minute over the last ``window_s`` (all, or one ``ErrorType:component``)."""
        total = sum(count for _, count in self.series(window_s, self.bucket_s, key))
        return total * 60.0 / window_s

    def critical_count(self, window_s: float) -> int:
        """Critical errors in the last ``window_s``."""
        return sum(
            count
            for bucket in self._buckets(self._window_starts(window_s, self.bucket_s))
            for field, count in bucket.items()
            if _split(field)[1] == _CRITICAL
        )

    def series(
        self, window_s: float, step_s: float = 60, key: str | None = None
    ) -> list[tuple[float, int]]:
        """(step start, errors) per ``step_s`` over the last ``window_s``, oldest first, steps
        without errors included. ``step_s`` is a whole number of buckets."""
        starts = self._window_starts(window_s, step_s)
        per_step = round(step_s / self.bucket_s)
        buckets = self._buckets(
            start + i * self.bucket_s for start in starts for i in range(per_step)
        )
        totals = [
            sum(count for field, count in bucket.items() if key is None or _split(field)[0] == key)
            for bucket in buckets
        ]
        return [
            (float(start), sum(totals[i * per_step : (i + 1) * per_step]))
            for i, start in enumerate(starts)
        ]

    def recent_critical(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest critical errors first (time, error type, component, operation, message
        scrubbed of secrets, error id); at most ``limit``, and the log keeps fewer."""
        if limit < 1:
            return []
        raw = cast("list[str]", self._client.lrange(self._keys.critical_errors, 0, limit - 1))
        return [json.loads(entry) for entry in raw]

    def recovery(self) -> RecoveryStats:
        """Recovered (and after how many retries), replayed and dead-lettered tasks."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(self._keys.recovery)
        pipe.hget(self._keys.outcomes, "dead_lettered")
        raw: dict[str, str]
        dead: str | None
        raw, dead = pipe.execute()
        after = {
            int(field.removeprefix("recovered_after|")): int(count)
            for field, count in raw.items()
            if field.startswith("recovered_after|")
        }
        strategies: dict[tuple[str, str], int] = {}
        for name, count in raw.items():
            if name.startswith("strategy|"):
                strategy, _, outcome = name.removeprefix("strategy|").rpartition("|")
                strategies[(strategy, outcome)] = int(count)
        return RecoveryStats(
            recovered=int(raw.get("recovered", 0)),
            recovered_after=dict(sorted(after.items())),
            replayed=int(raw.get("replayed", 0)),
            dead=int(dead or 0),
            strategies=dict(sorted(strategies.items())),
        )

    # Internals

    def _bucket_start(self, now_s: float) -> int:
        return int(now_s // self.bucket_s) * self.bucket_s

    def _window_starts(self, window_s: float, step_s: float) -> list[int]:
        """Start times of the whole steps covering the last ``window_s``, oldest first."""
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if window_s > self.horizon_s:
            raise ValueError(f"window_s ({window_s:g}) is beyond the horizon ({self.horizon_s})")
        per_step = step_s / self.bucket_s
        if step_s <= 0 or per_step != round(per_step):
            raise ValueError(f"step_s ({step_s:g}) must be a whole number of {self.bucket_s} s")
        step = int(step_s)
        current = int(self._clock.now_s() // step) * step
        steps = math.ceil(window_s / step)
        return [current - i * step for i in range(steps - 1, -1, -1)]

    def _buckets(self, starts: Iterable[int]) -> list[dict[str, int]]:
        """The counts of each bucket, in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self._keys.error_bucket(start))
        replies = cast("list[dict[str, str]]", pipe.execute())
        return [{field: int(count) for field, count in reply.items()} for reply in replies]

    def _critical_entry(self, details: ErrorDetails, now_s: float) -> str:
        error = details.error
        return json.dumps(
            {
                "at": datetime.fromtimestamp(now_s, UTC).isoformat(),
                "at_s": now_s,
                "error_type": error.error_type,
                "component": details.component,
                "operation": details.context.operation,
                "message": self._scrub.text(error.message)[:MESSAGE_LIMIT],
                "error_id": error.error_id,
            },
            separators=(",", ":"),
        )

    def _execute(self, pipe: Pipeline, event: str, **context: object) -> None:
        try:
            pipe.execute()
        except RedisError as unavailable:
            _log.warning(event, error=str(unavailable), **context)
