"""Prometheus metrics of the whole fleet, read from Redis at scrape time.

Nothing is counted in this process: every figure is read from the fleet-wide keys the workers
write (task outcomes, error metrics, dead letters, guards, notification deliveries), so any
process that serves ``/metrics`` answers the same. Names follow celery-exporter's for tasks
(``*_total{name}``) and Alertmanager's for notifications (``alertmanager_notifications_*``);
docs/OPERATIONS.md ("Metrics") lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from resilience.guard.status import BreakerState, GuardStatus
from resilience.notify.escalator import DeliveryStats
from resilience.observability.held_messages import HeldMessages
from resilience.task import ResilienceRuntime
from tasks.runtime import TradingRuntime

__all__ = ["FleetCollector", "render_metrics"]

# OutcomeCounter's outcomes, each as a counter labelled by task name.
_TASK_OUTCOMES = {
    "retried": "Failed attempts that were retried.",
    "deferred": "Runs deferred (breaker open, limit reached, market closed) without spending "
    "an attempt.",
    "recovered": "Tasks that succeeded after failing (or after a redelivery).",
    "dead_lettered": "Tasks written to the dead-letter store.",
    "duplicate_avoided": "Orders found already placed at the broker instead of sent again.",
}


class FleetCollector(Collector):
    """Yields the fleet's metrics from Redis on every collect (no state of its own)."""

    def __init__(
        self, runtime: ResilienceRuntime, held: Callable[[], HeldMessages] | None = None
    ) -> None:
        self._runtime = runtime
        self._held = held

    def collect(self) -> Iterator[Metric]:
        """Every metric family, label values sorted so every process renders alike."""
        yield from self._tasks()
        yield from self._errors()
        yield from self._dead_letters()
        yield from self._guards()
        yield from self._notifications()
        yield from self._held_messages()

    def _held_messages(self) -> Iterator[Metric]:
        if self._held is None:  # not a Redis broker: nothing is held past a lost consumer
            return
        held = self._held()
        yield GaugeMetricFamily(
            "alchemiser_broker_unacked_messages",
            "Messages workers hold unacknowledged on the Redis broker.",
            value=held.held,
        )
        yield GaugeMetricFamily(
            "alchemiser_broker_unacked_past_visibility_messages",
            "Unacknowledged messages whose worker stopped renewing them for longer than the"
            " visibility timeout (a dead worker's, waiting for a restore sweep).",
            value=held.past_timeout,
        )
        yield GaugeMetricFamily(
            "alchemiser_broker_unacked_oldest_lease_age_seconds",
            "Seconds since the oldest unacknowledged message's lease was renewed.",
            value=held.oldest_lease_age_s,
        )

    def _tasks(self) -> Iterator[Metric]:
        per_task: dict[str, dict[str, int]] = {outcome: {} for outcome in _TASK_OUTCOMES}
        for field, count in self._runtime.outcomes.totals().items():
            # "<outcome>" alone is the all-tasks total: the labelled series add up to it.
            outcome, sep, task = field.partition(":")
            if sep and outcome in per_task:
                per_task[outcome][task] = count
        for outcome, documentation in _TASK_OUTCOMES.items():
            family = CounterMetricFamily(
                f"alchemiser_task_{outcome}", documentation, labels=["name"]
            )
            for task, count in sorted(per_task[outcome].items()):
                family.add_metric([task], count)
            yield family

    def _errors(self) -> Iterator[Metric]:
        metrics = self._runtime.metrics
        if metrics is None:
            return
        errors = CounterMetricFamily(
            "alchemiser_errors",
            "Handled errors (every failed attempt, every dead letter) by error type, component"
            " and severity.",
            labels=["error_type", "component", "severity"],
        )
        for labels, count in sorted(metrics.error_counts_by_severity().items()):
            errors.add_metric(list(labels), count)
        yield errors
        stats = metrics.recovery()
        after = CounterMetricFamily(
            "alchemiser_task_recovered_after_retries",
            "Tasks that recovered, by the number of failed attempts before the one that succeeded.",
            labels=["retries"],
        )
        for retries, count in stats.recovered_after.items():
            after.add_metric([str(retries)], count)
        yield after
        strategies = CounterMetricFamily(
            "alchemiser_recovery_results",
            "Recovery strategies' results on failed attempts, by strategy and outcome"
            " (recovered, gave_up, not_applicable).",
            labels=["strategy", "outcome"],
        )
        for (strategy, outcome), count in stats.strategies.items():
            strategies.add_metric([strategy, outcome], count)
        yield strategies
        yield CounterMetricFamily(
            "alchemiser_task_replayed",
            "Dead letters replayed (first deliveries of replays).",
            value=stats.replayed,
        )

    def _dead_letters(self) -> Iterator[Metric]:
        runtime = self._runtime
        statuses = cast("list[str]", runtime.redis.hvals(runtime.keys.dlq_status))
        yield GaugeMetricFamily(
            "alchemiser_dlq_depth",
            "Dead letters waiting for an operator (status dead).",
            value=statuses.count("dead"),
        )
        yield CounterMetricFamily(
            "alchemiser_dlq_evicted",
            "Dead letters dropped by the store's bounds (max entries, retention).",
            value=runtime.dead_letters.evicted_total(),
        )

    def _guards(self) -> Iterator[Metric]:
        runtime = self._runtime
        if runtime.guard is None:
            return
        status = GuardStatus(runtime.redis, runtime.keys, runtime.guard.resources)
        state = GaugeMetricFamily(
            "alchemiser_breaker_state",
            "The breaker's state: 1 for the current one, 0 for the others.",
            labels=["resource", "state"],
        )
        ratio = GaugeMetricFamily(
            "alchemiser_breaker_failure_ratio",
            "Failed calls among the calls in the breaker's window (0 to 1).",
            labels=["resource"],
        )
        calls = GaugeMetricFamily(
            "alchemiser_breaker_calls",
            "Calls recorded in the breaker's window.",
            labels=["resource"],
        )
        for breaker in status.breakers():
            for candidate in BreakerState:
                state.add_metric(
                    [breaker.name, candidate.value], 1 if breaker.state is candidate else 0
                )
            ratio.add_metric([breaker.name], breaker.failure_rate / 100)
            calls.add_metric([breaker.name], breaker.calls)
        yield from (state, ratio, calls)
        admitted = CounterMetricFamily(
            "alchemiser_limiter_admitted",
            "Runs admitted by the resource's guards (decided in Redis).",
            labels=["resource"],
        )
        refused = CounterMetricFamily(
            "alchemiser_limiter_refused",
            "Runs refused by the resource's guards, by reason (decided in Redis).",
            labels=["resource", "reason"],
        )
        without_redis = CounterMetricFamily(
            "alchemiser_limiter_without_redis",
            "Decisions workers took by fail mode while Redis was unreachable.",
            labels=["resource", "decision"],
        )
        for limit in status.limits():
            admitted.add_metric([limit.name], limit.admitted)
            for reason, count in limit.refused.items():
                refused.add_metric([limit.name, reason], count)
            for decision, count in limit.without_redis.items():
                without_redis.add_metric([limit.name, decision], count)
        yield from (admitted, refused, without_redis)

    def _notifications(self) -> Iterator[Metric]:
        runtime = self._runtime
        stats = DeliveryStats(runtime.redis, runtime.keys).snapshot()
        sent = CounterMetricFamily(
            "alertmanager_notifications",
            "Notifications sent (delivery attempts), by channel.",
            labels=["integration"],
        )
        failed = CounterMetricFamily(
            "alertmanager_notifications_failed",
            "Notification deliveries that failed, by channel and reason.",
            labels=["integration", "reason"],
        )
        suppressed = CounterMetricFamily(
            "alertmanager_notifications_suppressed",
            "Notifications held back, by reason.",
            labels=["reason"],
        )
        families = {
            "notifications_total": sent,
            "notifications_failed_total": failed,
            "notifications_suppressed_total": suppressed,
        }
        latency: dict[str, dict[str, float]] = {}
        for field, value in sorted(stats.items()):
            name, *labels = field.split("|")
            if name in families:
                families[name].add_metric(labels, value)
            elif name.startswith("notification_latency_seconds_"):
                part = name.removeprefix("notification_latency_seconds_")
                channel, *le = labels
                latency.setdefault(channel, {})["|".join([part, *le])] = value
        yield from families.values()
        yield _latency_histogram(latency)


