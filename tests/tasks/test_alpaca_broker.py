"""Tests of ``tasks.brokers.alpaca`` against the fake Alpaca API on loopback (real HTTP).

What every ``BrokerAdapter`` must do is tested against this adapter and the paper broker in
test_broker_contract.py; here only what is Alpaca's own: the requests sent, the statuses
mapped, errors and their classification, timeouts, secrets, rate-limit headers and
configuration."""

from __future__ import annotations

import logging
import math
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Any

import pytest
import requests
from alpaca.trading.enums import OrderStatus

from resilience.errors import (
    AlchemiserError,
    ConfigurationError,
    MarketDataError,
    RateLimitError,
    SecurityError,
    TradingClientError,
)
from resilience.policy.classify import Component
from tasks.brokers.alpaca import STATUS_MAP, AlpacaBroker, RateLimitHint
from tasks.brokers.base import BrokerAPIError
from tasks.classification import trading_classifier
from tests.builders import order_request
from tests.fakes.alpaca_api import FakeAlpacaAPI, Fault

API_KEY = "PKFAKEKEYID0123456789"
SECRET_KEY = "s3cr3t-VALUE-n3v3r-sh0wn-ABCDEFGH"
SHORT_TIMEOUT_S = 0.3
SUBMIT = "POST /v2/orders"
ACCOUNT = "GET /v2/account"
QUOTE = "GET /v2/stocks/{symbol}/quotes/latest"

BrokerFactory = Callable[..., AlpacaBroker]


@pytest.fixture
def fake() -> Iterator[FakeAlpacaAPI]:
    """The fake API, keyed with credentials distinctive enough to search for, AAPL at 100."""
    with FakeAlpacaAPI(api_key=API_KEY, secret_key=SECRET_KEY) as api:
        api.exchange.set_quote("AAPL", 99.95, 100.05)
        yield api


@pytest.fixture
def hints() -> list[RateLimitHint]:
    """What ``on_rate_limit`` heard."""
    return []


