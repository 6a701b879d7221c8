"""The contract every ``BrokerAdapter`` keeps, run against each adapter.

``venue`` is parametrized over the paper broker (on the test Redis, in a namespace of the
test's own, its clock standing still) and ``AlpacaBroker`` pointed at the fake Alpaca API
(real HTTP on loopback). Both accounts start with 100,000 cash and AAPL quoted 99.95 / 100.05.
What one adapter alone does (the Lua scripts' bookkeeping, market hours, fault rules; the
HTTP mapping, rate-limit headers, timeouts) is tested in test_paper_broker.py and
test_alpaca_broker.py.

Where the adapters differ, the test states the contract as Alpaca keeps it and expects the
other adapter to fail it (strict xfail, with the difference as the reason: :func:`all_but`),
so the difference shows in every run and a fix shows as an unexpected pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

import pytest
import redis
from _pytest.mark import ParameterSet

from resilience.chaos import ChaosRule, ChaosStore
from resilience.errors import (
    AlchemiserError,
    DuplicateOrderError,
    InsufficientFundsError,
    OrderExecutionError,
    TradingClientError,
)
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
from tasks.brokers.alpaca import AlpacaBroker
from tasks.brokers.base import Account, BrokerAdapter, BrokerAPIError, Position
from tasks.brokers.paper import PaperBroker
from tasks.classification import trading_classifier
from tests.builders import order_request
from tests.fakes.alpaca_api import FakeAlpacaAPI, Fault
from tests.fakes.alpaca_exchange import SPREAD

ADAPTERS = ("paper", "alpaca")
INITIAL_CASH = 100_000.0
SUBMIT = "POST /v2/orders"
UNKNOWN_UUID = "00000000-0000-4000-8000-00000000dead"


class Venue(Protocol):
    """One adapter under test, and the levers the contract needs of the exchange behind it."""

    name: str
    broker: BrokerAdapter

    def set_mid(self, symbol: str, mid: float) -> None:
        """Quote ``symbol`` at ``mid`` less / plus the spread (100 -> 99.95 / 100.05)."""
        ...

    def lose_next_submit_answer(self) -> None:
        """The next submit books the order, then its answer is lost."""
        ...

    def fail_next_submit_before_booking(self) -> None:
        """The next submit fails before the exchange books anything."""
        ...


class PaperVenue:
    """The paper broker; faults are chaos rules (a lost answer is an after-phase timeout)."""

    name = "paper"

    def __init__(self, broker: PaperBroker, chaos: ChaosStore) -> None:
        self.broker = broker
        self._paper = broker
        self._chaos = chaos

    def set_mid(self, symbol: str, mid: float) -> None:
        """The paper broker's own quote setter."""
        self._paper.set_quote(symbol, mid)

    def lose_next_submit_answer(self) -> None:
        """A ``TimeoutError`` after the order is booked."""
        self._chaos.inject(ChaosRule("broker.submit_order", "TimeoutError", phase="after", count=1))

    def fail_next_submit_before_booking(self) -> None:
        """A ``ConnectionError`` before anything is booked."""
        self._chaos.inject(ChaosRule("broker.submit_order", "ConnectionError", count=1))


class AlpacaVenue:
    """``AlpacaBroker`` over the fake API; faults are the fake's (a lost answer is a
    connection closed after the order is booked)."""

    name = "alpaca"

    def __init__(self, broker: AlpacaBroker, fake: FakeAlpacaAPI) -> None:
        self.broker = broker
        self._fake = fake

    def set_mid(self, symbol: str, mid: float) -> None:
        """Bid and ask around ``mid`` as the paper broker rounds them."""
        self._fake.exchange.set_quote(
            symbol, round(mid * (1 - SPREAD), 4), round(mid * (1 + SPREAD), 4)
        )

    def lose_next_submit_answer(self) -> None:
        """The fake books the order, then drops the connection unanswered."""
        self._fake.inject(SUBMIT, Fault.drop_connection(applied=True))

    def fail_next_submit_before_booking(self) -> None:
        """The fake drops the connection without booking."""
        self._fake.inject(SUBMIT, Fault.drop_connection())


@pytest.fixture
def paper_venue(client: redis.Redis, keys: KeySpace) -> PaperVenue:
    """An always-open paper broker with a clock that stands still, AAPL at 100."""
    chaos = ChaosStore(client, keys)
    broker = PaperBroker(client, keys, clock=ManualClock(), chaos=chaos, initial_cash=INITIAL_CASH)
    venue = PaperVenue(broker, chaos)
    venue.set_mid("AAPL", 100.0)
    return venue


