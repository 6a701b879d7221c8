"""The in-memory exchange behind :class:`~tests.fakes.alpaca_api.FakeAlpacaAPI`.

Orders, positions, cash and quotes, answered in Alpaca's JSON shapes (alpaca-py's models parse
them). Market orders and marketable limits fill at once at the quote (the ask for buys, the bid
for sells); other limits rest as ``new``. Like Alpaca it refuses a repeated ``client_order_id``
(422, code 40010001), a buy beyond buying power and a sell beyond the shares held (403, code
40310000). :data:`ROUTE_TABLE` maps each route to the exchange method that answers it.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["ROUTES", "ROUTE_TABLE", "AlpacaExchange", "Reply", "Route", "error_body"]

SPREAD = 0.0005
TERMINAL_STATUSES = frozenset(
    {"filled", "canceled", "expired", "rejected", "replaced", "done_for_day"}
)
_TIME_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})

JSON = dict[str, Any] | list[Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, JSON payload (``None``: no body) and extra headers."""

    status: int
    payload: JSON | None = None
    headers: tuple[tuple[str, str], ...] = ()


def error_body(status: int, message: str) -> dict[str, Any]:
    """Alpaca's error body; its codes are the status followed by five digits (40310000)."""
    return {"code": status * 100_000 + 10_000, "message": message}


def _fail(status: int, message: str, **extra: Any) -> Reply:
    return Reply(status, {**extra, **error_body(status, message)})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _num(value: float) -> str:
    """A decimal string as Alpaca writes quantities and prices ("10", "100.05")."""
    return f"{value:.9f}".rstrip("0").rstrip(".")


def _positive(value: object) -> float | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def _is_open(order: dict[str, Any]) -> bool:
    return order["status"] not in TERMINAL_STATUSES


def _asset_id(symbol: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol))


@dataclass(frozen=True, slots=True)
class _OrderSpec:
    symbol: str
    side: str
    kind: str
    qty: float
    limit_price: float | None
    time_in_force: str
    client_order_id: str
    extended_hours: bool


