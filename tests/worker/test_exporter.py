"""Tests of ``worker.exporter``: the fleet's metrics, read from Redis, in Prometheus' format."""

from __future__ import annotations

import os
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from resilience.errors import InsufficientFundsError, SecurityError, TradingClientError
from resilience.guard.admission import Outcome
from resilience.guard.status import GuardStatus
from resilience.notify.channel import Delivery, FailureReason
from resilience.notify.escalator import DeliveryStats
from resilience.policy.context import ErrorContext
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
from tasks.runtime import TradingRuntime
from tests.builders import dead_order
from worker.exporter import render_metrics
from worker.runtime import build_runtime
from worker.settings import Settings

ORDER = ErrorContext(operation="tasks.submit_order", component="trading")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment the tests run in."""
    for name in list(os.environ):
        if name.upper().startswith(("ALCHEMISER_", "ALPACA_")):
            monkeypatch.delenv(name)


@pytest.fixture
def runtime(redis_url: str, keys: KeySpace) -> Iterator[TradingRuntime]:
    """A paper deployment's runtime in the test's namespace, on a manual clock."""
    built = build_runtime(
        Settings(redis_url=redis_url, namespace=keys.namespace), clock=ManualClock()
    )
    yield built
    # Late successes settled before the namespace is deleted, not after by the settler.
    assert built.resilience.guard is not None
    built.resilience.guard.flush()


def samples(text: bytes) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def picked(all_samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named ``name``, by labels."""
    return {labels: value for (n, labels), value in all_samples.items() if n == name}


def populate(runtime: TradingRuntime) -> None:
    """What a small fleet would have written: outcomes, errors, recoveries, dead letters,
    guard decisions and notification deliveries."""
    resilience = runtime.resilience
    outcomes = resilience.outcomes
    for outcome, task, times in (
        ("retried", "tasks.submit_order", 3),
        ("retried", "tasks.fetch_quote", 1),
        ("deferred", "tasks.submit_order", 2),
        ("recovered", "tasks.submit_order", 2),
        ("dead_lettered", "tasks.submit_order", 2),
    ):
        for _ in range(times):
            outcomes.incr(outcome, task)
    handler = resilience.handler
    for error, times in ((TradingClientError("503"), 3), (InsufficientFundsError("cash"), 1)):
        for _ in range(times):
            handler.handle_error(error, ORDER, "trading")
    handler.handle_error(SecurityError("bad key"), ORDER, "trading")
    assert resilience.metrics is not None
    resilience.metrics.record_recovered(1)
    resilience.metrics.record_recovered(3)
    resilience.metrics.record_replayed()
    store = resilience.dead_letters
    store.add(dead_order("dl-1"))
    store.add(dead_order("dl-2"))
    store.transition("dl-2", expected="dead", new="replaying", actor="op", action="replay_claim")
    guard = resilience.guard
    assert guard is not None
    admission = guard.admit(("broker.orders",), ticket="t-1")
    guard.record(admission, Outcome.FAILED, duration_s=0.1)
    GuardStatus(resilience.redis, resilience.keys, guard.resources).force_open("broker.data")
    assert not guard.admit(("broker.data",), ticket="t-2").admitted
    DeliveryStats(resilience.redis, resilience.keys).record(
        (
            Delivery.ok("console", 0.02),
            Delivery.failed("slack", FailureReason.TIMEOUT, "ReadTimeout", 5.0),
            Delivery.ok("console", 0.3),
        )
    )
    DeliveryStats(resilience.redis, resilience.keys).record((), suppressed="rate_limited")


def test_task_outcomes_by_task_name(runtime: TradingRuntime) -> None:
    """celery-exporter style counters per task name, from the fleet's outcome counters."""
    populate(runtime)
    found = samples(render_metrics(runtime))
    assert picked(found, "alchemiser_task_retried_total") == {
        (("name", "tasks.fetch_quote"),): 1.0,
        (("name", "tasks.submit_order"),): 3.0,
    }
    assert picked(found, "alchemiser_task_deferred_total") == {
        (("name", "tasks.submit_order"),): 2.0
    }
    assert picked(found, "alchemiser_task_recovered_total") == {
        (("name", "tasks.submit_order"),): 2.0
    }
    assert picked(found, "alchemiser_task_dead_lettered_total") == {
        (("name", "tasks.submit_order"),): 2.0
    }
    assert picked(found, "alchemiser_task_duplicate_avoided_total") == {}
    assert picked(found, "alchemiser_task_recovered_after_retries_total") == {
        (("retries", "1"),): 1.0,
        (("retries", "3"),): 1.0,
    }
    assert picked(found, "alchemiser_task_replayed_total") == {(): 1.0}