@pytest.fixture
def alpaca_venue() -> Iterator[AlpacaVenue]:
    """An ``AlpacaBroker`` on a fresh fake API (both APIs), AAPL at 100; closed afterwards."""
    with FakeAlpacaAPI(cash=INITIAL_CASH) as fake:
        broker = AlpacaBroker(
            fake.api_key, fake.secret_key, base_url=fake.url, data_url=fake.url, timeout_s=5.0
        )
        try:
            venue = AlpacaVenue(broker, fake)
            venue.set_mid("AAPL", 100.0)
            yield venue
        finally:
            broker.close()


@pytest.fixture(params=ADAPTERS)
def venue(request: pytest.FixtureRequest) -> Venue:
    """Each adapter in turn (``paper``, ``alpaca``)."""
    found: Venue = request.getfixturevalue(f"{request.param}_venue")
    return found


def all_but(adapter: str, *, reason: str) -> list[ParameterSet]:
    """Every adapter, with ``adapter`` expected to fail the test's assertions for ``reason``:
    use as ``@pytest.mark.parametrize("venue", all_but(...), indirect=True)``."""
    expected_failure = pytest.mark.xfail(reason=reason, strict=True, raises=AssertionError)
    return [
        pytest.param(name, marks=expected_failure if name == adapter else ()) for name in ADAPTERS
    ]


def refusal(call: Callable[[], object]) -> BrokerAPIError:
    """The ``BrokerAPIError`` that ``call()`` raises; an ``AssertionError`` when it succeeds
    (so that an adapter accepting what it should refuse is a known-difference failure)."""
    try:
        call()
    except BrokerAPIError as refused:
        return refused
    raise AssertionError("the broker accepted what it should have refused")


def failure(call: Callable[[], object]) -> Exception:
    """The exception ``call()`` raises."""
    with pytest.raises(Exception) as raised:
        call()
    return raised.value


def classify(exc: BaseException) -> AlchemiserError:
    """The default classifier's verdict, for the trading component."""
    return trading_classifier().classify(exc, component="trading")


# --- placing orders ----------------------------------------------------------------------------


def test_a_new_account_holds_cash_and_nothing_else(venue: Venue) -> None:
    """Before any order: no positions, no orders, buying power equal to the cash."""
    assert venue.broker.list_positions() == []
    assert venue.broker.list_orders() == []
    assert venue.broker.get_account() == Account(cash=INITIAL_CASH, buying_power=INITIAL_CASH)


def test_market_buy_fills_at_the_ask(venue: Venue) -> None:
    """A market buy is booked under our client_order_id and fills in full at the ask."""
    placed = venue.broker.submit_order(order_request())

    assert placed.client_order_id == "alc-1"
    assert placed.id
    assert (placed.symbol, placed.side, placed.qty, placed.type) == ("AAPL", "buy", 10.0, "market")
    assert (placed.status, placed.filled_qty, placed.filled_avg_price) == ("filled", 10.0, 100.05)
    assert placed.limit_price is None
    assert datetime.fromisoformat(placed.submitted_at).tzinfo is not None


def test_a_buy_fill_moves_cash_buying_power_and_positions(venue: Venue) -> None:
    """After buying 10 at 100.05: one position of 10; cash and buying power down 1000.50."""
    venue.broker.submit_order(order_request())

    assert venue.broker.list_positions() == [Position("AAPL", 10.0)]
    assert venue.broker.get_account() == Account(cash=98_999.5, buying_power=98_999.5)


def test_market_sell_fills_at_the_bid_and_returns_cash(venue: Venue) -> None:
    """A market sell of held shares fills at the bid and adds the proceeds to cash."""
    venue.broker.submit_order(order_request("buy-1"))

    sold = venue.broker.submit_order(order_request("sell-1", side="sell", qty=4))

    assert (sold.side, sold.status, sold.filled_qty, sold.filled_avg_price) == (
        "sell",
        "filled",
        4.0,
        99.95,
    )
    assert venue.broker.get_account().cash == pytest.approx(INITIAL_CASH - 1000.5 + 4 * 99.95)
    assert venue.broker.list_positions() == [Position("AAPL", 6.0)]