def _parse_order(body: bytes) -> _OrderSpec | str:
    """The order a POST body asks for, or what is wrong with it."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return "request body format is invalid"
    symbol, side = data.get("symbol"), data.get("side")
    kind = data.get("type") or data.get("order_type")
    qty, limit_price = _positive(data.get("qty")), _positive(data.get("limit_price"))
    client_order_id = data.get("client_order_id") or str(uuid.uuid4())
    time_in_force = data.get("time_in_force")
    checks = (
        (isinstance(symbol, str) and bool(symbol), "symbol is required"),
        (side in ("buy", "sell"), "side must be buy or sell"),
        (kind in ("market", "limit"), "the fake supports market and limit orders only"),
        (qty is not None, "qty must be > 0"),
        (kind != "limit" or limit_price is not None, "limit_price is required for limit orders"),
        (time_in_force in _TIME_IN_FORCE, "invalid time_in_force"),
        (
            isinstance(client_order_id, str) and len(client_order_id) <= 128,
            "client_order_id must be no more than 128 characters",
        ),
    )
    for passed, problem in checks:
        if not passed:
            return problem
    return _OrderSpec(
        symbol=str(symbol),
        side=str(side),
        kind=str(kind),
        qty=float(qty or 0.0),
        limit_price=limit_price,
        time_in_force=str(time_in_force),
        client_order_id=str(client_order_id),
        extended_hours=bool(data.get("extended_hours", False)),
    )


class AlpacaExchange:
    """One account on a simulated exchange; every method is thread-safe."""

    def __init__(self, *, cash: float = 100_000.0) -> None:
        self._lock = threading.Lock()
        self._cash = cash
        self._orders: dict[str, dict[str, Any]] = {}  # id -> Alpaca JSON, oldest first
        self._order_ids: dict[str, str] = {}  # client_order_id -> id
        self._positions: dict[str, list[float]] = {}  # symbol -> [qty, cost basis]
        self._quotes: dict[str, tuple[float, float]] = {}

    # --- controls for tests ------------------------------------------------------------------

    def set_quote(self, symbol: str, bid: float, ask: float) -> None:
        """Fix the quote of ``symbol`` (else a stable price derived from the symbol)."""
        with self._lock:
            self._quotes[symbol] = (bid, ask)

    def set_order_status(self, order_id: str, status: str) -> None:
        """Move an order to any Alpaca status (to test what clients make of it)."""
        with self._lock:
            self._orders[order_id].update(status=status, updated_at=_now_iso())

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every order as Alpaca's JSON, oldest first (copies)."""
        with self._lock:
            return [dict(order) for order in self._orders.values()]

    @property
    def cash(self) -> float:
        """Cash of the account."""
        with self._lock:
            return self._cash

    # --- internals (caller holds the lock) ---------------------------------------------------

    def _quote(self, symbol: str) -> tuple[float, float]:
        if symbol in self._quotes:
            return self._quotes[symbol]
        mid = 20.0 + (zlib.crc32(symbol.encode()) % 48_000) / 100.0
        return round(mid * (1 - SPREAD), 4), round(mid * (1 + SPREAD), 4)

    def _buying_power(self) -> float:
        """Cash less what open buy limits reserve."""
        reserved = sum(
            float(o["qty"]) * float(o["limit_price"])
            for o in self._orders.values()
            if o["side"] == "buy" and _is_open(o) and o["limit_price"]
        )
        return self._cash - reserved

    def _sellable(self, symbol: str) -> float:
        """Shares held less those open sell orders hold."""
        held = self._positions.get(symbol, [0.0, 0.0])[0]
        selling = sum(
            float(o["qty"])
            for o in self._orders.values()
            if o["symbol"] == symbol
            and o["side"] == "sell"
            and o["status"] not in TERMINAL_STATUSES
        )
        return held - selling

    def _fill(self, order: dict[str, Any], price: float) -> None:
        qty = float(order["qty"])
        position = self._positions.setdefault(order["symbol"], [0.0, 0.0])
        if order["side"] == "buy":
            self._cash -= qty * price
            position[0] += qty
            position[1] += qty * price
        else:
            self._cash += qty * price
            position[1] -= position[1] * qty / position[0]
            position[0] -= qty
            if position[0] <= 1e-12:
                del self._positions[order["symbol"]]
        now = _now_iso()
        order.update(
            status="filled",
            filled_at=now,
            updated_at=now,
            filled_qty=order["qty"],
            filled_avg_price=_num(price),
        )

    def _refusal(self, spec: _OrderSpec, cost: float) -> Reply | None:
        """Alpaca's 403 when the account cannot pay for or deliver the order."""
        if spec.side == "buy":
            buying_power = self._buying_power()
            if cost <= buying_power + 1e-9:
                return None
            return _fail(
                403,
                "insufficient buying power",
                buying_power=_num(buying_power),
                cost_basis=_num(cost),
            )
        available = self._sellable(spec.symbol)
        if spec.qty <= available + 1e-12:
            return None
        return _fail(
            403,
            f"insufficient qty available for order (requested: {_num(spec.qty)}, "
            f"available: {_num(max(available, 0.0))})",
            symbol=spec.symbol,
        )

    def _new_order(self, spec: _OrderSpec) -> dict[str, Any]:
        now = _now_iso()
        return {
            "id": str(uuid.uuid4()),
            "client_order_id": spec.client_order_id,
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "filled_at": None,
            "expired_at": None,
            "canceled_at": None,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": _asset_id(spec.symbol),
            "symbol": spec.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": _num(spec.qty),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": "",
            "order_type": spec.kind,
            "type": spec.kind,
            "side": spec.side,
            "time_in_force": spec.time_in_force,
            "limit_price": _num(spec.limit_price) if spec.limit_price is not None else None,
            "stop_price": None,
            "status": "new",
            "extended_hours": spec.extended_hours,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
        }

    def _quote_json(self, symbol: str) -> dict[str, Any]:
        bid, ask = self._quote(symbol)
        return {
            "t": _now_iso(),
            "ax": "V",
            "ap": ask,
            "as": 1,
            "bx": "V",
            "bp": bid,
            "bs": 1,
            "c": ["R"],
            "z": "C",
        }

    # --- routes ------------------------------------------------------------------------------

    def submit(self, body: bytes) -> Reply:
        """``POST /v2/orders``."""
        spec = _parse_order(body)
        if isinstance(spec, str):
            return _fail(422, spec)
        with self._lock:
            if spec.client_order_id in self._order_ids:
                return Reply(422, {"code": 40010001, "message": "client_order_id must be unique"})
            bid, ask = self._quote(spec.symbol)
            price = ask if spec.side == "buy" else bid
            limit = spec.limit_price if spec.kind == "limit" else None
            marketable = limit is None or (price <= limit if spec.side == "buy" else price >= limit)
            # A resting buy limit reserves its limit value of buying power, as at Alpaca.
            cost_price = price if marketable or limit is None else limit
            refusal = self._refusal(spec, spec.qty * cost_price)
            if refusal is not None:
                return refusal
            order = self._new_order(spec)
            if marketable:
                self._fill(order, price)
            self._orders[order["id"]] = order
            self._order_ids[spec.client_order_id] = order["id"]
            return Reply(200, dict(order))

    def list_orders(self, query: dict[str, str]) -> Reply:
        """``GET /v2/orders`` with ``status`` (open, closed, all), ``limit`` and ``direction``."""
        status = query.get("status", "open")
        limit = min(int(query.get("limit", "50")), 500)
        with self._lock:
            orders = [
                dict(o)
                for o in self._orders.values()
                if status == "all" or (o["status"] in TERMINAL_STATUSES) == (status == "closed")
            ]
        if query.get("direction", "desc") == "desc":
            orders.reverse()
        return Reply(200, orders[:limit])

    def order_by_client_id(self, client_order_id: str) -> Reply:
        """``GET /v2/orders:by_client_order_id``."""
        with self._lock:
            order_id = self._order_ids.get(client_order_id)
            if order_id is None:
                return _fail(404, "order not found")
            return Reply(200, dict(self._orders[order_id]))

    def get_order(self, order_id: str) -> Reply:
        """``GET /v2/orders/{order_id}``."""
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                return _fail(404, f"order not found for {order_id}")
            return Reply(200, dict(order))

    def cancel(self, order_id: str) -> Reply:
        """``DELETE /v2/orders/{order_id}``: 204, or 404 / 422 (already final)."""
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                return _fail(404, f"order not found for {order_id}")
            if order["status"] in TERMINAL_STATUSES:
                return _fail(422, f'order is already in "{order["status"]}" state')
            now = _now_iso()
            order.update(status="canceled", canceled_at=now, updated_at=now)
            return Reply(204)

    def positions(self) -> Reply:
        """``GET /v2/positions``."""
        with self._lock:
            rows = []
            for symbol, (qty, cost) in sorted(self._positions.items()):
                price = sum(self._quote(symbol)) / 2
                rows.append(
                    {
                        "asset_id": _asset_id(symbol),
                        "symbol": symbol,
                        "exchange": "NASDAQ",
                        "asset_class": "us_equity",
                        "asset_marginable": True,
                        "qty": _num(qty),
                        "qty_available": _num(self._sellable(symbol)),
                        "avg_entry_price": _num(cost / qty),
                        "side": "long",
                        "market_value": _num(qty * price),
                        "cost_basis": _num(cost),
                        "unrealized_pl": _num(qty * price - cost),
                        "current_price": _num(price),
                        "lastday_price": _num(price),
                        "change_today": "0",
                    }
                )
        return Reply(200, rows)

    def account(self) -> Reply:
        """``GET /v2/account`` (a cash account: buying power is cash less open buy limits)."""
        with self._lock:
            cash, buying_power = self._cash, self._buying_power()
            held = sum(qty * sum(self._quote(s)) / 2 for s, (qty, _) in self._positions.items())
        return Reply(
            200,
            {
                "id": "00000000-0000-4000-8000-000000000001",
                "account_number": "PA0FAKE0001",
                "status": "ACTIVE",
                "currency": "USD",
                "cash": _num(cash),
                "buying_power": _num(buying_power),
                "non_marginable_buying_power": _num(buying_power),
                "portfolio_value": _num(cash + held),
                "equity": _num(cash + held),
                "long_market_value": _num(held),
                "short_market_value": "0",
                "multiplier": "1",
                "trading_blocked": False,
                "transfers_blocked": False,
                "account_blocked": False,
                "shorting_enabled": False,
                "created_at": "2024-01-02T15:04:05Z",
            },
        )

    def latest_quote(self, symbol: str) -> Reply:
        """``GET /v2/stocks/{symbol}/quotes/latest``."""
        with self._lock:
            return Reply(200, {"symbol": symbol, "quote": self._quote_json(symbol)})

    def latest_quotes(self, symbols: str) -> Reply:
        """``GET /v2/stocks/quotes/latest?symbols=A,B`` (what alpaca-py's client calls)."""
        wanted = [s for s in symbols.split(",") if s]
        if not wanted:
            return _fail(400, "missing symbols")
        with self._lock:
            return Reply(200, {"quotes": {s: self._quote_json(s) for s in wanted}})


