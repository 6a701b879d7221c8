"""The Alpaca adapter: alpaca-py's REST clients behind the ``BrokerAdapter`` Protocol.

Three things alpaca-py does by default are changed here, because the task layer owns failure
handling:

- **Timeouts.** alpaca-py calls ``requests`` without a timeout, so a silent server would hang
  a worker forever. Both clients get a session whose transport adapter applies ``timeout_s``
  to connecting and to every read.
- **No retries of its own.** alpaca-py sleeps and retries 429 and 504 answers itself (three
  times, 3 s apart), hidden from breakers, rate limiters and the retry policy. Its clients do
  not let that be turned off (``TradingClient`` takes no ``retry_attempts``, and
  ``RESTClient`` reads 0 as "the default"), so it is zeroed on each client.
- **Errors.** alpaca-py's ``APIError`` becomes :class:`~tasks.brokers.base.BrokerAPIError`
  with the status, body and response headers, which the classifier maps by status (and reads
  ``Retry-After``/``X-RateLimit-Reset`` from). Timeouts and connection errors stay
  ``requests``' own exceptions, which the classifier knows too. The original is not chained:
  it holds the request, whose headers carry the credentials.

Every response's ``X-RateLimit-Limit``/``-Remaining``/``-Reset`` is read into a
:class:`RateLimitHint`; when remaining reaches 0 or a 429 arrives, ``on_rate_limit`` hears it.

Alpaca's order statuses map onto Alchemiser's three (:data:`STATUS_MAP`): ``filled``;
``canceled`` for every final status without a full fill (canceled, expired, rejected,
replaced); ``accepted`` for every status in which the order may still fill.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit
from uuid import UUID

import structlog
from alpaca.common.enums import BaseURL, Sort
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.models.quotes import Quote as AlpacaQuote
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, PositionSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.models import TradeAccount
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest
from pydantic import SecretStr
from requests import PreparedRequest, Response, Session
from requests.adapters import HTTPAdapter
from requests.exceptions import HTTPError
from typing_extensions import override

from resilience.errors import ConfigurationError
from resilience.http_facts import parse_retry_after
from tasks.brokers.base import Account, BrokerAPIError, Order, Position, Quote
from tasks.payloads import OrderRequest

__all__ = [
    "DATA_URL",
    "PAPER_URL",
    "STATUS_MAP",
    "AlpacaBroker",
    "AlpacaSettings",
    "ApiName",
    "RateLimitHint",
]

PAPER_URL = BaseURL.TRADING_PAPER.value
DATA_URL = BaseURL.DATA.value
LIST_ORDERS_LIMIT = 500  # the most Alpaca returns in one page

ApiName = Literal["trading", "market_data"]
T = TypeVar("T")
M = TypeVar("M")

_log = structlog.get_logger("alchemiser.alpaca")

STATUS_MAP: Mapping[OrderStatus, str] = {
    OrderStatus.NEW: "accepted",
    OrderStatus.PENDING_NEW: "accepted",
    OrderStatus.ACCEPTED: "accepted",
    OrderStatus.ACCEPTED_FOR_BIDDING: "accepted",
    OrderStatus.PENDING_REVIEW: "accepted",
    OrderStatus.HELD: "accepted",
    OrderStatus.PARTIALLY_FILLED: "accepted",
    OrderStatus.STOPPED: "accepted",  # a fill is guaranteed but not done yet
    OrderStatus.SUSPENDED: "accepted",
    OrderStatus.CALCULATED: "accepted",
    OrderStatus.DONE_FOR_DAY: "accepted",  # a multi-day order resumes next session
    OrderStatus.PENDING_CANCEL: "accepted",  # it can still fill until the cancel lands
    OrderStatus.PENDING_REPLACE: "accepted",
    OrderStatus.FILLED: "filled",
    OrderStatus.CANCELED: "canceled",
    OrderStatus.EXPIRED: "canceled",
    OrderStatus.REJECTED: "canceled",
    OrderStatus.REPLACED: "canceled",  # its replacement is a new order
}


@dataclass(frozen=True, slots=True)
class RateLimitHint:
    """What one Alpaca response said of the rate limit.

    ``reset_at_s`` (Unix seconds) is when requests are admitted again: ``X-RateLimit-Reset``,
    or on a 429 the later of it and now + ``Retry-After``. A field is ``None`` when the
    response did not carry it. ``api`` tells the trading API's limit from market data's.
    """

    limit: int | None
    remaining: int | None
    reset_at_s: float | None
    api: ApiName = "trading"


class AlpacaSettings(Protocol):
    """The settings :meth:`AlpacaBroker.from_settings` reads (``worker.settings.Settings``)."""

    @property
    def alpaca_api_key(self) -> SecretStr | None: ...
    @property
    def alpaca_secret_key(self) -> SecretStr | None: ...
    @property
    def alpaca_base_url(self) -> str: ...
    @property
    def alpaca_data_url(self) -> str: ...
    @property
    def alpaca_timeout_s(self) -> float: ...


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout to every request sent without one (all of alpaca-py's)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(max_retries=0)  # requests' default too; the task layer retries
        self._timeout_s = timeout_s

    @override
    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        return super().send(
            request,
            stream=stream,
            timeout=self._timeout_s if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def _api_root(url: str, setting: str) -> str:
    """``url`` without a trailing ``/`` or ``/v2``: alpaca-py appends ``/v2`` itself, and
    URLs copied from Alpaca's dashboard or older SDKs often end in it."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"{setting} must be an http(s) URL such as {PAPER_URL}, got {url!r}"
        )
    root = url.strip().rstrip("/")
    return root.removesuffix("/v2")


