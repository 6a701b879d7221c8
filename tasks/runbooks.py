"""What the trading fleet's runbooks say about its own error families, in a broker's words
(the building blocks' generic guidance covers the rest)."""

from __future__ import annotations

from collections.abc import Mapping

from resilience.errors import (
    AlchemiserError,
    DataProviderError,
    OrderExecutionError,
    TradingClientError,
)
from resilience.runbooks.guidance import DEAD_LETTERS_STEP, PATTERNS_STEP, Guidance

__all__ = ["TRADING_GUIDANCE"]

TRADING_GUIDANCE: Mapping[type[AlchemiserError], Guidance] = {
    TradingClientError: Guidance(
        diagnose=(
            "Check the broker's status page; see whether the trading API's breaker opened:"
            " `alchemiser breaker list`.",
            DEAD_LETTERS_STEP,
        ),
        prevent=("Keep the broker's breaker and retry budget on; keep order deadlines short.",),
    ),
    DataProviderError: Guidance(
        diagnose=(
            "Check the market-data feed; see where quotes come from (`source` of"
            " tasks.fetch_quote results, log event `recovery_tried`).",
            PATTERNS_STEP,
        ),
        prevent=(
            "Configure a second quote provider (ALCHEMISER_QUOTE_FALLBACK) and a quote"
            " maximum age the strategy can trade on (ALCHEMISER_QUOTE_MAX_AGE_S).",
        ),
    ),
    OrderExecutionError: Guidance(
        diagnose=(
            "The broker refused the order as sent: read the refusals in its dead letters,"
            " `alchemiser dlq list --error {t}`.",
        ),
        prevent=(
            "Check orders against buying power, positions and the broker's rules before they"
            " are sent; a replay of an unchanged order is refused again.",
        ),
    ),
}
