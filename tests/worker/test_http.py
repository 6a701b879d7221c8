"""The HTTP face (worker.http): /health for load balancers, /metrics, the dashboard's data
and page; answers from scripted sources over a real socket."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from resilience.guard.status import BreakerState, BreakerStatus
from resilience.observability.health import HealthCheck, HealthReport, HealthStatus
from worker.http import PROMETHEUS_CONTENT_TYPE, ObservabilityServer, Sources


def report(status: HealthStatus) -> HealthReport:
    return HealthReport(
        status=status,
        checked_at="2026-11-30T15:00:00+00:00",
        checks=(HealthCheck("breaker:broker.orders", status, "breaker broker.orders open"),),
        summary={"error_rate_per_min": 0.0, "critical_errors": 0},
        breakers=(BreakerStatus("broker.orders", BreakerState.OPEN, 75.0, 0, 20, None, 2, 0, 1),),
        dlq={"awaiting": 0, "recent": 0},
        recovery={"recovered": 0, "dead": 0, "failure_rate": 0.0},
        error_counts={},
        active_alerts=(),
    )


class Scripted:
    def __init__(self) -> None:
        self.status = HealthStatus.HEALTHY
        self.fail = False

    def health(self) -> HealthReport:
        if self.fail:
            raise ConnectionError("redis://:hunter2@10.0.0.1:6379 refused")
        return report(self.status)

    def metrics(self) -> bytes:
        return b"alchemiser_dlq_depth 3\n"

    def dashboard(self, health: HealthReport) -> dict[str, Any]:
        return {"series": [[1764514800.0, 2], [1764514860.0, 0]], "limits": []}


@pytest.fixture
def scripted() -> Scripted:
    return Scripted()


@pytest.fixture
def server(scripted: Scripted) -> Iterator[ObservabilityServer]:
    sources = Sources(
        health=scripted.health, metrics=scripted.metrics, dashboard=scripted.dashboard
    )
    running = ObservabilityServer(sources).start()
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("status", "code"),
    [(HealthStatus.HEALTHY, 200), (HealthStatus.WARNING, 200), (HealthStatus.CRITICAL, 503)],
)
def test_health_is_json_and_critical_is_503_for_load_balancers(
    server: ObservabilityServer, scripted: Scripted, status: HealthStatus, code: int
) -> None:
    scripted.status = status
    answer = requests.get(f"{server.url}/health", timeout=5)
    assert answer.status_code == code
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"
    document = answer.json()
    assert document["status"] == status.value
    assert document["breakers"][0]["state"] == "open"


def test_metrics_in_prometheus_text_format(server: ObservabilityServer) -> None:
    answer = requests.get(f"{server.url}/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == PROMETHEUS_CONTENT_TYPE
    assert answer.text == "alchemiser_dlq_depth 3\n"


def test_the_dashboard_page_and_its_data(server: ObservabilityServer) -> None:
    page = requests.get(f"{server.url}/", timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "/api/dashboard" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")  # no outside assets
    data = requests.get(f"{server.url}/api/dashboard?t=1", timeout=5).json()
    assert data["health"]["status"] == "healthy"
    assert data["series"] == [[1764514800.0, 2], [1764514860.0, 0]]


def test_a_failing_source_is_a_503_that_names_no_url(
    server: ObservabilityServer, scripted: Scripted
) -> None:
    scripted.fail = True
    answer = requests.get(f"{server.url}/health", timeout=5)
    assert answer.status_code == 503
    assert answer.json() == {"status": "unknown", "error": "ConnectionError"}
    assert "hunter2" not in answer.text
    assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 200  # still serving


def test_unknown_paths_are_404(server: ObservabilityServer) -> None:
    answer = requests.get(f"{server.url}/admin", timeout=5)
    assert (answer.status_code, answer.text) == (404, "not found\n")
    assert json.loads(requests.get(f"{server.url}/health", timeout=5).text)["status"]


def _idle_connections(server: ObservabilityServer, count: int) -> list[socket.socket]:
    host, port = server.url.removeprefix("http://").split(":")
    return [socket.create_connection((host, int(port)), timeout=5) for _ in range(count)]


def _until_ok(url: str, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    status = 0
    while time.monotonic() < deadline:
        status = requests.get(url, timeout=5).status_code
        if status == 200:
            break
        time.sleep(0.05)
    return status


def _server(scripted: Scripted, **limits: Any) -> ObservabilityServer:
    sources = Sources(
        health=scripted.health, metrics=scripted.metrics, dashboard=scripted.dashboard
    )
    return ObservabilityServer(sources, **limits).start()


def test_idle_connections_cannot_take_every_thread(scripted: Scripted) -> None:
    """50 idle connections against a cap of 8: at most 8 threads serve, a new request is told
    503 at once, and /health answers 200 again as soon as the idle clients go."""
    baseline = threading.active_count()
    running = _server(scripted, read_timeout_s=30.0, max_connections=8)
    idle = _idle_connections(running, 50)
    try:
        busy = requests.get(f"{running.url}/health", timeout=5)
        assert (busy.status_code, busy.text) == (503, "busy\n")
        assert threading.active_count() <= baseline + 1 + 8
    finally:
        for connection in idle:
            connection.close()
    try:
        assert _until_ok(f"{running.url}/health", 10) == 200
    finally:
        running.stop()


def test_a_connection_that_sends_nothing_is_closed_after_the_read_timeout(
    scripted: Scripted,
) -> None:
    """With one slot held by a silent client, /health is 503 busy; the server closes the silent
    connection after its read timeout and serves again, without a restart."""
    running = _server(scripted, read_timeout_s=2.0, max_connections=1)
    (silent,) = _idle_connections(running, 1)
    try:
        assert requests.get(f"{running.url}/health", timeout=5).status_code == 503
        assert _until_ok(f"{running.url}/health", 15) == 200
        silent.settimeout(5)
        assert silent.recv(1) == b""  # closed by the server
    finally:
        silent.close()
        running.stop()


def test_a_failing_source_is_logged_once_a_minute_not_per_request(
    scripted: Scripted, server: ObservabilityServer, capfd: pytest.CaptureFixture[str]
) -> None:
    """Twenty failed probes of /health while Redis is down: one log line."""
    scripted.fail = True
    for _ in range(20):
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 503
    # capfd: the structured log writes to the process's own stderr, not sys.stderr.
    captured = capfd.readouterr()
    assert (captured.out + captured.err).count("http_request_failed") == 1
