"""The fleet's health as operators read it, on real workers: ``alchemiser health --json``
through an injected incident, and the dashboard rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resilience.chaos import ChaosRule
from resilience.guard.status import GuardStatus
from tests.integration.harness import Deployment, order_kwargs, wait_for
from worker.cli.main import app as cli
from worker.http import ObservabilityServer
from worker.observability import build_sources

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def health(deployment: Deployment) -> tuple[int, dict[str, object]]:
    """``alchemiser health --json`` for the deployment: exit code and document."""
    result = CliRunner().invoke(cli, ["health", "--json"], env=deployment.env)
    return result.exit_code, json.loads(result.stdout)


def test_health_goes_healthy_critical_healthy_through_an_incident(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """Healthy (exit 0); an order refused as a SecurityError (critical, dead-lettered) makes the
    fleet critical (exit 2) with the reason; 16 minutes later on the fleet's clock (the chaos
    drill), with no new failure, it is healthy again (exit 0) and the dead letter still waits
    for an operator."""
    deployment = deployment_factory()
    deployment.start_workers(concurrency=2)
    code, before = health(deployment)
    assert (code, before["status"]) == (0, "healthy")

    deployment.runtime.chaos.inject(ChaosRule("broker.submit_order", "SecurityError", count=1))
    deployment.dead_letter(deployment.submit(order_kwargs("TSLA", 1)), 60)
    wait_for(lambda: health(deployment)[0] == 2, 30, "the fleet to turn critical")
    code, during = health(deployment)
    assert (code, during["status"]) == (2, "critical")
    assert "1 critical error(s) in the last 5 min" in during["reasons"]
    assert "1 task(s) dead-lettered in the last 15 min" in during["reasons"]
    assert during["error_counts"] == {"SecurityError:trading": 1}
    assert any("Credentials are refused" in advice for advice in during["recommendations"])

    deployment.runtime.chaos.shift_clock(16 * 60)
    code, after = health(deployment)
    assert (code, after["status"], after["reasons"]) == (0, "healthy", [])
    assert after["dlq"] == {"awaiting": 1, "recent": 0}


@pytest.fixture
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("the dashboard test needs Debian's chromium package (apt-get install chromium)")
    return found


@pytest.fixture
def served(deployment_factory: Callable[..., Deployment]) -> Iterator[tuple[Deployment, str]]:
    deployment = deployment_factory(ALCHEMISER_RESOURCES="{}")  # the default breakers
    server = ObservabilityServer(build_sources(deployment.settings)).start()
    yield deployment, server.url
    server.stop()


def test_the_dashboard_renders_in_headless_chromium_and_shows_the_opened_breaker(
    served: tuple[Deployment, str], chromium: str
) -> None:
    """An operator isolates broker.orders (`breaker open`); the dashboard, rendered by
    Chromium with its script run, shows the fleet critical and that breaker forced open, and a
    screenshot is kept in test-artifacts/."""
    deployment, url = served
    settings = deployment.settings
    GuardStatus(
        deployment.redis, deployment.runtime.resilience.keys, settings.resource_configs
    ).force_open("broker.orders")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    wait = "--virtual-time-budget=5000"  # lets the page fetch /api/dashboard and draw it
    dom = subprocess.run(
        [*common, wait, "--dump-dom", f"{url}/"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert 'id="status">critical<' in dom
    assert '<td>broker.orders</td><td class="state-forced_open">forced_open</td>' in dom
    assert "breaker broker.orders forced open by an operator" in dom
    assert 'id="chart-line"' in dom
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    screenshot.unlink(missing_ok=True)
    subprocess.run(
        [*common, wait, "--window-size=1280,900", f"--screenshot={screenshot}", f"{url}/"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000  # a drawn page, not a blank one
