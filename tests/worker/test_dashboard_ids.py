"""Alert ids in the health report, ``/api/dashboard`` and the dashboard page: under ``id``, as in
``alerts list --json``; the page reads that key (rendered by headless Chromium when installed)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests

from resilience.notify.alert_store import AlertState
from resilience.observability.health import HealthReport, HealthStatus
from tests.worker.test_http import report
from worker.http import ObservabilityServer, Sources

ALERT = AlertState(
    alert_id="d018643d8ea4",
    group="MarketDataError:trading",
    rule="high",
    status="firing",
    severity="high",
    count=3,
    opened_at_s=1764514800.0,
    level=0,
)


def with_alert() -> HealthReport:
    """A healthy report with one open alert."""
    return replace(report(HealthStatus.HEALTHY), active_alerts=(ALERT,))


@pytest.fixture
def url() -> Iterator[str]:
    """An HTTP face whose health report has one open alert."""

    def dashboard(_: HealthReport) -> dict[str, Any]:
        return {"series": [], "limits": []}

    sources = Sources(health=with_alert, metrics=lambda: b"", dashboard=dashboard)
    server = ObservabilityServer(sources).start()
    yield server.url
    server.stop()


def test_the_reports_alerts_carry_their_id_under_id() -> None:
    """`health --json`, /health and /api/dashboard rows: `id`, no `alert_id`."""
    [row] = with_alert().to_dict()["active_alerts"]
    assert row == {
        "id": "d018643d8ea4",
        "group": "MarketDataError:trading",
        "rule": "high",
        "status": "firing",
        "severity": "high",
        "count": 3,
        "opened_at_s": 1764514800.0,
        "level": 0,
        "next_flush_at_s": None,
    }


def test_api_dashboard_names_alert_ids_id(url: str) -> None:
    """/api/dashboard's open alerts carry `id` and the page reads `a.id`, never `alert_id`."""
    data = requests.get(f"{url}/api/dashboard", timeout=5).json()
    assert [a["id"] for a in data["health"]["active_alerts"]] == ["d018643d8ea4"]
    page = requests.get(f"{url}/", timeout=5).text
    assert "alert_id" not in page
    assert "<th>id</th><th>group</th><th>severity</th><th>status</th><th>count</th>" in page


def test_the_page_shows_the_alerts_id_in_chromium(url: str) -> None:
    """Rendered with its script run, the alerts table's first cell is the alert's id."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Debian's chromium package (apt-get install chromium)")
    wait = "--virtual-time-budget=5000"  # lets the page fetch /api/dashboard and draw it
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", wait, "--dump-dom", f"{url}/"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "<td>d018643d8ea4</td><td>MarketDataError:trading</td><td>high</td>" in dom
