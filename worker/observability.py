"""Wiring of what operators read: the health monitor, and the sources of the HTTP face
(``/health``, ``/metrics``, the dashboard). Used by ``alchemiser health`` and ``alchemiser
serve``; everything is read from Redis, so any process answers for the whole fleet.

Windows (errors in the last 5 minutes, dead letters in the last 15) are taken on the fleet's
clock (:class:`~resilience.storage.server_clock.ServerClock`: Redis time plus the chaos drill's
shift), so every host agrees and ``alchemiser chaos clock`` ages an incident out as it ages alerts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis

from resilience.deadletter.store import DeadLetterStore
from resilience.guard.status import GuardStatus
from resilience.notify.alert_store import AlertStore
from resilience.observability.health import HealthCheck, HealthMonitor, HealthReport
from resilience.observability.held_messages import held_messages_check
from resilience.observability.metrics import ErrorMetrics
from resilience.scrub import Scrubber
from resilience.storage.epoch import EpochStore
from resilience.storage.keys import KeySpace
from resilience.storage.server_clock import ServerClock
from tasks.spec import SPEC
from worker.exporter import render_metrics
from worker.held_messages import HeldMessageReader, held_message_reader
from worker.http import Sources
from worker.runtime import build_runtime
from worker.settings import Settings
from worker.transport import restore_sweep_s

__all__ = ["DASHBOARD_WINDOW_S", "build_health_monitor", "build_sources"]

# The dashboard's chart: errors per minute over the last hour.
DASHBOARD_WINDOW_S = 3600.0
DASHBOARD_STEP_S = 60.0


@dataclass(frozen=True, slots=True)
class _FleetReaders:
    """What the health report and the HTTP face read, all on the fleet's clock."""

    clock: ServerClock
    metrics: ErrorMetrics
    guard_status: GuardStatus
    held: HeldMessageReader | None


def _readers(settings: Settings, client: Redis, keys: KeySpace) -> _FleetReaders:
    clock = ServerClock(client, keys)
    return _FleetReaders(
        clock=clock,
        metrics=ErrorMetrics(client, keys, clock, scrubber=Scrubber(settings.secret_values())),
        guard_status=GuardStatus(client, keys, settings.resource_configs),
        held=held_message_reader(settings, keys),
    )


def _held_checks(
    settings: Settings, held: HeldMessageReader | None
) -> tuple[Callable[[], HealthCheck], ...]:
    if held is None:
        return ()
    # Three sweeps missed: no running worker is sweeping (each sweeps every restore_sweep_s).
    timeout_s = settings.visibility_timeout_s
    critical_after_s = timeout_s + 3 * restore_sweep_s(timeout_s)
    return (lambda: held_messages_check(held.read(), critical_after_s=critical_after_s),)


def _health_monitor(
    settings: Settings, client: Redis, keys: KeySpace, readers: _FleetReaders
) -> HealthMonitor:
    return HealthMonitor(
        readers.metrics,
        readers.guard_status,
        DeadLetterStore(
            client, keys, max_entries=settings.dlq_max_entries, retention_s=settings.dlq_retention_s
        ),
        AlertStore(client, keys, settings.grouping_timing, server_clock=readers.clock),
        epochs=EpochStore(client, keys, readers.clock),
        clock=readers.clock,
        thresholds=settings.alert_thresholds_config.static,
        extra_checks=_held_checks(settings, readers.held),
        advice=SPEC.advice,
    )


def build_health_monitor(settings: Settings, client: Redis, keys: KeySpace) -> HealthMonitor:
    """The health monitor of the deployment ``settings`` describe."""
    return _health_monitor(settings, client, keys, _readers(settings, client, keys))


def build_sources(settings: Settings) -> Sources:
    """The HTTP face's sources for the deployment ``settings`` describe."""
    runtime = build_runtime(settings)
    client, keys = runtime.resilience.redis, runtime.resilience.keys
    readers = _readers(settings, client, keys)
    monitor = _health_monitor(settings, client, keys, readers)

    def dashboard(_: HealthReport) -> dict[str, Any]:
        return {
            "series": readers.metrics.series(DASHBOARD_WINDOW_S, DASHBOARD_STEP_S),
            "limits": [limit.to_dict() for limit in readers.guard_status.limits()],
        }

    return Sources(
        health=monitor.report,
        metrics=lambda: render_metrics(runtime, readers.held.read if readers.held else None),
        dashboard=dashboard,
    )