def _reveal(secret: SecretStr | None) -> str:
    return "" if secret is None else secret.get_secret_value()


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read_hint(response: Response, api: ApiName) -> RateLimitHint | None:
    """The rate-limit facts of ``response``; ``None`` when it carries none and is no 429."""
    headers = response.headers
    limit = _header_number(headers, "X-RateLimit-Limit")
    remaining = _header_number(headers, "X-RateLimit-Remaining")
    reset_at_s = _header_number(headers, "X-RateLimit-Reset")
    limited = response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    if limited:
        wait_s = parse_retry_after(headers.get("Retry-After"))
        if wait_s is not None:
            reset_at_s = max(reset_at_s or 0.0, time.time() + wait_s)
    if limit is None and remaining is None and reset_at_s is None and not limited:
        return None
    return RateLimitHint(
        limit=None if limit is None else int(limit),
        remaining=None if remaining is None else int(remaining),
        reset_at_s=reset_at_s,
        api=api,
    )


def _call(fn: Callable[[], T]) -> T:
    """``fn()``, with alpaca-py's HTTP errors as :class:`BrokerAPIError`."""
    try:
        return fn()
    except (APIError, HTTPError) as exc:
        response: Response | None = exc.response
        if response is None:
            raise
        error = BrokerAPIError(response.status_code, response.text, dict(response.headers))
    # Raised outside the handler so that nothing links back to the original, whose request
    # carries the credential headers.
    raise error


def _find(fn: Callable[[], T]) -> T | None:
    """Like :func:`_call`, but a 404 means "no such order": ``None``."""
    try:
        return _call(fn)
    except BrokerAPIError as exc:
        if exc.status_code == HTTPStatus.NOT_FOUND:
            return None
        raise


def _expect(value: object, model: type[M]) -> M:
    # With raw_data off alpaca-py returns models, though its signatures also allow a dict.
    if not isinstance(value, model):
        raise TypeError(f"alpaca-py returned {type(value).__name__}, not {model.__name__}")
    return value


def _number(value: str | float | None, name: str) -> float:
    if value is None:
        raise ValueError(f"Alpaca sent no {name}")
    return float(value)


def _order(raw: AlpacaOrder) -> Order:
    filled_qty = float(raw.filled_qty or 0.0)
    # Alpaca may send a filled_avg_price of 0 before anything fills.
    fill_price = float(raw.filled_avg_price) if raw.filled_avg_price and filled_qty else None
    kind = raw.type or raw.order_type
    return Order(
        id=str(raw.id),
        client_order_id=raw.client_order_id,
        symbol=raw.symbol or "",
        side=raw.side.value if raw.side else "",
        qty=float(raw.qty or 0.0),
        type=kind.value if kind else "",
        limit_price=None if raw.limit_price is None else float(raw.limit_price),
        status=STATUS_MAP[raw.status],
        filled_qty=filled_qty,
        filled_avg_price=fill_price,
        submitted_at=raw.submitted_at.isoformat(),
    )