def _latency_histogram(latency: Mapping[str, Mapping[str, float]]) -> Metric:
    """DeliveryStats' ``bucket|<le>``, ``sum`` and ``count`` fields per channel, as one
    histogram (its buckets are cumulative already)."""
    histogram = HistogramMetricFamily(
        "alertmanager_notification_latency_seconds",
        "Time a notification delivery took, by channel.",
        labels=["integration"],
    )
    for channel, parts in sorted(latency.items()):
        buckets = sorted(
            (
                (key.removeprefix("bucket|"), count)
                for key, count in parts.items()
                if key.startswith("bucket|")
            ),
            key=lambda bucket: float(bucket[0]),  # float("+Inf") sorts last
        )
        histogram.add_metric([channel], buckets, sum_value=parts.get("sum", 0.0))
    return histogram


def render_metrics(
    runtime: TradingRuntime, held: Callable[[], HeldMessages] | None = None
) -> bytes:
    """The fleet's metrics in Prometheus' text exposition format (what ``/metrics`` serves);
    with ``held``, the Redis broker's unacknowledged messages too."""
    # A private registry: the global one would add this process's own metrics (GC, process),
    # which differ from one process to the next.
    registry = CollectorRegistry()
    registry.register(FleetCollector(runtime.resilience, held))
    return generate_latest(registry)
