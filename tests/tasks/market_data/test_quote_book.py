"""Quotes when the broker fails: the cache's ages, the book's order of sources and its limit,
the second provider's configuration. On the real test Redis with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from resilience.chaos import ChaosRule, ChaosStore
from resilience.errors import ConfigurationError, MarketDataError
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
from tasks.brokers.base import Quote
from tasks.brokers.paper import PaperBroker
from tasks.market_data.providers import PaperQuotes, fallback_provider
from tasks.market_data.quote_book import PRIMARY, QuoteBook
from tasks.market_data.quote_cache import RETENTION_S, QuoteCache, age_of

T0 = 1_790_000_000.0


def iso(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, UTC).isoformat()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def cache(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> QuoteCache:
    return QuoteCache(client, keys, clock)


class Failing:
    """A quote source that always fails."""

    name = "failing"

    def get_quote(self, symbol: str) -> Quote:
        raise ConnectionError("data API unreachable")


class Fixed:
    """A quote source answering one quote, quoted at ``at_s``."""

    def __init__(self, name: str, mid: float, at_s: float) -> None:
        self.name = name
        self._mid, self._at = mid, iso(at_s)

    def get_quote(self, symbol: str) -> Quote:
        return Quote(symbol=symbol, bid=self._mid - 0.01, ask=self._mid + 0.01, at=self._at)


def book(cache: QuoteCache, primary: Any, fallback: Any = None, max_age_s: float = 30) -> QuoteBook:
    return QuoteBook(broker=primary, cache=cache, fallback=fallback, max_age_s=max_age_s)


def test_a_cached_quote_is_aged_from_when_it_was_quoted(
    cache: QuoteCache, clock: ManualClock, client: redis.Redis, keys: KeySpace
) -> None:
    cache.remember(Quote("AAPL", 99.0, 101.0, iso(T0 - 5)), "primary")
    clock.advance(10)
    cached = cache.last("AAPL")
    assert cached is not None
    assert (cached.quote.bid, cached.source, cached.age_s) == (99.0, "primary", 15.0)
    assert cache.last("MSFT") is None
    ttl = client.ttl(keys.app_key("quotes", "last"))
    assert 0 < ttl <= RETENTION_S


def test_an_unreadable_cached_quote_is_no_quote(
    cache: QuoteCache, client: redis.Redis, keys: KeySpace
) -> None:
    client.hset(keys.app_key("quotes", "last"), "AAPL", "not json")
    client.expire(keys.app_key("quotes", "last"), 60)
    assert cache.last("AAPL") is None
    cache.remember(Quote("MSFT", 1.0, 2.0, "yesterday"), "primary")
    assert cache.last("MSFT") is None
    # A time without a zone cannot be aged: too old to trade on, whatever it says.
    assert age_of(Quote("X", 1.0, 2.0, "2026-01-05T15:00:00"), T0) is None
    assert age_of(Quote("X", 1.0, 2.0, iso(T0 + 3)), T0) == 0.0


def test_the_brokers_quote_is_answered_and_cached(cache: QuoteCache) -> None:
    result = book(cache, Fixed("broker", 100.0, T0 - 2)).fetch("AAPL", T0)
    assert (result["source"], result["age_s"], result["bid"]) == (PRIMARY, 2.0, 99.99)
    cached = cache.last("AAPL")
    assert cached is not None and cached.source == PRIMARY


def test_trading_quotes_fall_back_in_order_and_never_beyond_the_limit(
    cache: QuoteCache, clock: ManualClock
) -> None:
    second = book(cache, Failing(), Fixed("vendor", 50.0, T0 - 1))
    assert second.for_trading("AAPL", T0, 30)["source"] == "vendor"
    # The second provider failing too: the cache (the vendor's quote, 1 s + 20 s old).
    clock.advance(20)
    only_cache = book(cache, Failing(), Failing())
    result = only_cache.for_trading("AAPL", T0 + 20, 30)
    assert (result["source"], result["age_s"]) == ("cache:vendor", 21.0)
    with pytest.raises(MarketDataError) as refused:
        only_cache.for_trading("AAPL", T0 + 20, 10)
    message = str(refused.value)
    assert "no quote of AAPL at most 10 s old; not trading on it" in message
    assert "ConnectionError: data API unreachable" in message
    assert "cached quote 21 s old" in message


def test_a_stale_quote_from_the_broker_itself_is_refused_for_trading(cache: QuoteCache) -> None:
    stale = book(cache, Fixed("broker", 100.0, T0 - 120))
    with pytest.raises(MarketDataError, match="primary quote of unknown or too great age"):
        stale.for_trading("AAPL", T0, 60)


def test_paper_quotes_answer_with_faults_of_their_own(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    chaos = ChaosStore(client, keys)
    quotes = PaperQuotes(client, keys, clock=clock, chaos=chaos)
    paper = PaperBroker(client, keys, clock=clock, chaos=chaos)
    paper.set_quote("AAPL", 200.0)
    chaos.inject(ChaosRule(target="broker.get_quote", error="MarketDataError"))
    assert quotes.get_quote("AAPL").mid == pytest.approx(200.0)
    chaos.inject(ChaosRule(target="fallback.get_quote", error="ConnectionError"))
    with pytest.raises(ConnectionError):
        quotes.get_quote("AAPL")


def test_the_second_provider_is_configured_by_name(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    chaos = ChaosStore(client, keys)

    def build(name: str) -> object:
        return fallback_provider(name, client, keys, clock=clock, chaos=chaos)

    assert build("none") is None
    assert isinstance(build("paper"), PaperQuotes)
    built = build("tests.tasks.market_data.test_quote_book:vendor")
    assert getattr(built, "name", None) == "vendor"
    with pytest.raises(ConfigurationError, match="use none, paper or module:factory"):
        build("vendor")
    with pytest.raises(ConfigurationError, match="could not build the provider: ModuleNotFound"):
        build("no_such_module:factory")
    with pytest.raises(ConfigurationError, match="built a int, which has no name"):
        build("tests.tasks.market_data.test_quote_book:not_a_provider")


def vendor() -> Fixed:
    """A factory for ALCHEMISER_QUOTE_FALLBACK=module:factory."""
    return Fixed("vendor", 10.0, T0)


def not_a_provider() -> int:
    return 7
