"""Where the trading tasks get quotes: the broker first, then the second provider, then the last
good quote cached, and never one older than the caller's limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resilience.errors import MarketDataError
from tasks.brokers.base import BrokerAdapter, Quote
from tasks.market_data.providers import QuoteProvider
from tasks.market_data.quote_cache import QuoteCache, age_of

__all__ = ["PRIMARY", "QuoteBook", "quote_result"]

# The source name of the broker's own market data.
PRIMARY = "primary"


def quote_result(quote: Quote, source: str, age_s: float | None) -> dict[str, Any]:
    """The JSON result of ``tasks.fetch_quote``: the quote, who quoted it, how old it is
    (``None``: its time is unreadable)."""
    return {
        **quote.to_dict(),
        "source": source,
        "age_s": None if age_s is None else round(age_s, 3),
    }


@dataclass(frozen=True, slots=True)
class QuoteBook:
    """The quote sources of one worker process, and the oldest quote it may use."""

    broker: BrokerAdapter
    cache: QuoteCache
    fallback: QuoteProvider | None
    max_age_s: float

    def fetch(self, symbol: str, now_s: float) -> dict[str, Any]:
        """The broker's quote of ``symbol`` (its errors propagate), remembered as the last good
        one."""
        quote = self.broker.get_quote(symbol)
        self.cache.remember(quote, PRIMARY)
        return quote_result(quote, PRIMARY, age_of(quote, now_s))

    def from_fallback(self, symbol: str, now_s: float) -> dict[str, Any] | None:
        """The second provider's quote (its errors propagate), remembered; ``None`` if none is
        configured."""
        if self.fallback is None:
            return None
        quote = self.fallback.get_quote(symbol)
        self.cache.remember(quote, self.fallback.name)
        return quote_result(quote, self.fallback.name, age_of(quote, now_s))

    def for_trading(self, symbol: str, now_s: float, max_age_s: float) -> dict[str, Any]:
        """A quote of ``symbol`` at most ``max_age_s`` old, from the first source that has one;
        :class:`MarketDataError` saying what each source answered when none has."""
        answers: list[str] = []
        for source in (self.fetch, self.from_fallback):
            try:
                result = source(symbol, now_s)
            except Exception as failure:  # the next source is the recovery
                answers.append(f"{type(failure).__name__}: {failure}"[:200])
                continue
            if result is None:
                continue
            age_s = result["age_s"]
            if age_s is not None and age_s <= max_age_s:
                return result
            answers.append(f"{result['source']} quote of unknown or too great age ({age_s} s)")
        cached = self.cache.last(symbol)
        if cached is not None and cached.age_s <= max_age_s:
            return quote_result(cached.quote, f"cache:{cached.source}", cached.age_s)
        if cached is not None:
            answers.append(f"cached quote {cached.age_s:.0f} s old")
        raise MarketDataError(
            f"no quote of {symbol} at most {max_age_s:g} s old; not trading on it"
            f" ({'; '.join(answers) or 'no source answered'})",
            details={"symbol": symbol, "max_age_s": max_age_s},
        )