@pytest.fixture
def make_broker(fake: FakeAlpacaAPI, hints: list[RateLimitHint]) -> Iterator[BrokerFactory]:
    """Adapters pointed at the fake (both APIs), closed afterwards; keywords override."""
    made: list[AlpacaBroker] = []

    def make(**overrides: Any) -> AlpacaBroker:
        options: dict[str, Any] = {
            "api_key": API_KEY,
            "secret_key": SECRET_KEY,
            "base_url": fake.url,
            "data_url": fake.url,
            "timeout_s": 5.0,
            "on_rate_limit": hints.append,
        }
        options.update(overrides)
        broker = AlpacaBroker(options.pop("api_key"), options.pop("secret_key"), **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture
def broker(make_broker: BrokerFactory) -> AlpacaBroker:
    """An adapter with the default settings."""
    return make_broker()


def failure(call: Callable[[], object]) -> Exception:
    """The exception ``call()`` raises."""
    with pytest.raises(Exception) as raised:
        call()
    return raised.value


def classify(exc: BaseException, component: Component = "trading") -> AlchemiserError:
    """The default classifier's verdict."""
    return trading_classifier().classify(exc, component=component)


# --- each adapter method on the wire ---------------------------------------------------------
# What every adapter does with orders, positions and the account is in test_broker_contract.py;
# here what goes over HTTP and how Alpaca's answers map.


def test_submit_market_order_sends_a_day_order(broker: AlpacaBroker, fake: FakeAlpacaAPI) -> None:
    """A market buy is one POST of Alpaca's day order under our client_order_id; the order
    the exchange booked is the one returned."""
    placed = broker.submit_order(order_request())

    [booked] = fake.exchange.orders
    assert booked["id"] == placed.id
    assert (booked["client_order_id"], booked["time_in_force"], booked["qty"]) == (
        "alc-1",
        "day",
        "10",
    )
    assert [(r.method, r.path, r.status) for r in fake.requests] == [("POST", "/v2/orders", 200)]


def test_submit_limit_order_sends_the_limit_price(
    broker: AlpacaBroker, fake: FakeAlpacaAPI
) -> None:
    """A limit order goes out as Alpaca's limit order with its price; ``new`` reads
    ``accepted``."""
    placed = broker.submit_order(order_request(type="limit", limit_price=50.0))

    assert placed.status == "accepted"
    [booked] = fake.exchange.orders
    assert (booked["type"], booked["limit_price"], booked["status"]) == ("limit", "50", "new")


def test_get_order_by_client_id_asks_by_client_order_id_and_404_is_none(
    broker: AlpacaBroker, fake: FakeAlpacaAPI
) -> None:
    """The look-up by client_order_id is its own route; its 404 is read as "no such order"."""
    placed = broker.submit_order(order_request("alc-7"))

    assert broker.get_order_by_client_id("alc-7") == placed
    assert broker.get_order_by_client_id("never-placed") is None
    assert [r.status for r in fake.requests if r.route == "GET /v2/orders:by_client_order_id"] == [
        200,
        404,
    ]


def test_get_order_by_broker_id_asks_only_for_uuids(
    broker: AlpacaBroker, fake: FakeAlpacaAPI
) -> None:
    """By broker id: a 404 is None, and a non-UUID (never Alpaca's) is None unasked."""
    broker.submit_order(order_request())

    assert broker.get_order("00000000-0000-4000-8000-00000000dead") is None
    assert [r.status for r in fake.requests if r.route == "GET /v2/orders/{order_id}"] == [404]
    hits = fake.hits()
    assert broker.get_order("not-a-uuid") is None
    assert fake.hits() == hits


def test_cancel_order_deletes_then_reads_the_order(
    broker: AlpacaBroker, fake: FakeAlpacaAPI
) -> None:
    """Cancel is a DELETE (204) then a read of the order, which is canceled."""
    resting = broker.submit_order(order_request(type="limit", limit_price=50.0))

    canceled = broker.cancel_order(resting.id)

    assert (canceled.id, canceled.status) == (resting.id, "canceled")
    assert [(r.method, r.status) for r in fake.requests[1:]] == [("DELETE", 204), ("GET", 200)]


def test_cancel_of_a_non_uuid_is_refused_unasked(broker: AlpacaBroker, fake: FakeAlpacaAPI) -> None:
    """An id that is not a UUID (never Alpaca's) is refused as unknown (404) without a
    request, not with alpaca-py's ValueError."""
    exc = failure(lambda: broker.cancel_order("no-such-order"))

    assert isinstance(exc, BrokerAPIError)
    assert exc.status_code == 404
    assert fake.hits() == 0


def test_get_quote_reads_the_latest_quote_endpoint(
    broker: AlpacaBroker, fake: FakeAlpacaAPI
) -> None:
    """The quote comes from GET /v2/stocks/{symbol}/quotes/latest on the data URL."""
    fake.exchange.set_quote("MSFT", 409.5, 410.5)

    quote = broker.get_quote("MSFT")

    assert (quote.symbol, quote.bid, quote.ask, quote.mid) == ("MSFT", 409.5, 410.5, 410.0)
    assert abs(datetime.fromisoformat(quote.at).timestamp() - time.time()) < 60
    assert [(r.path, r.route) for r in fake.requests] == [("/v2/stocks/MSFT/quotes/latest", QUOTE)]


def test_every_alpaca_status_has_a_mapping() -> None:
    """Each of alpaca-py's order statuses maps to accepted, filled or canceled."""
    assert set(STATUS_MAP) == set(OrderStatus)
    assert set(STATUS_MAP.values()) == {"accepted", "filled", "canceled"}


@pytest.mark.parametrize(
    ("alpaca_status", "expected"),
    [
        ("pending_new", "accepted"),
        ("partially_filled", "accepted"),
        ("pending_cancel", "accepted"),
        ("expired", "canceled"),
        ("rejected", "canceled"),
        ("replaced", "canceled"),
    ],
)
def test_statuses_read_over_the_wire_are_mapped(
    broker: AlpacaBroker, fake: FakeAlpacaAPI, alpaca_status: str, expected: str
) -> None:
    """An order in each Alpaca status reads back in Alchemiser's vocabulary."""
    placed = broker.submit_order(order_request(type="limit", limit_price=50.0))
    fake.exchange.set_order_status(placed.id, alpaca_status)

    found = broker.get_order(placed.id)

    assert found is not None
    assert found.status == expected


# --- errors reach the classifier with their status -------------------------------------------


def test_429_with_retry_after(
    make_broker: BrokerFactory, fake: FakeAlpacaAPI, hints: list[RateLimitHint]
) -> None:
    """A 429 with Retry-After: 7 -> RateLimitError waiting 7 s; on_rate_limit hears ~now+7."""
    fake.set_rate_limit(200, 1.0)  # the window's own reset is sooner than Retry-After
    broker = make_broker()
    fake.inject(ACCOUNT, Fault.rate_limited(retry_after_s=7))

    before_s = time.time()
    exc = failure(broker.get_account)

    assert isinstance(exc, BrokerAPIError)
    assert exc.status_code == 429
    error = classify(exc)
    assert type(error) is RateLimitError
    assert error.retry_after_s == 7.0
    assert error.get_retry_delay() >= 7.0
    [hint] = hints
    assert (hint.limit, hint.remaining, hint.api) == (200, 0, "trading")
    assert hint.reset_at_s is not None
    assert before_s + 7 <= hint.reset_at_s <= time.time() + 7
    assert broker.trading_rate_limit == hint


def test_429_with_rate_limit_reset(
    broker: AlpacaBroker, fake: FakeAlpacaAPI, hints: list[RateLimitHint]
) -> None:
    """A 429 with X-RateLimit-Reset (Unix s) -> RateLimitError until then; the hint has it."""
    reset_at_s = math.ceil(time.time() + 30)
    fake.inject(SUBMIT, Fault.rate_limited(reset_at_s=reset_at_s))

    exc = failure(lambda: broker.submit_order(order_request()))

    error = classify(exc)
    assert type(error) is RateLimitError
    assert error.retry_after_s == pytest.approx(reset_at_s - time.time(), abs=1.0)
    assert [h.reset_at_s for h in hints] == [reset_at_s]
    assert fake.exchange.orders == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(
    broker: AlpacaBroker, fake: FakeAlpacaAPI, status: int
) -> None:
    """5xx on the trading API -> TradingClientError, retried by the task layer."""
    fake.inject(SUBMIT, Fault.error(status))

    exc = failure(lambda: broker.submit_order(order_request()))

    assert isinstance(exc, BrokerAPIError)
    assert exc.status_code == status
    error = classify(exc)
    assert type(error) is TradingClientError
    assert error.should_retry()


def test_market_data_server_error_is_market_data_error(
    broker: AlpacaBroker, fake: FakeAlpacaAPI
) -> None:
    """A 503 from the data API, classified for market data, is a retried MarketDataError."""
    fake.inject(QUOTE, Fault.error(503))

    error = classify(failure(lambda: broker.get_quote("AAPL")), "market_data")

    assert type(error) is MarketDataError
    assert error.should_retry()


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.rate_limited(), 429), (Fault.error(504), 504), (Fault.error(503), 503)],
)
def test_alpaca_py_does_not_retry_by_itself(
    broker: AlpacaBroker, fake: FakeAlpacaAPI, fault: Fault, status: int
) -> None:
    """alpaca-py's own 429/504 retry loop is off: one failed call is exactly one server hit,
    with no 3 s sleep."""
    fake.inject(ACCOUNT, fault, fault, fault, fault)

    started_s = time.monotonic()
    exc = failure(broker.get_account)

    assert time.monotonic() - started_s < 1.0
    assert isinstance(exc, BrokerAPIError)
    assert exc.status_code == status
    assert fake.hits(ACCOUNT) == 1
    assert fake.pending_faults(ACCOUNT) == 3


