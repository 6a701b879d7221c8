"""A market-data outage on real workers: quotes keep flowing from the second provider, then from
the last good quote while it is young enough; nothing is dead-lettered, and an order whose reply
was lost is found at the broker instead of retried."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from resilience.chaos import ChaosRule
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration

MAX_AGE_S = 30.0


def recoveries(deployment: Deployment) -> Counter[tuple[str, str]]:
    return Counter((e["strategy"], e["outcome"]) for e in deployment.log_events("recovery_tried"))


def test_quotes_flow_from_the_fallback_then_the_cache_and_none_is_dead_lettered(
    deployment_factory: Callable[..., Deployment],
) -> None:
    deployment = deployment_factory(
        ALCHEMISER_QUOTE_FALLBACK="paper", ALCHEMISER_QUOTE_MAX_AGE_S=str(MAX_AGE_S)
    )
    deployment.paper.set_quote("AAPL", 150.0)
    deployment.start_workers()
    outcomes = deployment.runtime.resilience.outcomes
    chaos = deployment.runtime.chaos

    # The broker's market data is down: the second provider answers every quote.
    chaos.inject(ChaosRule(target="broker.get_quote", error="MarketDataError"))
    for _ in range(10):
        deployment.app.send_task("tasks.fetch_quote", kwargs={"symbol": "AAPL"})
    wait_for(
        lambda: recoveries(deployment)[("quote_fallback_provider", "recovered")] == 10,
        60, "10 quotes from the second provider",
    )  # fmt: skip
    cached = deployment.runtime.quotes.cache.last("AAPL")
    assert cached is not None and cached.source == "paper"

    # The second provider fails too: the last good quote, a few seconds old, answers.
    chaos.inject(ChaosRule(target="fallback.get_quote", error="ConnectionError"))
    for _ in range(5):
        deployment.app.send_task("tasks.fetch_quote", kwargs={"symbol": "AAPL"})
    wait_for(
        lambda: recoveries(deployment)[("last_good_quote", "recovered")] == 5,
        60, "5 quotes from the cache",
    )  # fmt: skip
    from_cache = [
        e for e in deployment.log_events("recovery_tried") if e["strategy"] == "last_good_quote"
    ]
    assert all(e["details"]["age_s"] <= MAX_AGE_S for e in from_cache)
    assert recoveries(deployment)[("quote_fallback_provider", "gave_up")] == 5
    assert outcomes.totals().get("dead_lettered", 0) == 0
    assert outcomes.totals()["recovered"] == 15
    stats = deployment.runtime.resilience.metrics
    assert stats is not None
    assert stats.recovery().strategies == {
        ("last_good_quote", "recovered"): 5,
        ("quote_fallback_provider", "gave_up"): 5,
        ("quote_fallback_provider", "recovered"): 10,
    }


def test_an_order_booked_whose_reply_was_lost_is_found_not_retried(
    deployment: Deployment,
) -> None:
    """The broker books the order, then the call times out (a fault after the booking): the
    lookup recovers it at once; the broker holds it once, and nothing is retried."""
    deployment.start_workers()
    deployment.runtime.chaos.inject(
        ChaosRule(target="broker.submit_order", error="TimeoutError", phase="after", count=1)
    )
    order = order_kwargs("AAPL", 3)
    deployment.submit(order)
    wait_for(lambda: recoveries(deployment)[("order_lookup", "recovered")] == 1, 30, "the lookup")
    assert deployment.accepted_counts()[order["client_order_id"]] == 1
    totals = deployment.runtime.resilience.outcomes.totals()
    assert totals.get("retried", 0) == 0 and totals.get("dead_lettered", 0) == 0
    (event,) = deployment.log_events("recovery_tried")
    assert event["action"] == "the broker booked it before the reply was lost"
