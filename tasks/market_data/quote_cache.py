"""The last good quote of each symbol, fleet-wide in Redis, with its age.

One hash (``<namespace>:{quotes}:last``), one field per symbol: bounded by the symbols traded.
It expires a retention after the last write, so a namespace nobody quotes in any more goes away.
A quote's age is counted from when it was quoted (its ``at``), not from when it was cached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import structlog
from redis import Redis
from redis.exceptions import RedisError

from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace
from tasks.brokers.base import Quote

__all__ = ["RETENTION_S", "CachedQuote", "QuoteCache", "age_of"]

RETENTION_S = 24 * 3600

_log = structlog.get_logger("alchemiser.quotes")


@dataclass(frozen=True, slots=True)
class CachedQuote:
    """A cached quote, who quoted it, and how old it is now."""

    quote: Quote
    source: str
    age_s: float


class QuoteCache:
    """Remembers each symbol's last good quote; answers it with its age."""

    def __init__(self, client: Redis, keys: KeySpace, clock: Clock) -> None:
        self._client = client
        self._key = keys.app_key("quotes", "last")
        self._clock = clock

    def remember(self, quote: Quote, source: str) -> None:
        """Keep ``quote`` as the symbol's last good one (best effort: a quote that was fetched is
        not lost because Redis could not cache it)."""
        value = json.dumps({**quote.to_dict(), "source": source}, separators=(",", ":"))
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(self._key, quote.symbol, value)
        pipe.expire(self._key, RETENTION_S)
        try:
            pipe.execute()
        except RedisError as unavailable:
            _log.warning("quote_not_cached", symbol=quote.symbol, error=str(unavailable))

    def last(self, symbol: str) -> CachedQuote | None:
        """The symbol's last good quote, if one is cached and readable."""
        raw = self._client.hget(self._key, symbol)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            quote = Quote(
                symbol=str(data["symbol"]),
                bid=float(data["bid"]),
                ask=float(data["ask"]),
                at=str(data["at"]),
            )
        except (ValueError, KeyError, TypeError) as unreadable:
            _log.warning("cached_quote_unreadable", symbol=symbol, error=str(unreadable))
            return None
        age_s = age_of(quote, self._clock.now_s())
        if age_s is None:
            _log.warning("cached_quote_unreadable", symbol=symbol, error=f"time {quote.at!r}")
            return None
        return CachedQuote(quote=quote, source=str(data.get("source", "")), age_s=age_s)


def age_of(quote: Quote, now_s: float) -> float | None:
    """Seconds since ``quote`` was quoted (0 for a time ahead of ours); ``None`` if its time is
    unreadable (too old to trade on, whatever it says)."""
    try:
        quoted_at = datetime.fromisoformat(quote.at)
    except ValueError:
        return None
    if quoted_at.tzinfo is None:
        return None
    return max(now_s - quoted_at.timestamp(), 0.0)
