"""A fake Alpaca REST API on loopback: the subset Alchemiser speaks, plus scripted faults.

A real HTTP server (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive, one thread per
connection) serving the trading and market-data routes of :data:`ROUTES` from an in-memory
:class:`~tests.fakes.alpaca_exchange.AlpacaExchange`. Both APIs share the one base URL
(:attr:`FakeAlpacaAPI.url`). Every request must carry ``APCA-API-KEY-ID`` and
``APCA-API-SECRET-KEY`` (401 otherwise); every answer carries ``X-RateLimit-Limit``,
``-Remaining`` and ``-Reset`` (Unix seconds) from a fixed window counting every request, 200 per
60 s by default, answered 429 beyond it unless enforcement is off.

Per request, in order: the request is logged on arrival; counted in the rate window; the added
latency passes; the next scripted fault of its route (else of :data:`ANY_ROUTE`, else the
fail-all switch) applies; otherwise 401 without keys, 429 over the limit, 404 off the routes,
else the exchange answers. ``python -m tests.fakes.alpaca_api --port N`` serves it from a
process of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import cast
from urllib.parse import parse_qs, urlsplit

from tests.fakes.alpaca_exchange import JSON, ROUTE_TABLE, ROUTES, AlpacaExchange, Reply, Route
from tests.fakes.alpaca_exchange import error_body as _error_body
from tests.fakes.lifecycle import HttpFake, TrackingHandler

__all__ = ["ANY_ROUTE", "ROUTES", "FakeAlpacaAPI", "Fault", "RequestRecord"]

ANY_ROUTE = "*"
# Request headers kept in the log: the admission time the guard's scenarios send.
LOGGED_HEADERS = frozenset({"x-admitted-at-us"})
DEFAULT_API_KEY = "fake-key-id"
DEFAULT_SECRET_KEY = "fake-secret-key"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the server saw it.

    ``monotonic_s`` and ``wall_s`` are ``time.monotonic()`` and ``time.time()`` on arrival;
    ``path`` excludes the query; ``route`` is the :data:`ROUTES` name (``None`` off the routes);
    ``status`` is the HTTP status answered, ``None`` while none was sent (in flight, hanging,
    dropped).
    """

    monotonic_s: float
    wall_s: float
    method: str
    path: str
    route: str | None
    status: int | None
    # The request headers named in LOGGED_HEADERS (lower-case), e.g. when a call was admitted.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted misbehaviour, consumed by one request.

    In order: when ``applied``, the request first takes effect (an order is booked) and its
    answer is discarded; the server waits ``delay_s`` (cut short by :meth:`FakeAlpacaAPI.stop`);
    then it closes the connection without an answer (``drop``), or answers ``status`` with
    ``body`` and ``headers`` (over the rate-limit headers), or else answers normally.
    """

    status: int | None = None
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    drop: bool = False
    applied: bool = False

    @classmethod
    def error(
        cls,
        status: int,
        body: JSON | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        applied: bool = False,
    ) -> Fault:
        """Answer ``status``; the body defaults to Alpaca's ``{"code", "message"}``."""
        if body is None:
            body = _error_body(status, HTTPStatus(status).phrase.lower())
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return cls(status=status, body=raw, headers=tuple((headers or {}).items()), applied=applied)

    @classmethod
    def rate_limited(
        cls, *, retry_after_s: float | None = None, reset_at_s: float | None = None
    ) -> Fault:
        """Alpaca's 429 with ``Retry-After`` and/or ``X-RateLimit-Reset`` (Unix seconds)."""
        headers = {"X-RateLimit-Remaining": "0"}
        if retry_after_s is not None:
            headers["Retry-After"] = f"{retry_after_s:g}"
        if reset_at_s is not None:
            headers["X-RateLimit-Reset"] = str(math.ceil(reset_at_s))
        return cls.error(429, _error_body(429, "rate limit exceeded"), headers)

    @classmethod
    def hang(cls, seconds: float, *, applied: bool = False) -> Fault:
        """Send nothing for ``seconds``, then close the connection."""
        return cls(delay_s=seconds, drop=True, applied=applied)

    @classmethod
    def drop_connection(cls, *, applied: bool = False) -> Fault:
        """Close the connection at once without an answer."""
        return cls(drop=True, applied=applied)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally after ``seconds``."""
        return cls(delay_s=seconds)


class FakeAlpacaAPI(HttpFake):
    """A fake Alpaca trading and market-data API (port 0: a free port).

    Every control is thread-safe and may be used while requests are served. ``exchange`` holds
    the account's orders, positions, cash and quotes.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        cash: float = 100_000.0,
        rate_limit: int = 200,
        rate_window_s: float = 60.0,
        enforce_rate_limit: bool = True,
    ) -> None:
        self.api_key = api_key
        self.secret_key = secret_key
        self.exchange = AlpacaExchange(cash=cash)
        super().__init__(_RequestHandler, host=host, port=port)  # _lock: faults, rate window
        self._log_lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._latency_s = 0.0
        self._faults: dict[str, deque[Fault]] = {}
        self._fail_all: Fault | None = None
        self._rate_limit = rate_limit
        self._rate_window_s = rate_window_s
        self._enforce_rate_limit = enforce_rate_limit
        self._window_end_s = 0.0  # monotonic
        self._window_reset_wall_s = 0.0
        self._window_used = 0

    # --- faults and limits -------------------------------------------------------------------

    def inject(self, route: str, *faults: Fault) -> None:
        """Queue ``faults`` for the next requests of ``route`` (a :data:`ROUTES` name or
        :data:`ANY_ROUTE`), one per request, in order."""
        if route != ANY_ROUTE and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; known: {sorted(ROUTES)}")
        with self._lock:
            self._faults.setdefault(route, deque()).extend(faults)

    def fail_all(
        self,
        status: int | None,
        body: JSON | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer every request with ``status`` until called with ``None``."""
        fault = None if status is None else Fault.error(status, body, headers)
        with self._lock:
            self._fail_all = fault

    def pending_faults(self, route: str) -> int:
        """How many scripted faults of ``route`` no request has consumed yet."""
        with self._lock:
            return len(self._faults.get(route, ()))

    def clear_faults(self) -> None:
        """Forget scripted faults, the fail-all switch and the added latency."""
        with self._lock:
            self._faults.clear()
            self._fail_all = None
            self._latency_s = 0.0

    @property
    def latency_s(self) -> float:
        """Seconds added before every answer."""
        return self._latency_s

    @latency_s.setter
    def latency_s(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("latency_s must be >= 0")
        with self._lock:
            self._latency_s = seconds

    def set_rate_limit(self, limit: int, window_s: float, *, enforce: bool = True) -> None:
        """Change the fixed window; the next request opens a fresh one."""
        with self._lock:
            self._rate_limit, self._rate_window_s = limit, window_s
            self._enforce_rate_limit = enforce
            self._window_end_s = 0.0

    # --- request log -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request so far, in arrival order (a copy)."""
        with self._log_lock:
            return list(self._log)

    def hits(self, route: str | None = None) -> int:
        """How many requests arrived (of ``route`` only, when given)."""
        with self._log_lock:
            return sum(1 for r in self._log if route is None or r.route == route)

    def clear_log(self) -> None:
        """Forget the request log."""
        with self._log_lock:
            self._log.clear()

    # --- serving -----------------------------------------------------------------------------

    def _serve(self, handler: _RequestHandler, method: str) -> None:
        split = urlsplit(handler.path)
        route, params = _match(method, split.path)
        with self._log_lock:
            index = len(self._log)
            self._log.append(
                RequestRecord(
                    time.monotonic(),
                    time.time(),
                    method,
                    split.path,
                    route.name if route else None,
                    None,
                    {
                        k.lower(): v
                        for k, v in handler.headers.items()
                        if k.lower() in LOGGED_HEADERS
                    },
                )
            )
        # Read the body before anything else, so the connection stays in step for keep-alive.
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        with self._lock:
            rate_headers, over_limit = self._count_request()
            fault = self._take_fault(route.name if route else None)
            latency_s = self._latency_s

        def handle() -> Reply:
            if not self._authorised(handler):
                return Reply(401, _error_body(401, "request is not authorized"))
            if over_limit:
                return Reply(429, _error_body(429, "rate limit exceeded"))
            if route is None:
                return Reply(404, _error_body(404, "endpoint not found"))
            return route.handle(self.exchange, params, query, body)

        if latency_s > 0:
            self._stopping.wait(latency_s)
        answer = self._decide(handler, fault, handle)
        if answer is None:
            return
        reply, raw_body = answer
        # Logged before a byte is written: a client holding the answer finds its status.
        with self._log_lock:
            self._log[index] = replace(self._log[index], status=reply.status)
        _send(handler, reply, rate_headers, raw_body)

    def _decide(
        self, handler: _RequestHandler, fault: Fault | None, handle: Callable[[], Reply]
    ) -> tuple[Reply, bytes | None] | None:
        """The answer as ``fault`` has it (a raw body or ``None``: the reply's JSON);
        ``None`` when the connection was dropped instead."""
        if fault is None:
            return handle(), None
        handled = handle() if fault.applied else None
        if fault.delay_s > 0:
            self._stopping.wait(fault.delay_s)
        if fault.drop:
            handler.close_connection = True
            with contextlib.suppress(OSError):  # the client may have closed it already
                handler.connection.shutdown(socket.SHUT_RDWR)
            return None
        if fault.status is not None:
            return Reply(fault.status, None, fault.headers), fault.body
        return handled or handle(), None

    def _authorised(self, handler: _RequestHandler) -> bool:
        return (
            handler.headers.get("APCA-API-KEY-ID") == self.api_key
            and handler.headers.get("APCA-API-SECRET-KEY") == self.secret_key
        )

    def _count_request(self) -> tuple[dict[str, str], bool]:
        """Count one request in the fixed window: its rate-limit headers, whether it is over.

        Caller holds ``_lock``.
        """
        now_s = time.monotonic()
        if now_s >= self._window_end_s:
            self._window_end_s = now_s + self._rate_window_s
            self._window_reset_wall_s = time.time() + self._rate_window_s
            self._window_used = 0
        self._window_used += 1
        headers = {
            "X-RateLimit-Limit": str(self._rate_limit),
            "X-RateLimit-Remaining": str(max(self._rate_limit - self._window_used, 0)),
            # Alpaca sends whole Unix seconds; rounding up never announces a reset too early.
            "X-RateLimit-Reset": str(math.ceil(self._window_reset_wall_s)),
        }
        return headers, self._enforce_rate_limit and self._window_used > self._rate_limit

    def _take_fault(self, route: str | None) -> Fault | None:
        """The fault for the next request of ``route``. Caller holds ``_lock``."""
        for key in (route, ANY_ROUTE):
            queue = self._faults.get(key) if key is not None else None
            if queue:
                return queue.popleft()
        return self._fail_all


def _match(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTE_TABLE:
        params = route.match(method, path)
        if params is not None:
            return route, params
    return None, {}


def _send(
    handler: _RequestHandler,
    reply: Reply,
    rate_headers: Mapping[str, str],
    raw_body: bytes | None,
) -> None:
    if raw_body is None:
        raw_body = b"" if reply.payload is None else json.dumps(reply.payload).encode()
    has_body = reply.status != HTTPStatus.NO_CONTENT
    handler.send_response(reply.status)
    headers = {**rate_headers, **dict(reply.headers)}
    if has_body:
        headers["Content-Type"] = "application/json; charset=UTF-8"
        headers["Content-Length"] = str(len(raw_body))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if has_body:
        handler.wfile.write(raw_body)


class _RequestHandler(TrackingHandler):
    timeout = 60.0  # an idle keep-alive connection gives its thread back after this

    @property
    def api(self) -> FakeAlpacaAPI:
        return cast("FakeAlpacaAPI", self.server.fake)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.api._serve(self, "GET")

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.api._serve(self, "POST")

    def do_DELETE(self) -> None:  # noqa: N802 - the stdlib's name
        self.api._serve(self, "DELETE")

    # Methods of no route are still served (404) so that the log holds every request.
    def do_PUT(self) -> None:  # noqa: N802 - the stdlib's name
        self.api._serve(self, "PUT")

    def do_PATCH(self) -> None:  # noqa: N802 - the stdlib's name
        self.api._serve(self, "PATCH")


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; print ``listening on URL`` once ready."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.alpaca_api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--rate-limit", type=int, default=200)
    parser.add_argument("--rate-window-s", type=float, default=60.0)
    parser.add_argument("--no-enforce-rate-limit", action="store_true")
    args = parser.parse_args(argv)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    with FakeAlpacaAPI(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        secret_key=args.secret_key,
        rate_limit=args.rate_limit,
        rate_window_s=args.rate_window_s,
        enforce_rate_limit=not args.no_enforce_rate_limit,
    ) as api:
        print(f"listening on {api.url}", flush=True)
        done.wait()


if __name__ == "__main__":
    main()
