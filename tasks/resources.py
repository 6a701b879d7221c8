"""The resources trading tasks claim, and what protects them by default: the broker account's
API (``broker.api``), order submission (``broker.orders``) and market data (``broker.data``).

The config file's ``[resources.*]`` tables are merged over these (docs/CONFIGURATION.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from resilience.guard.resources import (
    BreakerConfig,
    ConcurrencyConfig,
    RateLimitConfig,
    ResourceConfig,
    RetryBudgetConfig,
)

__all__ = ["ALPACA_ACCOUNT_LIMIT", "DEFAULT_RESOURCES", "defaults_for"]

# The trading API's breaker and concurrency limit, and the data API's breaker.
DEFAULT_RESOURCES: Mapping[str, ResourceConfig] = {
    "broker.api": ResourceConfig(name="broker.api", fail_mode="open"),
    "broker.orders": ResourceConfig(
        name="broker.orders",
        breaker=BreakerConfig(),
        concurrency=ConcurrencyConfig(limit=8),
        retry_budget=RetryBudgetConfig(),
        fail_mode="closed",
    ),
    "broker.data": ResourceConfig(
        name="broker.data",
        breaker=BreakerConfig(minimum_calls=10),
        retry_budget=RetryBudgetConfig(),
        fail_mode="open",
    ),
}

# Alpaca allows about 200 requests per minute per account; 180/min with a burst of 10 admits
# at most 191 in any minute (floor(t/T) + burst + 1).
ALPACA_ACCOUNT_LIMIT = RateLimitConfig(rate=180, period_s=60, burst=10)


def defaults_for(trading_broker: str) -> dict[str, ResourceConfig]:
    """The default resources for a broker: Alpaca's account rate limit applies to Alpaca only
    (the paper broker has none)."""
    defaults = dict(DEFAULT_RESOURCES)
    if trading_broker == "alpaca":
        defaults["broker.api"] = replace(defaults["broker.api"], rate_limit=ALPACA_ACCOUNT_LIMIT)
    return defaults
