"""What an operator of the trading fleet should do, by the class of the errors seen: the
health report's recommendations (``alchemiser health``, ``/health``), worded for brokers."""

from __future__ import annotations

from collections.abc import Mapping

from resilience.observability.health import RECOMMENDATIONS

__all__ = ["TRADING_ADVICE"]

TRADING_ADVICE: Mapping[str, str] = {
    **RECOMMENDATIONS,
    "InsufficientFundsError": (
        "Orders are refused for buying power: check the account's cash and the strategy's"
        " sizing before replaying them (alchemiser dlq list --error InsufficientFundsError)."
    ),
    "OrderExecutionError": (
        "The broker refuses orders as sent: read the dead letters' messages, fix the payloads,"
        " then replay (alchemiser dlq replay ID)."
    ),
    "RateLimitError": (
        "The broker's rate limit is being hit: lower the broker.api rate"
        ' ([resources."broker.api".rate_limit]) or spread the schedule.'
    ),
    "TradingClientError": (
        "The trading API fails transiently: check the broker's status page; the breaker and"
        " the retry budget hold the fleet back meanwhile (alchemiser breaker list)."
    ),
    "MarketDataError": "Market data fails: check the data feed; quotes are retried with backoff.",
    "SecurityError": (
        "Credentials are refused: rotate or fix ALPACA_API_KEY / ALPACA_SECRET_KEY now; nothing"
        " is retried until they work."
    ),
}
