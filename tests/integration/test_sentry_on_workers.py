"""Sentry on real workers: a local HTTP server is the DSN's endpoint; its envelopes decoded."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience.chaos import ChaosRule
from tests.fakes.sentry_receiver import SentryReceiver
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration

SECRET = "Zr7QpL2xVn9TkB4mWc8HsD3y"  # the deployment's Alpaca secret key
UNFUNDED, INVALID, UNAVAILABLE = 20, 20, 10
# The orders' breaker stays on (none of these failures counts against it: its state is a tag);
# the retry budget is off so that every provider task spends all its attempts.
RESOURCES = json.dumps(
    {
        "broker.orders": {"retry_budget": False},
        "broker.data": {"breaker": False, "retry_budget": False},
    }
)


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    with SentryReceiver() as started:
        yield started


def test_fifty_failures_of_three_kinds_are_three_issues_and_leak_no_secret(
    deployment_factory: Callable[..., Deployment], receiver: SentryReceiver
) -> None:
    """50 dead letters of 3 kinds (never retried: unfunded orders and invalid payloads;
    retried until spent: a data provider answering 503) are 50 events with exactly 3
    fingerprints, none for the retries; the planted secret is in no envelope."""
    deployment: Deployment = deployment_factory(
        SENTRY_DSN=receiver.dsn(), ALPACA_SECRET_KEY=SECRET, ALCHEMISER_RESOURCES=RESOURCES
    )
    deployment.runtime.chaos.inject(
        ChaosRule("broker.get_quote", "http:503", message=f"upstream said token {SECRET}")
    )
    started = time.monotonic()
    deployment.start_workers(concurrency=4)
    task_ids: list[str] = []
    for _ in range(UNFUNDED):
        task_ids.append(deployment.submit(order_kwargs("NVDA", 1_000_000)))
    for _ in range(INVALID):
        task_ids.append(deployment.submit(order_kwargs(api_key=SECRET, note=f"key {SECRET}")))
    for _ in range(UNAVAILABLE):
        task_ids.append(
            str(deployment.app.send_task("tasks.fetch_quote", kwargs={"symbol": "AAPL"}).id)
        )
    store = deployment.runtime.resilience.dead_letters
    total = UNFUNDED + INVALID + UNAVAILABLE
    wait_for(lambda: len(store.entries()) == total, 30, f"{total} dead letters")
    wait_for(lambda: len(receiver.events()) >= total, 15, f"{total} Sentry events")
    time.sleep(1.0)  # a late duplicate (a retry's or a re-raise's event) would arrive by now

    events = receiver.events()
    assert len(events) == total == len(store.entries())
    fingerprints = Counter(tuple(event["fingerprint"]) for event in events)
    assert fingerprints == {
        ("InsufficientFundsError", "trading", "tasks.submit_order"): UNFUNDED,
        ("ValidationError", "trading", "tasks.submit_order"): INVALID,
        ("MarketDataError", "market_data", "tasks.fetch_quote"): UNAVAILABLE,
    }
    dead_letter_ids = {event["contexts"]["dead_letter"]["dead_letter_id"] for event in events}
    assert dead_letter_ids == set(task_ids)
    assert {event["tags"]["kind"] for event in events} == {"final_failure"}

    # The provider's tasks were retried (3 times each) and no retry made an event.
    assert deployment.runtime.resilience.outcomes.totals()["retried"] == 3 * UNAVAILABLE
    unavailable = [e for e in events if e["tags"]["error_type"] == "MarketDataError"]
    assert {e["tags"]["retry_count"] for e in unavailable} == {"3"}
    assert all(e["tags"]["recoverable"] == "true" for e in unavailable)
    unfunded = next(e for e in events if e["tags"]["error_type"] == "InsufficientFundsError")
    _assert_labelled(unfunded)

    bodies = [envelope.body for envelope in receiver.envelopes()]
    assert all(SECRET.encode() not in body for body in bodies)
    # It did reach them: in the kwargs (frame variables) and the provider's message.
    assert any(b"'key [Filtered]'" in body for body in bodies)
    assert any(b"upstream said token [Filtered]" in body for body in bodies)
    assert time.monotonic() - started < 25


def _assert_labelled(event: dict[str, Any]) -> None:
    tags = event["tags"]
    assert tags["severity"] == "high"
    assert tags["component"] == "trading"
    assert tags["operation"] == tags["task_name"] == "tasks.submit_order"
    assert tags["recoverable"] == "false"
    assert tags["retry_count"] == "0"
    assert tags["resource"] == "broker.api,broker.orders"
    assert tags["breaker_state"] == "closed"
    assert event["contexts"]["dead_letter"]["client_order_id"].startswith("it-")
    assert event["exception"]["values"][-1]["type"] == "InsufficientFundsError"
