"""A runbook generated after a brown-out on real workers names what actually resolved it here,
with its count."""

from __future__ import annotations

import json

import pytest

from resilience.chaos import ChaosRule
from tests.integration.harness import Deployment, order_kwargs, wait_for
from tests.worker.cli_process import cli_environment, run_cli

pytestmark = pytest.mark.integration


def test_the_runbook_after_a_brown_out_names_the_retries_that_worked(
    deployment: Deployment,
) -> None:
    """Four 503s from the trading API among six orders: every order is booked once; the
    runbook of TradingClientError counts, per attempt that succeeded, the orders that failed
    first, and those counts add up to the orders that failed."""
    deployment.runtime.chaos.inject(ChaosRule("broker.submit_order", "http:503", count=4))
    deployment.start_workers(concurrency=1)
    orders = [order_kwargs("AAPL", 1) for _ in range(6)]
    for order in orders:
        deployment.submit(order)
    ids = {o["client_order_id"] for o in orders}
    wait_for(lambda: ids <= deployment.booked(), 60, "six orders booked")
    failed = {e["task_id"] for e in deployment.log_events("task_failed")}
    assert 1 <= len(failed) <= 4

    env = cli_environment(**deployment.env)
    result = run_cli("runbook", "TradingClientError", "--json", env=env)
    assert result.returncode == 0, result.stderr
    book = json.loads(result.stdout)
    assert book["occurrences"] == 4
    assert book["causes"][0]["template"] == (
        "ChaosHTTPError: HTTP <n>: chaos: injected http:<n> on broker.submit_order"
    )
    assert book["causes"][0]["count"] == 4
    retried = {r["how"]: r["count"] for r in book["resolutions"]}
    assert all(how.startswith("succeeded_at:") for how in retried)
    assert sum(retried.values()) == len(failed)
    top = book["resolutions"][0]
    assert f"{top['description']}: **{top['count']}**" in book["markdown"]
    assert top["description"].startswith("Retried; succeeded at attempt ")
    assert book["dead_letters_waiting"] == 0

    human = run_cli("runbook", "TradingClientError", env=env)
    assert human.returncode == 0, human.stderr
    # The same runbook, but for the time it was generated (its third line).
    assert human.stdout.splitlines()[3:] == book["markdown"].splitlines()[3:]
    assert human.stdout.startswith("# Runbook: TradingClientError\n")