def test_hanging_trading_api_times_out_within_the_timeout(
    make_broker: BrokerFactory, fake: FakeAlpacaAPI
) -> None:
    """A server that never answers gives requests' Timeout after timeout_s, a transient error."""
    broker = make_broker(timeout_s=SHORT_TIMEOUT_S)
    fake.inject(SUBMIT, Fault.hang(30))

    started_s = time.monotonic()
    exc = failure(lambda: broker.submit_order(order_request()))
    elapsed_s = time.monotonic() - started_s

    assert isinstance(exc, requests.Timeout)
    assert SHORT_TIMEOUT_S * 0.9 <= elapsed_s < SHORT_TIMEOUT_S + 1.0
    error = classify(exc)
    assert type(error) is TradingClientError
    assert error.should_retry()
    assert fake.hits(SUBMIT) == 1


def test_hanging_data_api_times_out_too(make_broker: BrokerFactory, fake: FakeAlpacaAPI) -> None:
    """The market-data client has the timeout as well; classified as a MarketDataError."""
    broker = make_broker(timeout_s=SHORT_TIMEOUT_S)
    fake.inject(QUOTE, Fault.hang(30))

    started_s = time.monotonic()
    exc = failure(lambda: broker.get_quote("AAPL"))

    assert isinstance(exc, requests.Timeout)
    assert time.monotonic() - started_s < SHORT_TIMEOUT_S + 1.0
    assert type(classify(exc, "market_data")) is MarketDataError


