"""The trading recovery strategies, unit level: the quote fallbacks' limits and the order lookup's
verdicts, on the real test Redis (the paper exchange) with an injected clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis

from resilience.errors import (
    InsufficientFundsError,
    MarketClosedError,
    MarketDataError,
    RateLimitError,
    TradingClientError,
)
from resilience.observability.outcomes import OutcomeCounter
from resilience.recovery.result import RecoveryOutcome
from resilience.recovery.strategy import RecoveryAttempt
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
from tasks.brokers.base import Quote
from tasks.brokers.paper import PaperBroker
from tasks.market_data.quote_book import QuoteBook
from tasks.market_data.quote_cache import QuoteCache
from tasks.payloads import OrderRequest
from tasks.recovery import (
    CachedQuoteRecovery,
    OrderLookupRecovery,
    SecondaryQuoteRecovery,
    TradingErrorRecovery,
)
from tasks.runtime import TRADING_RUNTIME_SETTING

T0 = 1_790_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def paper(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> PaperBroker:
    return PaperBroker(client, keys, clock=clock)


def attempt_of(
    task_name: str,
    kwargs: dict[str, Any],
    error: Exception,
    trading: Any,
    *,
    now_s: float = T0,
    outcomes: OutcomeCounter | None = None,
) -> RecoveryAttempt:
    app = SimpleNamespace(conf={TRADING_RUNTIME_SETTING: lambda: trading})
    task = SimpleNamespace(
        name=task_name,
        app=app,
        request=SimpleNamespace(id="t-1"),
        runtime=SimpleNamespace(outcomes=outcomes),
    )
    return RecoveryAttempt(
        task=task,  # type: ignore[arg-type]
        kwargs=kwargs,
        error=error,  # type: ignore[arg-type]
        cause=error,
        failures=0,
        recoveries=0,
        now_s=now_s,
        deadline_s=None,
    )


def quotes(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, paper: PaperBroker, **changes: Any
) -> SimpleNamespace:
    parts: dict[str, Any] = {
        "broker": paper, "cache": QuoteCache(client, keys, clock), "fallback": None,
        "max_age_s": 30.0,
    }  # fmt: skip
    return SimpleNamespace(quotes=QuoteBook(**{**parts, **changes}))


def test_the_cache_answers_only_quotes_younger_than_the_limit(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, paper: PaperBroker
) -> None:
    trading = quotes(client, keys, clock, paper)
    strategy = CachedQuoteRecovery()
    failure = MarketDataError("data API down")
    none = strategy.recover(attempt_of("tasks.fetch_quote", {"symbol": "AAPL"}, failure, trading))
    assert (none.outcome, none.action) == (
        RecoveryOutcome.GAVE_UP,
        "no good quote of AAPL is cached",
    )
    trading.quotes.cache.remember(paper.get_quote("AAPL"), "primary")
    clock.advance(29.0)
    young = strategy.recover(attempt_of("tasks.fetch_quote", {"symbol": "aapl"}, failure, trading))
    assert young.outcome is RecoveryOutcome.RECOVERED
    assert (young.value["source"], young.value["age_s"]) == ("cache:primary", 29.0)
    clock.advance(2.0)
    old = strategy.recover(attempt_of("tasks.fetch_quote", {"symbol": "AAPL"}, failure, trading))
    assert old.outcome is RecoveryOutcome.GAVE_UP
    assert old.action == (
        "the last good quote of AAPL is 31.0 s old, beyond the 30 s limit: not used"
    )
    bad = strategy.recover(attempt_of("tasks.fetch_quote", {"symbol": "$$"}, failure, trading))
    assert bad.outcome is RecoveryOutcome.NOT_APPLICABLE


def test_without_a_second_provider_the_fallback_does_not_apply(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, paper: PaperBroker
) -> None:
    trading = quotes(client, keys, clock, paper)
    result = SecondaryQuoteRecovery().recover(
        attempt_of("tasks.fetch_quote", {"symbol": "AAPL"}, MarketDataError("down"), trading)
    )
    assert (result.outcome, result.action) == (
        RecoveryOutcome.NOT_APPLICABLE, "no second provider is configured",
    )  # fmt: skip


class Vendor:
    name = "vendor"

    def get_quote(self, symbol: str) -> Quote:
        return Quote(symbol, 9.0, 11.0, "2026-09-21T12:53:20+00:00")


def test_the_second_providers_quote_is_answered_and_cached(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, paper: PaperBroker
) -> None:
    trading = quotes(client, keys, clock, paper, fallback=Vendor())
    result = SecondaryQuoteRecovery().recover(
        attempt_of("tasks.fetch_quote", {"symbol": "AAPL"}, MarketDataError("down"), trading)
    )
    assert result.outcome is RecoveryOutcome.RECOVERED
    assert (result.value["source"], result.value["bid"]) == ("vendor", 9.0)
    cached = trading.quotes.cache.last("AAPL")
    assert cached is not None and cached.source == "vendor"


def order(**changes: Any) -> dict[str, Any]:
    kwargs = {
        "symbol": "AAPL", "side": "buy", "qty": 5, "client_order_id": "alc-r-1",
        "valid_until": "2026-09-21T13:00:00+00:00",
    }  # fmt: skip
    return {**kwargs, **changes}


def test_the_order_lookup_tells_booked_from_absent_and_from_another_order(
    paper: PaperBroker, client: redis.Redis, keys: KeySpace
) -> None:
    trading = SimpleNamespace(broker=paper)
    outcomes = OutcomeCounter(client, keys)
    lookup = OrderLookupRecovery()
    timeout = TradingClientError("read timed out")

    def attempt(**changes: Any) -> RecoveryAttempt:
        return attempt_of(
            "tasks.submit_order", order(**changes), timeout, trading, outcomes=outcomes
        )

    absent = lookup.recover(attempt())
    assert absent.outcome is RecoveryOutcome.GAVE_UP
    assert "left to the retry policy" in absent.action

    placed = paper.submit_order(OrderRequest.model_validate(order()))
    found = lookup.recover(attempt())
    assert found.outcome is RecoveryOutcome.RECOVERED and found.finishes_task
    assert found.value == {"order": placed.to_dict(), "duplicate_avoided": True}
    assert found.details == {"broker_order_id": placed.id, "status": placed.status}
    assert outcomes.totals()["duplicate_avoided"] == 1

    other = lookup.recover(attempt(qty=50))
    assert other.outcome is RecoveryOutcome.GAVE_UP
    assert "differs in qty" in other.action


def test_an_order_the_broker_holds_canceled_is_reported_not_resubmitted(
    paper: PaperBroker, client: redis.Redis, keys: KeySpace
) -> None:
    resting = paper.submit_order(OrderRequest.model_validate(order(type="limit", limit_price=1.0)))
    paper.cancel_order(resting.id)
    result = OrderLookupRecovery().recover(
        attempt_of(
            "tasks.submit_order",
            order(type="limit", limit_price=1.0),
            TradingClientError("read timed out"),
            SimpleNamespace(broker=paper),
            outcomes=OutcomeCounter(client, keys),
        )
    )
    assert result.outcome is RecoveryOutcome.RECOVERED
    assert result.action == "the broker booked it and holds it canceled: reported, not resubmitted"
    assert result.value["order"]["status"] == "canceled"
    assert paper.list_orders() == [paper.get_order(resting.id)]


def test_trading_recovery_registers_each_strategy_where_it_can_help() -> None:
    registry = TradingErrorRecovery()

    def names(error: Exception, task: str) -> list[str]:
        return [s.name for s in registry.strategies_for(error, task)]  # type: ignore[arg-type]

    assert names(RateLimitError("429"), "tasks.rebalance") == ["limiter_slot"]
    assert names(MarketDataError("down"), "tasks.fetch_quote") == [
        "quote_fallback_provider", "last_good_quote",
    ]  # fmt: skip
    assert names(MarketDataError("down"), "tasks.rebalance") == []
    assert names(TradingClientError("503"), "tasks.submit_order") == ["order_lookup"]
    assert names(TradingClientError("503"), "tasks.cancel_order") == []
    assert names(InsufficientFundsError("no"), "tasks.submit_order") == []
    assert names(MarketClosedError("closed"), "tasks.submit_order") == []