def test_errors_by_type_component_and_severity(runtime: TradingRuntime) -> None:
    """Every handled error, labelled as the error metrics count it."""
    populate(runtime)
    errors = picked(samples(render_metrics(runtime)), "alchemiser_errors_total")
    assert {tuple(value for _, value in labels): count for labels, count in errors.items()} == {
        ("trading", "InsufficientFundsError", "high"): 1.0,
        ("trading", "SecurityError", "critical"): 1.0,
        ("trading", "TradingClientError", "high"): 3.0,
    }
    assert all(
        [name for name, _ in labels] == ["component", "error_type", "severity"] for labels in errors
    )


def test_dead_letter_depth_counts_only_entries_waiting(runtime: TradingRuntime) -> None:
    """The depth is the entries still dead (a replay being claimed is not waiting)."""
    populate(runtime)
    found = samples(render_metrics(runtime))
    assert picked(found, "alchemiser_dlq_depth") == {(): 1.0}
    assert picked(found, "alchemiser_dlq_evicted_total") == {(): 0.0}


def test_breaker_state_enum_failure_ratio_and_limiter_decisions(runtime: TradingRuntime) -> None:
    """One state set to 1 per breaker (the others 0), the failure rate as a ratio, admissions
    and refusals by reason."""
    populate(runtime)
    found = samples(render_metrics(runtime))
    states = picked(found, "alchemiser_breaker_state")
    assert {labels for labels, value in states.items() if value == 1.0} == {
        (("resource", "broker.data"), ("state", "forced_open")),
        (("resource", "broker.orders"), ("state", "closed")),
    }
    assert len(states) == 2 * 5
    assert picked(found, "alchemiser_breaker_failure_ratio") == {
        (("resource", "broker.data"),): 0.0,
        (("resource", "broker.orders"),): 1.0,
    }
    assert picked(found, "alchemiser_breaker_calls") == {
        (("resource", "broker.data"),): 0.0,
        (("resource", "broker.orders"),): 1.0,
    }
    assert picked(found, "alchemiser_limiter_admitted_total") == {
        (("resource", "broker.data"),): 0.0,
        (("resource", "broker.orders"),): 1.0,
    }
    assert picked(found, "alchemiser_limiter_refused_total") == {
        (("reason", "breaker forced open"), ("resource", "broker.data")): 1.0,
    }


def test_notifications_under_alertmanager_names(runtime: TradingRuntime) -> None:
    """Deliveries, failures by reason, suppressions and the latency histogram per channel."""
    populate(runtime)
    found = samples(render_metrics(runtime))
    assert picked(found, "alertmanager_notifications_total") == {
        (("integration", "console"),): 2.0,
        (("integration", "slack"),): 1.0,
    }
    assert picked(found, "alertmanager_notifications_failed_total") == {
        (("integration", "slack"), ("reason", "timeout")): 1.0
    }
    assert picked(found, "alertmanager_notifications_suppressed_total") == {
        (("reason", "rate_limited"),): 1.0
    }
    buckets = picked(found, "alertmanager_notification_latency_seconds_bucket")
    console = {
        dict(labels)["le"]: value
        for labels, value in buckets.items()
        if dict(labels)["integration"] == "console"
    }
    assert console == {
        "0.05": 1.0, "0.1": 1.0, "0.25": 1.0, "0.5": 2.0, "1": 2.0, "2.5": 2.0, "5": 2.0,
        "10": 2.0, "30": 2.0, "+Inf": 2.0,
    }  # fmt: skip
    assert picked(found, "alertmanager_notification_latency_seconds_count") == {
        (("integration", "console"),): 2.0,
        (("integration", "slack"),): 1.0,
    }
    assert picked(found, "alertmanager_notification_latency_seconds_sum") == {
        (("integration", "console"),): pytest.approx(0.32),
        (("integration", "slack"),): 5.0,
    }


def test_only_fleet_metrics_no_process_metrics(runtime: TradingRuntime) -> None:
    """A private registry: no per-process series (GC, CPU) that would differ between
    processes, and two renders of the same state are byte-identical."""
    populate(runtime)
    text = render_metrics(runtime)
    names = {family.name for family in text_string_to_metric_families(text.decode())}
    assert all(name.startswith(("alchemiser_", "alertmanager_")) for name in names)
    assert render_metrics(runtime) == text


def test_served_over_http(runtime: TradingRuntime) -> None:
    """Served by a plain HTTP server, the exposition parses with Prometheus' parser."""
    populate(runtime)

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = render_metrics(runtime)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics") as reply:
            body = reply.read()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert samples(body) == samples(render_metrics(runtime))
    assert samples(body)[("alchemiser_dlq_depth", ())] == 1.0
