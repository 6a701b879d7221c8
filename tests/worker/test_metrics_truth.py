"""Issue 12, item 8: ``/metrics`` tells the truth. Each case is driven through the real code
(a ResilientTask delivered as a worker delivers it, the escalation service) on the real Redis,
then read back by parsing the exposition ``/metrics`` serves."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from resilience.context import ErrorNotificationData
from resilience.keys import KeySpace
from tasks.runtime import TradingRuntime
from worker.exporter import render_metrics
from worker.runtime import build_runtime
from worker.settings import Settings

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment the tests run in."""
    for name in list(os.environ):
        if name.upper().startswith(("ALCHEMISER_", "ALPACA_")):
            monkeypatch.delenv(name)


@pytest.fixture
def runtime(redis_url: str, keys: KeySpace) -> Iterator[TradingRuntime]:
    """A paper deployment's runtime in the test's namespace (default channels and resources)."""
    built = build_runtime(Settings(redis_url=redis_url, namespace=keys.namespace))
    yield built
    built.resilience.redis.close()


def metrics(runtime: TradingRuntime) -> Samples:
    """``/metrics`` parsed: every sample value by sample name, then by sorted labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(render_metrics(runtime).decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


# --- an unconfigured channel fails as not_configured ----------------------------------------------


def critical_failure() -> ErrorNotificationData:
    """A final failure the default policy's critical rule sends at once."""
    return {
        "severity": "critical",
        "priority": "P1",
        "title": "SecurityError in trading: tasks.submit_order",
        "error_type": "SecurityError",
        "error_id": "err-1",
        "message": "HTTP 401",
        "component": "trading",
        "operation": "tasks.submit_order",
        "task_name": "tasks.submit_order",
        "occurred_at": "2026-11-29T03:00:00+00:00",
        "dead_letter_id": "dl-1",
    }


def test_an_unconfigured_channel_is_counted_as_not_configured(runtime: TradingRuntime) -> None:
    """The default policy sends a critical alert to email, Slack and SMS, none configured:
    each is one failed delivery with reason ``not_configured`` (none is a ``client_error``),
    and the console, their fallback, delivers it."""
    service = runtime.escalation
    (first_flush,) = service.note(critical_failure())
    service.flush(**first_flush.kwargs)

    found = metrics(runtime)
    assert found["alertmanager_notifications_failed_total"] == {
        (("integration", channel), ("reason", "not_configured")): 1.0
        for channel in ("email", "slack", "sms")
    }
    assert found["alertmanager_notifications_total"] == {
        (("integration", channel),): 1.0 for channel in ("console", "email", "slack", "sms")
    }
