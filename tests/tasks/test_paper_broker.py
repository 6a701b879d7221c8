"""Tests of ``tasks.brokers.paper``: the simulated exchange on a real Redis, no worker."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import redis

from resilience.chaos import ChaosRule, ChaosStore
from resilience.classify import default_classifier
from resilience.clock import ManualClock
from resilience.errors import (
    DuplicateOrderError,
    InsufficientFundsError,
    MarketClosedError,
    PositionValidationError,
)
from resilience.keys import KeySpace
from tasks.brokers.base import BrokerAPIError, Position
from tasks.brokers.calendar import NEW_YORK
from tasks.brokers.paper import PaperBroker
from tasks.payloads import OrderRequest

VALID_UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
SATURDAY_UTC = datetime(2026, 1, 3, 15, 0, tzinfo=UTC)
TUESDAY_10AM_NEW_YORK = datetime(2026, 1, 6, 10, 0, tzinfo=NEW_YORK)
THREADS = 50


@pytest.fixture
def clock() -> ManualClock:
    """A clock that never moves by itself."""
    return ManualClock()


@pytest.fixture
def broker(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> PaperBroker:
    """An always-open paper broker with 1,000,000 cash and AAPL quoted at 100."""
    paper = PaperBroker(client, keys, clock=clock)
    paper.set_quote("AAPL", 100.0)
    return paper


def order(coid: str = "alc-1", **changes: Any) -> OrderRequest:
    """A market buy of 10 AAPL, with ``changes`` applied."""
    fields: dict[str, Any] = {
        "symbol": "AAPL",
        "side": "buy",
        "qty": 10,
        "client_order_id": coid,
        "valid_until": VALID_UNTIL,
    }
    fields.update(changes)
    return OrderRequest(**fields)


def api_error(call: Any) -> BrokerAPIError:
    """The ``BrokerAPIError`` that ``call()`` raises."""
    with pytest.raises(BrokerAPIError) as refused:
        call()
    return refused.value


# --- fills and refusals ----------------------------------------------------------------------


def test_market_buy_fills_at_the_ask_and_spends_cash(broker: PaperBroker) -> None:
    """A market buy fills fully at the ask; cash falls by qty x ask; the position grows."""
    quote = broker.get_quote("AAPL")
    assert (quote.bid, quote.ask) == (99.95, 100.05)

    placed = broker.submit_order(order())

    assert placed.status == "filled"
    assert placed.filled_qty == 10.0
    assert placed.filled_avg_price == 100.05
    assert placed.client_order_id == "alc-1"
    assert broker.get_account().cash == pytest.approx(1_000_000.0 - 1000.5)
    assert broker.list_positions() == [Position("AAPL", 10.0)]
    assert broker.counters() == {"accepted": 1}


def test_market_sell_fills_at_the_bid_and_returns_cash(broker: PaperBroker) -> None:
    """A market sell of held shares fills at the bid and adds the proceeds to cash."""
    broker.submit_order(order("buy-1"))
    sold = broker.submit_order(order("sell-1", side="sell", qty=4))
    assert (sold.status, sold.filled_avg_price) == ("filled", 99.95)
    assert broker.get_account().cash == pytest.approx(1_000_000.0 - 1000.5 + 4 * 99.95)
    assert broker.list_positions() == [Position("AAPL", 6.0)]


def test_duplicate_client_order_id_is_refused(broker: PaperBroker, client: redis.Redis) -> None:
    """A repeated client_order_id gets Alpaca's 422 and books nothing more."""
    first = broker.submit_order(order())
    refused = api_error(lambda: broker.submit_order(order(qty=3)))

    assert refused.status_code == 422
    assert refused.body == "client_order_id must be unique"
    assert [o.id for o in broker.list_orders()] == [first.id]
    assert broker.list_positions() == [Position("AAPL", 10.0)]
    assert broker.counters() == {"accepted": 1, "duplicates_rejected": 1}
    assert type(default_classifier().classify(refused)) is DuplicateOrderError