def test_marketable_limit_fills_at_the_quote_not_the_limit(venue: Venue) -> None:
    """A buy limit above the ask fills at once, at the ask."""
    placed = venue.broker.submit_order(order_request(type="limit", limit_price=120.0))

    assert (placed.type, placed.limit_price) == ("limit", 120.0)
    assert (placed.status, placed.filled_qty, placed.filled_avg_price) == ("filled", 10.0, 100.05)


def test_resting_limit_is_accepted_and_spends_no_cash(venue: Venue) -> None:
    """A buy limit below the ask rests as accepted: nothing filled, no cash spent, no shares."""
    resting = venue.broker.submit_order(order_request(type="limit", limit_price=90.0))

    assert (resting.type, resting.limit_price, resting.status) == ("limit", 90.0, "accepted")
    assert (resting.filled_qty, resting.filled_avg_price) == (0.0, None)
    assert venue.broker.get_account().cash == INITIAL_CASH
    assert venue.broker.list_positions() == []


@pytest.mark.parametrize(
    "venue",
    all_but(
        "paper",
        reason="the paper broker reserves nothing for resting buy limits: its buying power "
        "stays equal to cash, and it accepts buys the resting orders have already spoken for",
    ),
    indirect=True,
)
def test_resting_buy_limit_reserves_buying_power(venue: Venue) -> None:
    """A resting buy of 1000 at 90 takes 90,000 of buying power (not cash); a market buy of
    20,010 beyond the 10,000 left is refused with 403, as Alpaca does."""
    venue.broker.submit_order(order_request("rest", qty=1000, type="limit", limit_price=90.0))

    account = venue.broker.get_account()
    assert account.cash == INITIAL_CASH
    assert account.buying_power == pytest.approx(INITIAL_CASH - 90_000.0)
    refused = refusal(lambda: venue.broker.submit_order(order_request("more", qty=200)))
    assert refused.status_code == 403
    assert type(classify(refused)) is InsufficientFundsError


# --- refusals --------------------------------------------------------------------------------


def test_duplicate_client_order_id_is_refused_and_the_original_stands(venue: Venue) -> None:
    """A repeated client_order_id: 422 -> DuplicateOrderError; nothing more is booked and the
    look-up finds the first order."""
    original = venue.broker.submit_order(order_request("alc-dup"))

    refused = refusal(lambda: venue.broker.submit_order(order_request("alc-dup", qty=3)))

    assert refused.status_code == 422
    assert "client_order_id must be unique" in refused.body
    assert type(classify(refused)) is DuplicateOrderError
    assert venue.broker.get_order_by_client_id("alc-dup") == original
    assert [o.id for o in venue.broker.list_orders()] == [original.id]
    assert venue.broker.list_positions() == [Position("AAPL", 10.0)]


def test_buy_beyond_buying_power_is_refused_with_403(venue: Venue) -> None:
    """Buying 5,000 at 100.05 with 100,000: 403 -> InsufficientFundsError, never retried;
    nothing booked, cash untouched."""
    refused = refusal(lambda: venue.broker.submit_order(order_request(qty=5_000)))

    assert refused.status_code == 403
    assert "insufficient buying power" in refused.body
    error = classify(refused)
    assert type(error) is InsufficientFundsError
    assert not error.should_retry()
    assert venue.broker.list_orders() == []
    assert venue.broker.get_account().cash == INITIAL_CASH


def test_sell_beyond_the_position_is_refused(venue: Venue) -> None:
    """Selling 3 of 2 held is refused ("insufficient qty available"), never retried; the
    position and the order list stay as they were."""
    bought = venue.broker.submit_order(order_request("buy-1", qty=2))

    refused = refusal(
        lambda: venue.broker.submit_order(order_request("sell-1", side="sell", qty=3))
    )

    assert "insufficient qty available" in refused.body
    assert not classify(refused).should_retry()
    assert venue.broker.list_positions() == [Position("AAPL", 2.0)]
    assert [o.id for o in venue.broker.list_orders()] == [bought.id]


@pytest.mark.parametrize(
    "venue",
    all_but(
        "paper",
        reason="the paper broker refuses a sell beyond the position with 422 (classified "
        "PositionValidationError); Alpaca answers 403 (InsufficientFundsError)",
    ),
    indirect=True,
)
def test_sell_beyond_the_position_is_a_403(venue: Venue) -> None:
    """Alpaca's status for a sell beyond the shares held is 403, an InsufficientFundsError."""
    venue.broker.submit_order(order_request("buy-1", qty=2))

    refused = refusal(
        lambda: venue.broker.submit_order(order_request("sell-1", side="sell", qty=3))
    )

    assert refused.status_code == 403
    assert type(classify(refused)) is InsufficientFundsError


