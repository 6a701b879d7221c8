"""Tests of the fake Alpaca API (``tests.fakes``) that the adapter and resilience tests rely on."""

from __future__ import annotations

import http.client
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import StockLatestQuoteRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.models import Order, TradeAccount
from alpaca.trading.requests import MarketOrderRequest

from tests.fakes.alpaca_api import ANY_ROUTE, ROUTES, FakeAlpacaAPI, Fault

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "GET /v2/account"
SUBMIT = "POST /v2/orders"
POSITIONS = "GET /v2/positions"


@pytest.fixture
def session(fake_alpaca: FakeAlpacaAPI) -> Iterator[requests.Session]:
    """A keep-alive HTTP session that sends the fake's keys."""
    with requests.Session() as http:
        http.headers.update(
            {
                "APCA-API-KEY-ID": fake_alpaca.api_key,
                "APCA-API-SECRET-KEY": fake_alpaca.secret_key,
            }
        )
        yield http


def market_buy(coid: str, qty: float = 1.0, side: str = "buy") -> dict[str, Any]:
    """The JSON body of a market day order."""
    return {
        "symbol": "AAPL",
        "qty": qty,
        "side": side,
        "type": "market",
        "time_in_force": "day",
        "client_order_id": coid,
    }


def test_every_answer_carries_rate_limit_headers(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """200, 404, 401, 422 and a scripted 500 all carry Limit, a falling Remaining and Reset."""
    fake_alpaca.inject(POSITIONS, Fault.error(500))
    url = fake_alpaca.url
    answers = [
        session.get(f"{url}/v2/account"),
        session.get(f"{url}/v2/nowhere"),
        requests.get(f"{url}/v2/account", timeout=5),
        session.post(f"{url}/v2/orders", data=b"not json", timeout=5),
        session.get(f"{url}/v2/positions", timeout=5),
    ]

    assert [a.status_code for a in answers] == [200, 404, 401, 422, 500]
    assert [a.headers["X-RateLimit-Limit"] for a in answers] == ["200"] * 5
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == [
        "199",
        "198",
        "197",
        "196",
        "195",
    ]
    resets = {a.headers["X-RateLimit-Reset"] for a in answers}
    assert len(resets) == 1
    assert time.time() < int(resets.pop()) <= math.ceil(time.time() + 60)


def test_missing_or_wrong_keys_are_401(fake_alpaca: FakeAlpacaAPI) -> None:
    """Without both headers, or with a wrong secret: 401 with Alpaca's body; nothing booked."""
    url = f"{fake_alpaca.url}/v2/orders"
    no_keys = requests.post(url, json=market_buy("a"), timeout=5)
    wrong = requests.post(
        url,
        json=market_buy("a"),
        headers={"APCA-API-KEY-ID": fake_alpaca.api_key, "APCA-API-SECRET-KEY": "guess"},
        timeout=5,
    )

    for answer in (no_keys, wrong):
        assert answer.status_code == 401
        assert answer.json() == {"code": 40110000, "message": "request is not authorized"}
    assert fake_alpaca.exchange.orders == []


def test_refusals_use_alpacas_status_and_body(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """Repeated client_order_id: 422/40010001; beyond buying power or shares held: 403/40310000."""
    url = f"{fake_alpaca.url}/v2/orders"
    assert session.post(url, json=market_buy("once")).status_code == 200

    duplicate = session.post(url, json=market_buy("once"))
    too_big = session.post(url, json=market_buy("big", qty=1e6))
    oversell = session.post(url, json=market_buy("sell", qty=5, side="sell"))

    assert duplicate.status_code == 422
    assert duplicate.json() == {"code": 40010001, "message": "client_order_id must be unique"}
    assert too_big.status_code == 403
    assert too_big.json()["code"] == 40310000
    assert too_big.json()["message"] == "insufficient buying power"
    assert oversell.status_code == 403
    assert oversell.json()["message"].startswith("insufficient qty available for order")
    assert [o["client_order_id"] for o in fake_alpaca.exchange.orders] == ["once"]


def test_cancel_answers_204_then_422_and_404(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """A resting order cancels with 204 (no body); again is 422; an unknown id is 404."""
    body = {**market_buy("rest"), "type": "limit", "limit_price": "1"}
    order_id = session.post(f"{fake_alpaca.url}/v2/orders", json=body).json()["id"]
    url = f"{fake_alpaca.url}/v2/orders/{order_id}"

    first, second = session.delete(url), session.delete(url)
    unknown = session.delete(f"{fake_alpaca.url}/v2/orders/00000000-0000-4000-8000-000000000000")

    assert (first.status_code, first.content) == (204, b"")
    assert second.status_code == 422
    assert unknown.status_code == 404
    assert fake_alpaca.exchange.orders[0]["status"] == "canceled"


def test_enforced_window_refuses_beyond_the_limit_then_reopens(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """With 2 per 0.3 s: the 3rd request is 429 (code 42910000); the next window admits again."""
    fake_alpaca.set_rate_limit(2, 0.3)
    url = f"{fake_alpaca.url}/v2/account"

    started_s = time.monotonic()
    answers = [session.get(url) for _ in range(3)]
    while time.monotonic() < started_s + 0.35:
        time.sleep(0.01)  # the window has to pass: that is the behaviour under test
    after = session.get(url)

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["code"] == 42910000
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert (after.status_code, after.headers["X-RateLimit-Remaining"]) == (200, "1")


def test_unenforced_window_serves_at_remaining_zero(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """With enforcement off, requests beyond the limit succeed and read Remaining 0."""
    fake_alpaca.set_rate_limit(1, 60.0, enforce=False)

    answers = [session.get(f"{fake_alpaca.url}/v2/account") for _ in range(3)]

    assert [(a.status_code, a.headers["X-RateLimit-Remaining"]) for a in answers] == [
        (200, "0"),
        (200, "0"),
        (200, "0"),
    ]


def test_request_log_records_arrival_times_route_and_status(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """Each request is one record, in arrival order, stamped between send and answer; the path
    has no query; a path off the routes has route None."""
    stamps = []
    for method, path in [("GET", "/v2/account"), ("GET", "/v2/orders?status=all"), ("PATCH", "/x")]:
        before = (time.monotonic(), time.time())
        session.request(method, fake_alpaca.url + path)
        stamps.append((before, (time.monotonic(), time.time())))

    records = fake_alpaca.requests
    assert [(r.method, r.path, r.route, r.status) for r in records] == [
        ("GET", "/v2/account", ACCOUNT, 200),
        ("GET", "/v2/orders", "GET /v2/orders", 200),
        ("PATCH", "/x", None, 404),
    ]
    for record, (before, after) in zip(records, stamps, strict=True):
        assert before[0] <= record.monotonic_s <= after[0]
        assert before[1] <= record.wall_s <= after[1]
    assert (fake_alpaca.hits(), fake_alpaca.hits(ACCOUNT)) == (3, 1)
    fake_alpaca.clear_log()
    assert fake_alpaca.requests == []


def test_a_hanging_request_is_logged_on_arrival(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """While the server hangs, the request is already in the log, with no status."""
    fake_alpaca.inject(ACCOUNT, Fault.hang(30))

    with pytest.raises(requests.Timeout):
        session.get(f"{fake_alpaca.url}/v2/account", timeout=0.2)

    [record] = fake_alpaca.requests
    assert (record.route, record.status) == (ACCOUNT, None)


def test_scripted_faults_apply_in_order_to_their_route_only(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """Two faults for the account route: its next two requests fail in order, then it serves;
    other routes are untouched."""
    fake_alpaca.inject(ACCOUNT, Fault.error(500), Fault.error(503))
    account, positions = f"{fake_alpaca.url}/v2/account", f"{fake_alpaca.url}/v2/positions"

    assert session.get(positions).status_code == 200
    assert fake_alpaca.pending_faults(ACCOUNT) == 2
    statuses = [session.get(account).status_code for _ in range(3)]

    assert statuses == [500, 503, 200]
    assert fake_alpaca.pending_faults(ACCOUNT) == 0


def test_route_fault_then_any_route_fault_then_fail_all(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """Precedence: the route's own fault, then an any-route fault, then the fail-all switch;
    fail_all(None) ends it and clear_faults forgets the rest."""
    url = f"{fake_alpaca.url}/v2/account"
    fake_alpaca.fail_all(503)
    fake_alpaca.inject(ANY_ROUTE, Fault.error(502))
    fake_alpaca.inject(ACCOUNT, Fault.error(500))

    statuses = [session.get(url).status_code for _ in range(4)]
    fake_alpaca.fail_all(None)
    fake_alpaca.inject(ACCOUNT, Fault.error(500))
    fake_alpaca.clear_faults()

    assert statuses == [500, 502, 503, 503]
    assert session.get(url).status_code == 200


def test_fault_body_and_headers_are_sent_over_the_rate_limit_headers(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """A scripted answer sends its own body and headers; the rate-limit headers stay, the
    fault's win where both name one."""
    fake_alpaca.inject(
        ACCOUNT, Fault.error(429, "slow down", {"Retry-After": "3", "X-RateLimit-Remaining": "0"})
    )

    answer = session.get(f"{fake_alpaca.url}/v2/account")

    assert (answer.status_code, answer.text) == (429, "slow down")
    assert answer.headers["Retry-After"] == "3"
    assert answer.headers["X-RateLimit-Remaining"] == "0"
    assert answer.headers["X-RateLimit-Limit"] == "200"


def test_default_fault_body_is_alpacas_shape(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """Fault.error without a body answers {"code", "message"} like Alpaca."""
    fake_alpaca.inject(ACCOUNT, Fault.error(503))

    answer = session.get(f"{fake_alpaca.url}/v2/account")

    assert answer.json() == {"code": 50310000, "message": "service unavailable"}


def test_applied_drop_books_the_order_without_answering(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """drop_connection(applied=True): the client sees a connection error, the order exists."""
    fake_alpaca.inject(SUBMIT, Fault.drop_connection(applied=True))

    with pytest.raises(requests.ConnectionError):
        session.post(f"{fake_alpaca.url}/v2/orders", json=market_buy("ghost"))

    assert [o["client_order_id"] for o in fake_alpaca.exchange.orders] == ["ghost"]
    assert fake_alpaca.requests[0].status is None


def test_unapplied_faults_book_nothing(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """A plain fault answers before the request takes effect: no order."""
    fake_alpaca.inject(SUBMIT, Fault.error(500), Fault.drop_connection())

    assert session.post(f"{fake_alpaca.url}/v2/orders", json=market_buy("a")).status_code == 500
    with pytest.raises(requests.ConnectionError):
        session.post(f"{fake_alpaca.url}/v2/orders", json=market_buy("b"))

    assert fake_alpaca.exchange.orders == []


def test_added_latency_and_delay_fault(
    fake_alpaca: FakeAlpacaAPI, session: requests.Session
) -> None:
    """latency_s delays every answer; Fault.delay one answer, which is then normal."""
    url = f"{fake_alpaca.url}/v2/account"
    fake_alpaca.latency_s = 0.15
    started_s = time.monotonic()
    assert session.get(url).status_code == 200
    slow_s = time.monotonic() - started_s
    fake_alpaca.latency_s = 0.0
    fake_alpaca.inject(ACCOUNT, Fault.delay(0.15))
    started_s = time.monotonic()
    assert session.get(url).status_code == 200
    delayed_s = time.monotonic() - started_s

    assert slow_s >= 0.15
    assert delayed_s >= 0.15
    with pytest.raises(ValueError, match="latency_s"):
        fake_alpaca.latency_s = -1.0


def test_inject_refuses_an_unknown_route(fake_alpaca: FakeAlpacaAPI) -> None:
    """A typo in a route name is an error, not a fault that never fires."""
    with pytest.raises(ValueError, match="unknown route"):
        fake_alpaca.inject("GET /v2/acount", Fault.error(500))
    assert "GET /v2/orders:by_client_order_id" in ROUTES


def test_stop_cuts_hangs_short_and_joins_every_thread() -> None:
    """stop() returns at once although a request hangs for 30 s and a connection idles;
    no thread of the server survives it."""
    before = set(threading.enumerate())
    api = FakeAlpacaAPI().start()
    api.inject(ACCOUNT, Fault.hang(30))
    port = int(api.url.rsplit(":", 1)[1])
    hanging = socket.create_connection(("127.0.0.1", port))
    idle = socket.create_connection(("127.0.0.1", port))
    hanging.sendall(b"GET /v2/account HTTP/1.1\r\nHost: x\r\n\r\n")
    while api.hits() == 0:
        time.sleep(0.01)  # until the server has taken the request in

    started_s = time.monotonic()
    api.stop()

    assert time.monotonic() - started_s < 2.0
    assert set(threading.enumerate()) <= before
    assert hanging.recv(1024) == b""  # closed without an answer
    hanging.close()
    idle.close()
    with pytest.raises(RuntimeError):
        api.url  # noqa: B018 (the property raises once stopped)


def test_alpaca_py_parses_every_answer(fake_alpaca: FakeAlpacaAPI) -> None:
    """alpaca-py's own clients and models accept the fake's answers on every route."""
    keys = (fake_alpaca.api_key, fake_alpaca.secret_key)
    trading = TradingClient(*keys, url_override=fake_alpaca.url)
    data = StockHistoricalDataClient(*keys, url_override=fake_alpaca.url)
    fake_alpaca.exchange.set_quote("AAPL", 10.0, 10.5)
    request = MarketOrderRequest(
        symbol="AAPL", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, client_order_id="p"
    )

    placed = trading.submit_order(request)
    by_client_id = trading.get_order_by_client_id("p")
    assert isinstance(placed, Order)
    by_id = trading.get_order_by_id(placed.id)
    open_orders = trading.get_orders()  # Alpaca's default: open orders only
    positions = trading.get_all_positions()
    account = trading.get_account()
    quotes = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["AAPL"]))

    assert placed.status == OrderStatus.FILLED
    assert isinstance(by_client_id, Order)
    assert isinstance(by_id, Order)
    assert by_client_id.id == by_id.id == placed.id
    assert open_orders == []
    assert isinstance(positions, list)
    assert [(p.symbol, p.qty, p.avg_entry_price) for p in positions] == [("AAPL", "2", "10.5")]
    assert isinstance(account, TradeAccount)
    assert account.cash == "99979"
    assert isinstance(quotes, dict)
    assert (quotes["AAPL"].bid_price, quotes["AAPL"].ask_price) == (10.0, 10.5)


def test_sustains_500_requests_per_second() -> None:
    """Four keep-alive clients in this very process get at least 500 answers a second."""
    threads, per_thread = 4, 250
    with FakeAlpacaAPI(enforce_rate_limit=False) as api:
        port = int(api.url.rsplit(":", 1)[1])
        headers = {"APCA-API-KEY-ID": api.api_key, "APCA-API-SECRET-KEY": api.secret_key}
        statuses: list[int] = []

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for _ in range(per_thread):
                connection.request("GET", "/v2/account", headers=headers)
                answer = connection.getresponse()
                answer.read()
                statuses.append(answer.status)
            connection.close()

        workers = [threading.Thread(target=client) for _ in range(threads)]
        started_s = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed_s = time.monotonic() - started_s

        assert statuses == [200] * threads * per_thread
        assert api.hits() == threads * per_thread
        assert threads * per_thread / elapsed_s >= 500


def test_runs_as_a_process_of_its_own() -> None:
    """``python -m tests.fakes.alpaca_api --port 0`` prints its URL, serves, stops on SIGTERM."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.alpaca_api", "--port", "0", "--secret-key", "s3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.split()[-1]
            keys = {"APCA-API-KEY-ID": "fake-key-id", "APCA-API-SECRET-KEY": "s3"}
            answer = requests.get(f"{url}/v2/account", headers=keys, timeout=5)
            assert (answer.status_code, answer.json()["cash"]) == (200, "100000")
            server.terminate()
            assert server.wait(timeout=10) == 0
        finally:
            if server.poll() is None:
                server.kill()