@functools.cache
def _pattern(template: str) -> re.Pattern[str]:
    # Templates hold no regex metacharacters; each {name} matches one path segment.
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template))


RouteHandler = Callable[[AlpacaExchange, dict[str, str], dict[str, str], bytes], Reply]


@dataclass(frozen=True, slots=True)
class Route:
    """``name`` is ``"METHOD /template"``; each ``{name}`` of the template is one path segment."""

    method: str
    template: str
    handle: RouteHandler

    @property
    def name(self) -> str:
        """How faults and the request log name this route."""
        return f"{self.method} {self.template}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when ``method`` and ``path`` are this route's, else ``None``."""
        if method != self.method:
            return None
        found = _pattern(self.template).fullmatch(path)
        return found.groupdict() if found else None


ROUTE_TABLE: tuple[Route, ...] = (
    Route("POST", "/v2/orders", lambda ex, p, q, body: ex.submit(body)),
    Route("GET", "/v2/orders", lambda ex, p, q, body: ex.list_orders(q)),
    Route(
        "GET",
        "/v2/orders:by_client_order_id",
        lambda ex, p, q, body: ex.order_by_client_id(q.get("client_order_id", "")),
    ),
    Route("GET", "/v2/orders/{order_id}", lambda ex, p, q, body: ex.get_order(p["order_id"])),
    Route("DELETE", "/v2/orders/{order_id}", lambda ex, p, q, body: ex.cancel(p["order_id"])),
    Route("GET", "/v2/positions", lambda ex, p, q, body: ex.positions()),
    Route("GET", "/v2/account", lambda ex, p, q, body: ex.account()),
    Route(
        "GET",
        "/v2/stocks/{symbol}/quotes/latest",
        lambda ex, p, q, body: ex.latest_quote(p["symbol"]),
    ),
    Route(
        "GET",
        "/v2/stocks/quotes/latest",
        lambda ex, p, q, body: ex.latest_quotes(q.get("symbols", "")),
    ),
)
ROUTES = frozenset(route.name for route in ROUTE_TABLE)
