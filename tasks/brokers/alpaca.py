"""The Alpaca adapter: alpaca-py's REST clients behind the ``BrokerAdapter`` Protocol.

The clients' HTTP is hardened by :mod:`tasks.brokers.alpaca_transport` (timeouts, no retries
of alpaca-py's own, ``BrokerAPIError`` for HTTP errors, rate-limit headers read). When a
response says the rate limit is spent (remaining 0, or a 429), ``on_rate_limit`` hears it.

Alpaca's order statuses map onto Alchemiser's three (:data:`STATUS_MAP`): ``filled``;
``canceled`` for every final status without a full fill (canceled, expired, rejected,
replaced); ``accepted`` for every status in which the order may still fill.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Protocol, TypeVar
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit
from uuid import UUID

import structlog
from alpaca.common.enums import BaseURL, Sort
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.models.quotes import Quote as AlpacaQuote
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, PositionSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.models import TradeAccount
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest
from pydantic import SecretStr
from requests import Response

from resilience.errors import ConfigurationError
from tasks.brokers.alpaca_transport import ApiName, RateLimitHint, call, find, harden, read_hint
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
            harden(self._trading, timeout_s, lambda response: self._observe(response, "trading")),
            harden(self._data, timeout_s, lambda response: self._observe(response, "market_data")),
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

    def _observe(self, response: Response, api: ApiName) -> None:
        hint = read_hint(response, api)
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
        placed = call(lambda: self._trading.submit_order(request))
        return _order(_expect(placed, AlpacaOrder))

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """``GET /v2/orders:by_client_order_id``; ``None`` on 404."""
        found = find(lambda: self._trading.get_order_by_client_id(client_order_id))
        return None if found is None else _order(_expect(found, AlpacaOrder))

    def get_order(self, order_id: str) -> Order | None:
        """``GET /v2/orders/{id}``; ``None`` on 404 and for ids that are not UUIDs (Alpaca's
        ids all are)."""
        try:
            uuid = UUID(order_id)
        except ValueError:
            return None
        found = find(lambda: self._trading.get_order_by_id(uuid))
        return None if found is None else _order(_expect(found, AlpacaOrder))

    def cancel_order(self, order_id: str) -> Order:
        """``DELETE /v2/orders/{id}``, then the order as Alpaca holds it now (a cancel lands
        asynchronously: it may still read ``accepted``, Alpaca's ``pending_cancel``).

        An id that is not a UUID is no order of Alpaca's: refused unasked as an unknown order
        (404), like the paper broker's, rather than with alpaca-py's ``ValueError``."""
        try:
            uuid = UUID(order_id)
        except ValueError:
            raise BrokerAPIError(
                HTTPStatus.NOT_FOUND.value, f"order not found: {order_id} (not a UUID)"
            ) from None
        call(lambda: self._trading.cancel_order_by_id(uuid))
        return _order(_expect(call(lambda: self._trading.get_order_by_id(uuid)), AlpacaOrder))

    def get_quote(self, symbol: str) -> Quote:
        """``GET /v2/stocks/{symbol}/quotes/latest`` on the market-data API."""
        path = f"/stocks/{url_quote(symbol, safe='')}/quotes/latest"
        payload: Any = call(lambda: self._data.get(path))
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
        raw = call(self._trading.get_all_positions)
        if not isinstance(raw, list):
            raise TypeError(f"alpaca-py returned {type(raw).__name__}, not a list of positions")
        positions = [_position(_expect(p, AlpacaPosition)) for p in raw]
        return sorted(positions, key=lambda p: p.symbol)

    def get_account(self) -> Account:
        """Cash and buying power."""
        account = _expect(call(self._trading.get_account), TradeAccount)
        return Account(
            cash=_number(account.cash, "cash"),
            buying_power=_number(account.buying_power, "buying_power"),
        )

    def list_orders(self) -> list[Order]:
        """The 500 most recent orders of every status, oldest first."""
        request = GetOrdersRequest(
            status=QueryOrderStatus.ALL, limit=LIST_ORDERS_LIMIT, direction=Sort.DESC
        )
        raw = call(lambda: self._trading.get_orders(request))
        if not isinstance(raw, list):
            raise TypeError(f"alpaca-py returned {type(raw).__name__}, not a list of orders")
        return [_order(_expect(o, AlpacaOrder)) for o in reversed(raw)]