@pytest.mark.parametrize(
    "venue",
    all_but(
        "paper",
        reason="the paper broker checks a sell against the shares held only, not against "
        "those its resting sell orders already offer",
    ),
    indirect=True,
)
def test_shares_offered_by_a_resting_sell_cannot_be_sold_again(venue: Venue) -> None:
    """With all 10 shares offered by a resting sell limit, a market sell of 10 is refused,
    as Alpaca does; the position stays."""
    venue.broker.submit_order(order_request("buy-1"))
    resting = venue.broker.submit_order(
        order_request("offer", side="sell", type="limit", limit_price=200.0)
    )
    assert resting.status == "accepted"

    refused = refusal(lambda: venue.broker.submit_order(order_request("sell-again", side="sell")))

    assert "insufficient qty available" in refused.body
    assert venue.broker.list_positions() == [Position("AAPL", 10.0)]


# --- cancel ----------------------------------------------------------------------------------


def test_resting_order_can_be_canceled(venue: Venue) -> None:
    """Cancel returns the order, canceled and unfilled; both look-ups then read it canceled."""
    resting = venue.broker.submit_order(order_request(type="limit", limit_price=90.0))

    canceled = venue.broker.cancel_order(resting.id)

    assert (canceled.id, canceled.client_order_id, canceled.limit_price) == (
        resting.id,
        "alc-1",
        90.0,
    )
    assert (canceled.status, canceled.filled_qty, canceled.filled_avg_price) == (
        "canceled",
        0.0,
        None,
    )
    by_client_id = venue.broker.get_order_by_client_id("alc-1")
    by_id = venue.broker.get_order(resting.id)
    assert by_client_id is not None
    assert by_id is not None
    assert (by_client_id.status, by_id.status) == ("canceled", "canceled")
    assert venue.broker.get_account().cash == INITIAL_CASH


def test_cancel_of_a_filled_order_is_refused_with_422(venue: Venue) -> None:
    """A filled order cannot be canceled: 422 -> OrderExecutionError, never retried."""
    filled = venue.broker.submit_order(order_request())

    refused = refusal(lambda: venue.broker.cancel_order(filled.id))

    assert refused.status_code == 422
    error = classify(refused)
    assert type(error) is OrderExecutionError
    assert not error.should_retry()


def test_cancel_of_a_canceled_order_is_refused_with_422(venue: Venue) -> None:
    """A second cancel is refused with 422 and leaves the order canceled."""
    resting = venue.broker.submit_order(order_request(type="limit", limit_price=90.0))
    venue.broker.cancel_order(resting.id)

    refused = refusal(lambda: venue.broker.cancel_order(resting.id))

    assert refused.status_code == 422
    assert type(classify(refused)) is OrderExecutionError
    again = venue.broker.get_order(resting.id)
    assert again is not None
    assert again.status == "canceled"


def test_cancel_of_an_unknown_order_is_refused_with_404(venue: Venue) -> None:
    """An order id of Alpaca's shape that the broker never issued: 404 naming the id,
    an OrderExecutionError, never retried."""
    refused = refusal(lambda: venue.broker.cancel_order(UNKNOWN_UUID))

    assert refused.status_code == 404
    assert UNKNOWN_UUID in refused.body
    error = classify(refused)
    assert type(error) is OrderExecutionError
    assert not error.should_retry()


def test_cancel_of_an_id_no_broker_issues_is_refused_with_404(venue: Venue) -> None:
    """An order id that is no broker's (not even a UUID): 404 naming the id, as for any
    unknown order, not an error of the client library."""
    refused = refusal(lambda: venue.broker.cancel_order("no-such-order"))

    assert refused.status_code == 404
    assert "no-such-order" in refused.body
    assert type(classify(refused)) is OrderExecutionError


# --- look-ups --------------------------------------------------------------------------------


def test_orders_are_found_by_client_id_and_by_broker_id(venue: Venue) -> None:
    """Both look-ups return the order as placed; ids never issued (of Alpaca's shape or not)
    are ``None``."""
    placed = venue.broker.submit_order(order_request("alc-find"))

    assert venue.broker.get_order_by_client_id("alc-find") == placed
    assert venue.broker.get_order(placed.id) == placed
    assert venue.broker.get_order_by_client_id("alc-other") is None
    assert venue.broker.get_order(UNKNOWN_UUID) is None
    assert venue.broker.get_order("nope") is None


