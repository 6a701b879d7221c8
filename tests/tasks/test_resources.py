"""The trading resources' defaults, and the config file's tables merged over them."""

from __future__ import annotations

from dataclasses import replace

from resilience.guard.resource_tables import resources_from_mapping
from resilience.guard.resources import RateLimitConfig
from tasks.resources import ALPACA_ACCOUNT_LIMIT, DEFAULT_RESOURCES, defaults_for


def test_tables_merge_over_the_default_resources() -> None:
    """Over the defaults, a table changes its resource only, leaving the others as they are."""
    assert resources_from_mapping({}, DEFAULT_RESOURCES) == dict(DEFAULT_RESOURCES)
    merged = resources_from_mapping(
        {"broker.orders": {"breaker": {"minimum_calls": 5}}}, DEFAULT_RESOURCES
    )
    default_orders = DEFAULT_RESOURCES["broker.orders"]
    assert default_orders.breaker is not None
    assert merged["broker.orders"] == replace(
        default_orders, breaker=replace(default_orders.breaker, minimum_calls=5)
    )
    assert {n: r for n, r in merged.items() if n != "broker.orders"} == {
        n: r for n, r in DEFAULT_RESOURCES.items() if n != "broker.orders"
    }


def test_orders_are_guarded_by_a_breaker_a_concurrency_limit_and_fail_closed() -> None:
    """broker.orders: breaker, 8 at a time, a retry budget, deferred when Redis is unknown."""
    orders = DEFAULT_RESOURCES["broker.orders"]
    assert orders.breaker is not None and orders.retry_budget is not None
    assert orders.concurrency is not None and orders.concurrency.limit == 8
    assert orders.fail_mode == "closed"
    assert set(DEFAULT_RESOURCES) == {"broker.api", "broker.orders", "broker.data"}


def test_the_alpaca_account_limit_applies_to_alpaca_only() -> None:
    """180 a minute with a burst of 10 on broker.api for Alpaca; no account limit on paper."""
    assert RateLimitConfig(rate=180, period_s=60, burst=10) == ALPACA_ACCOUNT_LIMIT
    assert defaults_for("alpaca")["broker.api"].rate_limit == ALPACA_ACCOUNT_LIMIT
    assert defaults_for("paper")["broker.api"].rate_limit is None