def test_order_booked_behind_a_timeout_is_found_by_client_id(
    make_broker: BrokerFactory, fake: FakeAlpacaAPI
) -> None:
    """The ambiguous failure: booked, then no answer. The look-up the task does finds it."""
    broker = make_broker(timeout_s=SHORT_TIMEOUT_S)
    fake.inject(SUBMIT, Fault.hang(30, applied=True))

    assert isinstance(
        failure(lambda: broker.submit_order(order_request("alc-amb"))), requests.Timeout
    )

    found = broker.get_order_by_client_id("alc-amb")
    assert found is not None
    assert found.status == "filled"


def test_dropped_connection_is_a_connection_error(
    broker: AlpacaBroker, fake: FakeAlpacaAPI
) -> None:
    """The server closing without an answer -> requests' ConnectionError (not a timeout),
    a transient error, after exactly one hit."""
    fake.inject(SUBMIT, Fault.drop_connection())

    exc = failure(lambda: broker.submit_order(order_request()))

    assert isinstance(exc, requests.ConnectionError)
    assert not isinstance(exc, requests.Timeout)
    error = classify(exc)
    assert type(error) is TradingClientError
    assert error.should_retry()
    assert fake.hits(SUBMIT) == 1


def test_refused_connection_is_a_connection_error(make_broker: BrokerFactory) -> None:
    """Nothing listening -> requests' ConnectionError, a transient error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    broker = make_broker(base_url=closed_url)

    exc = failure(broker.get_account)

    assert isinstance(exc, requests.ConnectionError)
    assert type(classify(exc)) is TradingClientError


def test_wrong_keys_are_401_security_error(make_broker: BrokerFactory, fake: FakeAlpacaAPI) -> None:
    """A wrong secret: 401 -> SecurityError (never retried)."""
    broker = make_broker(secret_key="not-the-secret")

    exc = failure(broker.get_account)

    assert isinstance(exc, BrokerAPIError)
    assert exc.status_code == 401
    error = classify(exc)
    assert type(error) is SecurityError
    assert not error.should_retry()


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_appear_in_no_error_log_or_repr(
    make_broker: BrokerFactory, fake: FakeAlpacaAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither key shows in any error's str, repr, traceback or classification, nor in the
    adapter's repr, nor in any log record; API errors keep no link to alpaca-py's original."""
    caplog.set_level(logging.DEBUG)
    broker = make_broker(timeout_s=SHORT_TIMEOUT_S)
    broker.submit_order(order_request("alc-s"))
    fake.inject(SUBMIT, Fault.error(500), Fault.rate_limited(retry_after_s=1), Fault.hang(30))
    fake.inject(SUBMIT, Fault.drop_connection())
    errors = [failure(partial(broker.submit_order, order_request(f"alc-{i}"))) for i in range(4)]
    errors.append(failure(lambda: broker.submit_order(order_request("alc-s"))))  # 422
    errors.append(failure(lambda: make_broker(secret_key="wrong").get_account()))  # 401

    assert [type(e).__name__ for e in errors] == [
        "BrokerAPIError",
        "BrokerAPIError",
        "ReadTimeout",
        "ConnectionError",
        "BrokerAPIError",
        "BrokerAPIError",
    ]
    texts = [repr(broker), caplog.text]
    for exc in errors:
        error = classify(exc)
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        texts += [str(error), repr(error), str(error.to_dict())]
        if isinstance(exc, BrokerAPIError):
            assert exc.__context__ is None
            assert exc.__cause__ is None
            texts.append(str(exc.headers))
    for text in texts:
        assert API_KEY not in text
        assert SECRET_KEY not in text


