"""Tests of ``tasks.brokers.paper``: the simulated exchange on a real Redis, no worker.

What every ``BrokerAdapter`` must do is tested against this broker and Alpaca's in
test_broker_contract.py; here only what is the paper broker's own: its counters and refusal
texts, the atomicity of its Lua scripts, market hours, fault rules and reset."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import redis

from resilience.chaos import ChaosRule, ChaosStore
from resilience.errors import MarketClosedError, PositionValidationError
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
from tasks.brokers.base import Account, BrokerAPIError, Position
from tasks.brokers.calendar import NEW_YORK
from tasks.brokers.paper import PaperBroker
from tasks.brokers.paper_keys import PaperKeys
from tasks.classification import trading_classifier
from tests.builders import order_request

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


def api_error(call: Any) -> BrokerAPIError:
    """The ``BrokerAPIError`` that ``call()`` raises."""
    with pytest.raises(BrokerAPIError) as refused:
        call()
    return refused.value


# --- counters and refusal texts --------------------------------------------------------------


def test_counters_count_fills_and_cancels(broker: PaperBroker) -> None:
    """Every booked order counts as accepted; every cancel as canceled."""
    broker.submit_order(order_request())
    assert broker.counters() == {"accepted": 1}

    resting = broker.submit_order(order_request("alc-2", type="limit", limit_price=90.0))
    broker.cancel_order(resting.id)

    assert broker.counters() == {"accepted": 2, "canceled": 1}


def test_duplicate_client_order_id_gets_alpacas_body_and_is_counted(broker: PaperBroker) -> None:
    """A repeated client_order_id is refused with Alpaca's message, counted as a duplicate."""
    broker.submit_order(order_request())
    refused = api_error(lambda: broker.submit_order(order_request(qty=3)))

    assert refused.body == "client_order_id must be unique"
    assert broker.counters() == {"accepted": 1, "duplicates_rejected": 1}


def test_buy_beyond_cash_names_the_cash_and_is_counted(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """With ``initial_cash=500`` a buy of 500.25 is refused with 403 naming the cash held,
    counted as rejected; the cash stays 500."""
    paper = PaperBroker(client, keys, clock=clock, initial_cash=500.0)
    paper.set_quote("AAPL", 100.0)

    refused = api_error(lambda: paper.submit_order(order_request(qty=5)))

    assert refused.status_code == 403
    assert refused.body == "insufficient buying power (cash 500.00)"
    assert paper.get_account() == Account(cash=500.0, buying_power=500.0)
    assert paper.counters() == {"rejected": 1}


def test_sell_beyond_position_is_refused_with_422(broker: PaperBroker) -> None:
    """Selling more than held gets 422 naming the shares held, a PositionValidationError.
    Alpaca answers 403 here: test_broker_contract.py marks the difference."""
    broker.submit_order(order_request("buy-1", qty=2))

    refused = api_error(lambda: broker.submit_order(order_request("sell-1", side="sell", qty=3)))

    assert refused.status_code == 422
    assert "held 2" in refused.body
    assert type(trading_classifier().classify(refused)) is PositionValidationError
    assert broker.counters() == {"accepted": 1, "rejected": 1}


def test_cancel_of_a_filled_order_names_its_status(broker: PaperBroker) -> None:
    """The 422 for a filled order says which status it is in."""
    filled = broker.submit_order(order_request())
    refused = api_error(lambda: broker.cancel_order(filled.id))
    assert refused.body == "order is not cancelable (status filled)"


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
            placed = broker.submit_order(order_request("alc-race"))
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
    assert client.hlen(PaperKeys(keys).orders) == 1
    assert client.hlen(PaperKeys(keys).order_ids) == 1
    log = cast("list[tuple[str, dict[str, str]]]", client.xrange(PaperKeys(keys).log))
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
        paper.submit_order(order_request())

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
    placed = paper.submit_order(order_request())
    assert placed.status == "filled"
    assert placed.submitted_at == "2026-01-06T15:00:00+00:00"


def test_always_open_ignores_the_calendar(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """The default always-open broker fills on a Saturday."""
    clock.set(SATURDAY_UTC.timestamp())
    paper = PaperBroker(client, keys, clock=clock)
    assert paper.submit_order(order_request()).status == "filled"


# --- chaos ---------------------------------------------------------------------------------------


def test_fault_rules_fire_in_their_phase_once_each_and_are_counted(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A before-phase rule raises before booking, an after-phase rule after it; each of
    count 1 fires once and is counted, and the next submit goes through. (What a lost answer
    or an early failure leaves at the broker is in test_broker_contract.py, which injects
    them with these rules.)"""
    chaos = ChaosStore(client, keys)
    chaos.inject(ChaosRule("broker.submit_order", "ConnectionError", count=1))
    chaos.inject(ChaosRule("broker.submit_order", "TimeoutError", phase="after", count=1))
    paper = PaperBroker(client, keys, clock=clock, chaos=chaos)

    with pytest.raises(ConnectionError):
        paper.submit_order(order_request("alc-early"))
    with pytest.raises(TimeoutError):
        paper.submit_order(order_request("alc-lost"))

    assert paper.submit_order(order_request("alc-next")).status == "filled"
    assert [o.client_order_id for o in paper.list_orders()] == ["alc-lost", "alc-next"]
    assert chaos.fired() == {"broker.submit_order": 2}
    assert paper.counters() == {"accepted": 2}


def test_reset_forgets_everything(broker: PaperBroker) -> None:
    """``reset`` empties orders, positions, counters and quotes."""
    broker.submit_order(order_request())
    broker.reset()
    assert broker.list_orders() == []
    assert broker.list_positions() == []
    assert broker.counters() == {}
    assert broker.get_account().cash == 1_000_000.0