def test_positions_are_sorted_by_symbol_and_flat_ones_dropped(venue: Venue) -> None:
    """Positions come sorted by symbol; a position sold to zero disappears."""
    venue.set_mid("MSFT", 300.0)
    venue.set_mid("SPY", 500.0)
    venue.broker.submit_order(order_request("b1", symbol="SPY", qty=1))
    venue.broker.submit_order(order_request("b2", symbol="MSFT", qty=2))
    venue.broker.submit_order(order_request("b3", symbol="AAPL", qty=3))
    venue.broker.submit_order(order_request("s1", symbol="MSFT", qty=2, side="sell"))

    assert venue.broker.list_positions() == [Position("AAPL", 3.0), Position("SPY", 1.0)]


def test_list_orders_returns_every_status_oldest_first(venue: Venue) -> None:
    """Filled, canceled and open orders all come back, oldest first."""
    first = venue.broker.submit_order(order_request("a"))
    second = venue.broker.submit_order(order_request("b", type="limit", limit_price=50.0))
    venue.broker.cancel_order(second.id)
    third = venue.broker.submit_order(order_request("c", type="limit", limit_price=60.0))

    listed = venue.broker.list_orders()

    assert [(o.client_order_id, o.status) for o in listed] == [
        ("a", "filled"),
        ("b", "canceled"),
        ("c", "accepted"),
    ]
    assert [o.id for o in listed] == [first.id, second.id, third.id]


@pytest.mark.parametrize(
    "venue",
    all_but(
        "paper",
        reason="the paper broker sorts by (submitted_at, client_order_id): orders booked at "
        "one clock reading come back in client_order_id order, not in booking order",
    ),
    indirect=True,
)
def test_list_orders_keeps_booking_order_whatever_the_client_ids(venue: Venue) -> None:
    """Orders placed as c, a, b list as c, a, b."""
    for coid in ("c", "a", "b"):
        venue.broker.submit_order(order_request(coid))

    assert [o.client_order_id for o in venue.broker.list_orders()] == ["c", "a", "b"]


# --- quotes ----------------------------------------------------------------------------------


def test_quote_is_the_set_bid_and_ask(venue: Venue) -> None:
    """AAPL quoted around 100 reads 99.95 / 100.05, mid 100, stamped with a zoned time."""
    quote = venue.broker.get_quote("AAPL")

    assert (quote.symbol, quote.bid, quote.ask) == ("AAPL", 99.95, 100.05)
    assert quote.mid == pytest.approx(100.0)
    assert datetime.fromisoformat(quote.at).tzinfo is not None


def test_quote_of_an_unquoted_symbol_is_positive_and_stable(venue: Venue) -> None:
    """A symbol no test priced still has a positive bid below its ask, the same twice."""
    first = venue.broker.get_quote("ZZZZ")
    second = venue.broker.get_quote("ZZZZ")

    assert 0 < first.bid < first.ask
    assert (second.bid, second.ask) == (first.bid, first.ask)


# --- ambiguous failures ----------------------------------------------------------------------


def test_an_answer_lost_after_booking_leaves_the_order_to_be_found(venue: Venue) -> None:
    """The ambiguous failure: booked, then no answer. The error is a retried one, the look-up
    by client_order_id finds the fill, and resubmitting is refused as a duplicate."""
    venue.lose_next_submit_answer()

    lost = failure(lambda: venue.broker.submit_order(order_request("alc-lost")))

    error = classify(lost)
    assert type(error) is TradingClientError
    assert error.should_retry()
    booked = venue.broker.get_order_by_client_id("alc-lost")
    assert booked is not None
    assert booked.status == "filled"
    retry = refusal(lambda: venue.broker.submit_order(order_request("alc-lost")))
    assert retry.status_code == 422
    assert type(classify(retry)) is DuplicateOrderError
    assert [o.id for o in venue.broker.list_orders()] == [booked.id]


def test_a_failure_before_booking_books_nothing(venue: Venue) -> None:
    """A failure before the exchange books: a retried error, nothing under the
    client_order_id, and resubmitting it fills."""
    venue.fail_next_submit_before_booking()

    early = failure(lambda: venue.broker.submit_order(order_request("alc-early")))

    error = classify(early)
    assert type(error) is TradingClientError
    assert error.should_retry()
    assert venue.broker.get_order_by_client_id("alc-early") is None
    assert venue.broker.list_orders() == []
    assert venue.broker.submit_order(order_request("alc-early")).status == "filled"