def _position(raw: AlpacaPosition) -> Position:
    # Signed like the paper broker's: a short is negative whichever sign Alpaca gives qty.
    qty = abs(float(raw.qty))
    return Position(symbol=raw.symbol, qty=-qty if raw.side == PositionSide.SHORT else qty)


class AlpacaBroker:
    """A :class:`~tasks.brokers.base.BrokerAdapter` for Alpaca's trading and market-data APIs."""

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        base_url: str = PAPER_URL,
        data_url: str = DATA_URL,
        timeout_s: float = 10.0,
        on_rate_limit: Callable[[RateLimitHint], None] | None = None,
    ) -> None:
        missing = [
            name
            for name, value in (("ALPACA_API_KEY", api_key), ("ALPACA_SECRET_KEY", secret_key))
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"the Alpaca broker needs {' and '.join(missing)}: set them to the account's "
                "API key and secret (paper keys for the paper endpoint)"
            )
        if not timeout_s > 0:
            raise ConfigurationError(f"the Alpaca timeout must be > 0 s, got {timeout_s!r}")
        self._base_url = _api_root(base_url, "ALPACA_BASE_URL (base_url)")
        self._data_url = _api_root(data_url, "ALPACA_DATA_URL (data_url)")
        self._timeout_s = timeout_s
        self._on_rate_limit = on_rate_limit
        self._hints: dict[ApiName, RateLimitHint] = {}
        self._trading = TradingClient(api_key, secret_key, url_override=self._base_url)
        self._data = StockHistoricalDataClient(api_key, secret_key, url_override=self._data_url)
        self._sessions = (
            self._harden(self._trading, "trading"),
            self._harden(self._data, "market_data"),
        )

    @classmethod
    def from_settings(
        cls,
        settings: AlpacaSettings,
        *,
        on_rate_limit: Callable[[RateLimitHint], None] | None = None,
    ) -> AlpacaBroker:
        """An adapter configured by the ``ALPACA_*`` settings; :class:`ConfigurationError`
        naming the variables to set when a key is missing."""
        return cls(
            _reveal(settings.alpaca_api_key),
            _reveal(settings.alpaca_secret_key),
            base_url=settings.alpaca_base_url,
            data_url=settings.alpaca_data_url,
            timeout_s=settings.alpaca_timeout_s,
            on_rate_limit=on_rate_limit,
        )

    def _harden(self, client: RESTClient, api: ApiName) -> Session:
        """Give ``client`` a session with a timeout and a rate-limit reader; no retries."""
        session = Session()
        adapter = _TimeoutAdapter(self._timeout_s)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.hooks["response"].append(
            lambda response, *args, **kwargs: self._observe(response, api)
        )
        client._session.close()
        client._session = session
        client._retry = 0  # see the module docstring: the constructor cannot turn it off
        return session

    def _observe(self, response: Response, api: ApiName) -> None:
        hint = _read_hint(response, api)
        if hint is None:
            return
        self._hints[api] = hint
        if self._on_rate_limit is None:
            return
        if hint.remaining == 0 or response.status_code == HTTPStatus.TOO_MANY_REQUESTS:
            try:
                self._on_rate_limit(hint)
            except Exception:  # a failing listener must not fail the request it heard of
                _log.warning("alpaca_rate_limit_callback_failed", api=api, exc_info=True)

    def __repr__(self) -> str:
        return (
            f"AlpacaBroker(base_url={self._base_url!r}, data_url={self._data_url!r}, "
            f"timeout_s={self._timeout_s!r})"
        )

    @property
    def trading_rate_limit(self) -> RateLimitHint | None:
        """The rate-limit hint of the trading API's latest response that carried one."""
        return self._hints.get("trading")

    @property
    def market_data_rate_limit(self) -> RateLimitHint | None:
        """The rate-limit hint of the market-data API's latest response that carried one."""
        return self._hints.get("market_data")

    def close(self) -> None:
        """Close the HTTP connections."""
        for session in self._sessions:
            session.close()

    # --- BrokerAdapter -----------------------------------------------------------------------

    def submit_order(self, order: OrderRequest) -> Order:
        """Place a day order (market or limit) under ``order.client_order_id``."""
        request: MarketOrderRequest | LimitOrderRequest
        if order.type == "limit":
            request = LimitOrderRequest(
                symbol=order.symbol,
                qty=order.qty,
                side=OrderSide(order.side),
                time_in_force=TimeInForce.DAY,
                limit_price=order.limit_price,
                client_order_id=order.client_order_id,
            )
        else:
            request = MarketOrderRequest(
                symbol=order.symbol,
                qty=order.qty,
                side=OrderSide(order.side),
                time_in_force=TimeInForce.DAY,
                client_order_id=order.client_order_id,
            )
        placed = _call(lambda: self._trading.submit_order(request))
        return _order(_expect(placed, AlpacaOrder))

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """``GET /v2/orders:by_client_order_id``; ``None`` on 404."""
        found = _find(lambda: self._trading.get_order_by_client_id(client_order_id))
        return None if found is None else _order(_expect(found, AlpacaOrder))

    def get_order(self, order_id: str) -> Order | None:
        """``GET /v2/orders/{id}``; ``None`` on 404 and for ids that are not UUIDs (Alpaca's
        ids all are)."""
        try:
            uuid = UUID(order_id)
        except ValueError:
            return None
        found = _find(lambda: self._trading.get_order_by_id(uuid))
        return None if found is None else _order(_expect(found, AlpacaOrder))

    def cancel_order(self, order_id: str) -> Order:
        """``DELETE /v2/orders/{id}``, then the order as Alpaca holds it now (a cancel lands
        asynchronously: it may still read ``accepted``, Alpaca's ``pending_cancel``)."""
        _call(lambda: self._trading.cancel_order_by_id(order_id))
        return _order(_expect(_call(lambda: self._trading.get_order_by_id(order_id)), AlpacaOrder))

    def get_quote(self, symbol: str) -> Quote:
        """``GET /v2/stocks/{symbol}/quotes/latest`` on the market-data API."""
        path = f"/stocks/{url_quote(symbol, safe='')}/quotes/latest"
        payload: Any = _call(lambda: self._data.get(path))
        raw = payload.get("quote") if isinstance(payload, dict) else None
        if not isinstance(raw, dict):
            raise ValueError(f"Alpaca's latest-quote answer for {symbol} holds no quote")
        quote = AlpacaQuote(symbol, raw)
        return Quote(
            symbol=symbol,
            bid=quote.bid_price,
            ask=quote.ask_price,
            at=quote.timestamp.isoformat(),
        )

    def list_positions(self) -> list[Position]:
        """Every open position, by symbol."""
        raw = _call(self._trading.get_all_positions)
        if not isinstance(raw, list):
            raise TypeError(f"alpaca-py returned {type(raw).__name__}, not a list of positions")
        positions = [_position(_expect(p, AlpacaPosition)) for p in raw]
        return sorted(positions, key=lambda p: p.symbol)

    def get_account(self) -> Account:
        """Cash and buying power."""
        account = _expect(_call(self._trading.get_account), TradeAccount)
        return Account(
            cash=_number(account.cash, "cash"),
            buying_power=_number(account.buying_power, "buying_power"),
        )

    def list_orders(self) -> list[Order]:
        """The 500 most recent orders of every status, oldest first."""
        request = GetOrdersRequest(
            status=QueryOrderStatus.ALL, limit=LIST_ORDERS_LIMIT, direction=Sort.DESC
        )
        raw = _call(lambda: self._trading.get_orders(request))
        if not isinstance(raw, list):
            raise TypeError(f"alpaca-py returned {type(raw).__name__}, not a list of orders")
        return [_order(_expect(o, AlpacaOrder)) for o in reversed(raw)]