# --- rate-limit headers ----------------------------------------------------------------------


def test_rate_limit_headers_are_read_on_every_response(
    broker: AlpacaBroker, fake: FakeAlpacaAPI, hints: list[RateLimitHint]
) -> None:
    """Successes update the last hint of their API; on_rate_limit stays quiet above zero."""
    assert broker.trading_rate_limit is None
    broker.get_account()
    broker.get_quote("AAPL")

    assert broker.trading_rate_limit is not None
    assert (broker.trading_rate_limit.limit, broker.trading_rate_limit.remaining) == (200, 199)
    assert broker.market_data_rate_limit is not None
    assert broker.market_data_rate_limit.api == "market_data"
    assert broker.market_data_rate_limit.remaining == 198
    reset_at_s = broker.trading_rate_limit.reset_at_s
    assert reset_at_s is not None
    assert time.time() < reset_at_s <= time.time() + 61
    assert hints == []


def test_on_rate_limit_when_remaining_reaches_zero_and_on_429(
    broker: AlpacaBroker, fake: FakeAlpacaAPI, hints: list[RateLimitHint]
) -> None:
    """With 3 per window: the 3rd answer (remaining 0) and the 4th (429) are announced."""
    fake.set_rate_limit(3, 60.0)

    broker.get_account()
    broker.get_account()
    assert hints == []
    broker.get_account()
    assert [(h.limit, h.remaining) for h in hints] == [(3, 0)]
    exc = failure(broker.get_account)

    assert isinstance(exc, BrokerAPIError)
    assert exc.status_code == 429
    assert [(h.limit, h.remaining) for h in hints] == [(3, 0), (3, 0)]
    reset_at_s = hints[-1].reset_at_s
    assert reset_at_s is not None
    error = classify(exc)
    assert type(error) is RateLimitError
    assert error.retry_after_s == pytest.approx(reset_at_s - time.time(), abs=1.0)


def test_a_failing_rate_limit_listener_does_not_fail_the_call(
    make_broker: BrokerFactory, fake: FakeAlpacaAPI
) -> None:
    """on_rate_limit raising is contained: the request's own outcome stands."""
    heard: list[RateLimitHint] = []

    def listener(hint: RateLimitHint) -> None:
        heard.append(hint)
        raise RuntimeError("listener bug")

    broker = make_broker(on_rate_limit=listener)
    fake.set_rate_limit(1, 60.0)

    assert broker.get_account().cash == 100_000.0
    assert len(heard) == 1
    assert broker.trading_rate_limit == heard[0]


# --- construction ----------------------------------------------------------------------------


def test_base_url_ending_in_v2_is_accepted(make_broker: BrokerFactory, fake: FakeAlpacaAPI) -> None:
    """``https://host/v2/`` (as Alpaca's dashboard shows it) does not become /v2/v2/..."""
    broker = make_broker(base_url=f"{fake.url}/v2/")

    assert broker.get_account().cash == 100_000.0
    assert fake.requests[-1].path == "/v2/account"


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"api_key": ""}, ["ALPACA_API_KEY"]),
        ({"secret_key": ""}, ["ALPACA_SECRET_KEY"]),
        ({"base_url": "paper-api.alpaca.markets"}, ["ALPACA_BASE_URL"]),
        ({"data_url": "ftp://data.example"}, ["ALPACA_DATA_URL"]),
        ({"timeout_s": 0.0}, ["timeout"]),
    ],
)
def test_bad_configuration_is_refused_at_construction(
    make_broker: BrokerFactory, overrides: dict[str, Any], names: list[str]
) -> None:
    """Missing keys, a URL without http(s) or a non-positive timeout: ConfigurationError
    naming what to set."""
    with pytest.raises(ConfigurationError) as refused:
        make_broker(**overrides)

    for name in names:
        assert name in refused.value.message