def test_buy_beyond_cash_is_refused_with_403(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Buying for more than the cash held gets 403 insufficient buying power."""
    paper = PaperBroker(client, keys, clock=clock, initial_cash=500.0)
    paper.set_quote("AAPL", 100.0)

    refused = api_error(lambda: paper.submit_order(order(qty=5)))

    assert refused.status_code == 403
    assert refused.body == "insufficient buying power (cash 500.00)"
    assert paper.list_orders() == []
    assert paper.get_account().cash == 500.0
    assert paper.counters() == {"rejected": 1}
    assert type(default_classifier().classify(refused)) is InsufficientFundsError


def test_sell_beyond_position_is_refused_with_422(broker: PaperBroker) -> None:
    """Selling more than held gets 422 insufficient qty, classified as a position error."""
    broker.submit_order(order("buy-1", qty=2))

    refused = api_error(lambda: broker.submit_order(order("sell-1", side="sell", qty=3)))

    assert refused.status_code == 422
    assert "insufficient qty available" in refused.body
    assert "held 2" in refused.body
    assert broker.list_positions() == [Position("AAPL", 2.0)]
    assert type(default_classifier().classify(refused)) is PositionValidationError


def test_resting_limit_order_can_be_cancelled(broker: PaperBroker) -> None:
    """A limit below the ask rests as accepted, costs nothing, and cancels."""
    resting = broker.submit_order(order(type="limit", limit_price=90.0))
    assert (resting.status, resting.filled_qty, resting.filled_avg_price) == (
        "accepted",
        0.0,
        None,
    )
    assert broker.get_account().cash == 1_000_000.0
    assert broker.list_positions() == []

    canceled = broker.cancel_order(resting.id)

    assert canceled.status == "canceled"
    assert (canceled.id, canceled.client_order_id, canceled.limit_price) == (
        resting.id,
        "alc-1",
        90.0,
    )
    assert canceled.filled_avg_price is None
    stored = broker.get_order_by_client_id("alc-1")
    assert stored is not None
    assert stored.status == "canceled"
    assert broker.counters() == {"accepted": 1, "canceled": 1}


def test_marketable_limit_order_fills_at_the_quote(broker: PaperBroker) -> None:
    """A buy limit above the ask fills at the ask, not at the limit."""
    placed = broker.submit_order(order(type="limit", limit_price=120.0))
    assert (placed.status, placed.filled_avg_price) == ("filled", 100.05)


def test_cancel_of_a_filled_order_is_refused_with_422(broker: PaperBroker) -> None:
    """A filled order cannot be canceled."""
    filled = broker.submit_order(order())
    refused = api_error(lambda: broker.cancel_order(filled.id))
    assert refused.status_code == 422
    assert refused.body == "order is not cancelable (status filled)"


def test_cancel_of_an_unknown_order_is_refused_with_404(broker: PaperBroker) -> None:
    """An order id the broker never issued gets 404."""
    refused = api_error(lambda: broker.cancel_order("no-such-order"))
    assert refused.status_code == 404
    assert "no-such-order" in refused.body


def test_orders_are_found_by_client_id_and_by_id(broker: PaperBroker) -> None:
    """Lookup by client_order_id and by broker id return the booked order; unknown is None."""
    placed = broker.submit_order(order("alc-find"))
    assert broker.get_order_by_client_id("alc-find") == placed
    assert broker.get_order(placed.id) == placed
    assert broker.get_order_by_client_id("alc-other") is None
    assert broker.get_order("nope") is None


def test_list_positions_is_sorted_and_skips_flat_symbols(broker: PaperBroker) -> None:
    """Positions come sorted by symbol; a position sold to zero disappears."""
    broker.set_quote("MSFT", 300.0)
    broker.set_quote("SPY", 500.0)
    broker.submit_order(order("b1", symbol="SPY", qty=1))
    broker.submit_order(order("b2", symbol="MSFT", qty=2))
    broker.submit_order(order("b3", symbol="AAPL", qty=3))
    broker.submit_order(order("s1", symbol="MSFT", qty=2, side="sell"))
    assert broker.list_positions() == [Position("AAPL", 3.0), Position("SPY", 1.0)]


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_submits_of_one_client_order_id_book_one_order(
    broker: PaperBroker, client: redis.Redis, keys: KeySpace
) -> None:
    """Fifty threads sending the same client_order_id at once produce exactly one order."""
    start = threading.Barrier(THREADS)
    accepted: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()

    def submit() -> None:
        start.wait()
        try:
            placed = broker.submit_order(order("alc-race"))
        except BrokerAPIError as error:
            with lock:
                refused.append(error.status_code)
        else:
            with lock:
                accepted.append(placed.id)

    threads = [threading.Thread(target=submit) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(accepted) == 1
    assert refused == [422] * (THREADS - 1)
    assert client.hlen(keys.paper_orders) == 1
    assert client.hlen(keys.paper_order_ids) == 1
    log = cast("list[tuple[str, dict[str, str]]]", client.xrange(keys.paper_log))
    assert [(f["event"], f["client_order_id"]) for _, f in log] == [("accepted", "alc-race")]
    assert broker.counters() == {"accepted": 1, "duplicates_rejected": THREADS - 1}
    assert broker.list_positions() == [Position("AAPL", 10.0)]


# --- market hours ------------------------------------------------------------------------------


def test_regular_hours_refuse_on_a_saturday(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """On a Saturday a regular-hours broker raises MarketClosedError with Monday 09:30 NY."""
    clock.set(SATURDAY_UTC.timestamp())
    paper = PaperBroker(client, keys, clock=clock, market_hours="regular")

    with pytest.raises(MarketClosedError) as closed:
        paper.submit_order(order())

    expected = datetime(2026, 1, 5, 9, 30, tzinfo=NEW_YORK)
    assert closed.value.next_open == expected
    assert closed.value.next_open.astimezone(UTC) == datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    assert "2026-01-05T09:30:00-05:00" in closed.value.message
    assert paper.list_orders() == []


def test_regular_hours_fill_on_a_weekday_at_ten(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """At 10:00 New York on a Tuesday a regular-hours broker fills the order."""
    clock.set(TUESDAY_10AM_NEW_YORK.timestamp())
    paper = PaperBroker(client, keys, clock=clock, market_hours="regular")
    placed = paper.submit_order(order())
    assert placed.status == "filled"
    assert placed.submitted_at == "2026-01-06T15:00:00+00:00"


def test_always_open_ignores_the_calendar(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """The default always-open broker fills on a Saturday."""
    clock.set(SATURDAY_UTC.timestamp())
    paper = PaperBroker(client, keys, clock=clock)
    assert paper.submit_order(order()).status == "filled"


# --- chaos ---------------------------------------------------------------------------------------


def test_after_phase_fault_books_the_order_then_raises(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """An after-phase timeout loses the response, not the order; a retry is a duplicate."""
    chaos = ChaosStore(client, keys)
    chaos.inject(ChaosRule("broker.submit_order", "TimeoutError", phase="after", count=1))
    paper = PaperBroker(client, keys, clock=clock, chaos=chaos)

    with pytest.raises(TimeoutError):
        paper.submit_order(order("alc-lost"))

    booked = paper.get_order_by_client_id("alc-lost")
    assert booked is not None
    assert booked.status == "filled"
    retry = api_error(lambda: paper.submit_order(order("alc-lost")))
    assert retry.status_code == 422
    assert len(paper.list_orders()) == 1
    assert chaos.fired() == {"broker.submit_order": 1}


def test_before_phase_fault_books_nothing(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A before-phase fault fails the operation before it takes effect."""
    chaos = ChaosStore(client, keys)
    chaos.inject(ChaosRule("broker.submit_order", "ConnectionError", count=1))
    paper = PaperBroker(client, keys, clock=clock, chaos=chaos)

    with pytest.raises(ConnectionError):
        paper.submit_order(order("alc-early"))

    assert paper.get_order_by_client_id("alc-early") is None
    assert paper.submit_order(order("alc-early")).status == "filled"


def test_reset_forgets_everything(broker: PaperBroker) -> None:
    """``reset`` empties orders, positions, counters and quotes."""
    broker.submit_order(order())
    broker.reset()
    assert broker.list_orders() == []
    assert broker.list_positions() == []
    assert broker.counters() == {}
    assert broker.get_account().cash == 1_000_000.0
