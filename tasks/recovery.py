"""What the trading tasks recover from, and how (the plan's ``TradingErrorRecovery``).

- A rate limit (any task): wait for the fleet's limiter's next slot, spending no attempt.
- A quote that failed (``tasks.fetch_quote``): the second provider, then the last good quote
  cached if it is young enough; a quote older than the maximum age is never answered.
- An order whose call failed transiently (``tasks.submit_order``): look it up by its
  ``client_order_id``; if the broker booked it (the reply was lost), that is the result, and an
  order the broker holds canceled or expired is reported as it is, never resubmitted here.
"""

from __future__ import annotations

from typing import Any

from resilience.errors import (
    DataProviderError,
    MarketClosedError,
    OrderExecutionError,
    PositionValidationError,
    RateLimitError,
    TradingClientError,
    ValidationError,
)
from resilience.recovery.rate_limit import LimiterSlotRecovery
from resilience.recovery.registry import DEFAULT_MAX_RECOVERIES, RecoveryRegistry
from resilience.recovery.result import RecoveryResult
from resilience.recovery.strategy import RecoveryAttempt
from tasks.market_data.quote_book import QuoteBook, quote_result
from tasks.ordering import already_placed_result, order_differences
from tasks.payloads import OrderRequest, QuoteRequest, parse_payload
from tasks.runtime import trading_runtime

__all__ = [
    "CachedQuoteRecovery",
    "OrderLookupRecovery",
    "SecondaryQuoteRecovery",
    "TradingErrorRecovery",
]

FETCH_QUOTE = "tasks.fetch_quote"
SUBMIT_ORDER = "tasks.submit_order"
# An order in one of these states will not fill: reported as the broker holds it.
_ENDED = frozenset({"canceled", "cancelled", "expired", "rejected"})


def _quote_request(name: str, attempt: RecoveryAttempt) -> tuple[str, QuoteBook] | RecoveryResult:
    """The symbol asked for and this process's quote book, or why the strategy ``name`` does
    not apply."""
    try:
        symbol = parse_payload(QuoteRequest, dict(attempt.kwargs)).symbol
    except ValidationError:
        return RecoveryResult.not_applicable(name, "the request names no valid symbol")
    return symbol, trading_runtime(attempt.task.app).quotes


class SecondaryQuoteRecovery:
    """A failed quote answered by the second provider (``ALCHEMISER_QUOTE_FALLBACK``)."""

    name = "quote_fallback_provider"

    def recover(self, attempt: RecoveryAttempt) -> RecoveryResult:
        """The second provider's quote, or why there is none."""
        request = _quote_request(self.name, attempt)
        if isinstance(request, RecoveryResult):
            return request
        symbol, book = request
        if book.fallback is None:
            return RecoveryResult.not_applicable(self.name, "no second provider is configured")
        try:
            result = book.from_fallback(symbol, attempt.now_s)
        except Exception as failure:  # the next strategy (the cache) may still answer
            return RecoveryResult.gave_up(
                self.name,
                f"the second provider {book.fallback.name} failed too: {type(failure).__name__}",
                provider=book.fallback.name,
            )
        assert result is not None  # a fallback is configured
        return RecoveryResult.recovered(
            self.name,
            f"quoted {symbol} by the second provider {book.fallback.name}",
            value=result,
            provider=book.fallback.name,
        )


class CachedQuoteRecovery:
    """A failed quote answered by the last good quote, if it is at most the maximum age."""

    name = "last_good_quote"

    def recover(self, attempt: RecoveryAttempt) -> RecoveryResult:
        """The cached quote, or why it cannot be used."""
        request = _quote_request(self.name, attempt)
        if isinstance(request, RecoveryResult):
            return request
        symbol, book = request
        cached = book.cache.last(symbol)
        if cached is None:
            return RecoveryResult.gave_up(self.name, f"no good quote of {symbol} is cached")
        age_s = round(cached.age_s, 3)
        if cached.age_s > book.max_age_s:
            return RecoveryResult.gave_up(
                self.name,
                f"the last good quote of {symbol} is {cached.age_s:.1f} s old, beyond the"
                f" {book.max_age_s:g} s limit: not used",
                age_s=age_s,
                max_age_s=book.max_age_s,
            )
        return RecoveryResult.recovered(
            self.name,
            f"answered the last good quote of {symbol} ({cached.age_s:.1f} s old,"
            f" from {cached.source})",
            value=quote_result(cached.quote, f"cache:{cached.source}", cached.age_s),
            age_s=age_s,
            max_age_s=book.max_age_s,
        )


class OrderLookupRecovery:
    """A transient failure of an order call: the broker may have booked it anyway."""

    name = "order_lookup"

    def recover(self, attempt: RecoveryAttempt) -> RecoveryResult:
        """The order as the broker holds it under its ``client_order_id``, if it is this order."""
        try:
            request = parse_payload(OrderRequest, dict(attempt.kwargs))
        except ValidationError:
            return RecoveryResult.not_applicable(self.name, "the order is not valid")
        broker = trading_runtime(attempt.task.app).broker
        existing = broker.get_order_by_client_id(request.client_order_id)
        if existing is None:
            return RecoveryResult.gave_up(
                self.name,
                "the broker has no order under this client_order_id: left to the retry policy",
            )
        details: dict[str, Any] = {"broker_order_id": existing.id, "status": existing.status}
        differences = order_differences(request, existing)
        if differences:
            return RecoveryResult.gave_up(
                self.name,
                "the client_order_id names a different order at the broker (differs in"
                f" {', '.join(differences)}): not this order",
                **details,
            )
        value = already_placed_result(
            existing, outcomes=attempt.task.runtime.outcomes, task_name=attempt.task_name
        )
        if existing.status in _ENDED:
            return RecoveryResult.recovered(
                self.name,
                f"the broker booked it and holds it {existing.status}: reported, not resubmitted",
                value=value,
                **details,
            )
        return RecoveryResult.recovered(
            self.name, "the broker booked it before the reply was lost", value=value, **details
        )


class TradingErrorRecovery(RecoveryRegistry):
    """The trading tasks' strategies, registered by error class."""

    def __init__(self, *, max_recoveries: int = DEFAULT_MAX_RECOVERIES) -> None:
        super().__init__(max_recoveries=max_recoveries)
        self.register(RateLimitError, LimiterSlotRecovery())
        self.register(DataProviderError, SecondaryQuoteRecovery(), tasks=[FETCH_QUOTE])
        self.register(DataProviderError, CachedQuoteRecovery(), tasks=[FETCH_QUOTE])
        self.register(
            TradingClientError,
            OrderLookupRecovery(),
            tasks=[SUBMIT_ORDER],
            # Refusals and a closed market: the broker did not book it, a lookup cannot help.
            excluding=[OrderExecutionError, PositionValidationError, MarketClosedError],
        )
