"""The paper broker: a simulated exchange whose state lives in Redis.

Every worker sees the same orders, positions and cash, so idempotency is tested across the
fleet exactly as against a real broker. Like Alpaca it refuses a repeated ``client_order_id``
with HTTP 422, buying beyond cash with 403, and selling beyond the position with 422. Market
orders fill at the quote; limit orders fill when marketable and rest otherwise. Quotes are
deterministic per symbol unless set. Fault-injection rules (``alchemiser chaos``) are consulted
before and after every operation.
"""

from __future__ import annotations

import json
import uuid
import zlib
from datetime import UTC, datetime
from typing import Literal, cast, get_args

from redis import Redis

from resilience.chaos import ChaosStore
from resilience.errors import MarketClosedError
from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace
from resilience.storage.scripts import register
from tasks.brokers import calendar
from tasks.brokers.base import Account, BrokerAPIError, Order, Position, Quote
from tasks.brokers.paper_keys import PaperKeys
from tasks.payloads import OrderRequest

__all__ = ["CHAOS_TARGETS", "ChaosOperation", "MarketHours", "PaperBroker"]

# The operations that consult fault rules (`alchemiser chaos inject TARGET`); a rule for any
# other target would never fire.
ChaosOperation = Literal[
    "cancel_order", "get_account", "get_order", "get_quote", "list_positions", "submit_order"
]
CHAOS_TARGETS: tuple[str, ...] = tuple(f"broker.{op}" for op in get_args(ChaosOperation))

MarketHours = Literal["always_open", "regular"]

SPREAD = 0.0005


def _reference_price(symbol: str) -> float:
    """A stable price in [20, 500) derived from the symbol."""
    return 20.0 + (zlib.crc32(symbol.encode()) % 48_000) / 100.0


class PaperBroker:
    """A :class:`~tasks.brokers.base.BrokerAdapter` backed by Redis."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        *,
        clock: Clock,
        chaos: ChaosStore | None = None,
        market_hours: MarketHours = "always_open",
        initial_cash: float = 1_000_000.0,
    ) -> None:
        self._client = client
        self._keys = PaperKeys(keys)
        self._clock = clock
        self._chaos = chaos
        self._market_hours = market_hours
        self._initial_cash = initial_cash
        self._submit = register(client, "tasks", "paper_submit")
        self._cancel = register(client, "tasks", "paper_cancel")

    def _strike(self, operation: ChaosOperation, phase: Literal["before", "after"]) -> None:
        if self._chaos is not None:
            self._chaos.strike(f"broker.{operation}", phase)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now_s(), UTC)

    def _check_market_open(self) -> None:
        if self._market_hours == "always_open":
            return
        now = self._now()
        if not calendar.is_open(now):
            opens = calendar.next_open(now)
            raise MarketClosedError(
                f"market closed; next regular session opens {opens.isoformat()}", next_open=opens
            )

    def get_quote(self, symbol: str) -> Quote:
        """The set quote of ``symbol``, else its deterministic reference price."""
        self._strike("get_quote", "before")
        raw = self._client.hget(self._keys.quotes, symbol)
        mid = float(raw) if raw is not None else _reference_price(symbol)
        quote = Quote(
            symbol=symbol,
            bid=round(mid * (1 - SPREAD), 4),
            ask=round(mid * (1 + SPREAD), 4),
            at=self._now().isoformat(),
        )
        self._strike("get_quote", "after")
        return quote

    def set_quote(self, symbol: str, mid: float) -> None:
        """Fix the midpoint price of ``symbol`` (tests, demos)."""
        self._client.hset(self._keys.quotes, symbol, repr(mid))

    def submit_order(self, order: OrderRequest) -> Order:
        """Book an order; fills market orders and marketable limits at the quote."""
        self._strike("submit_order", "before")
        self._check_market_open()
        raw_quote = self._client.hget(self._keys.quotes, order.symbol)
        mid = float(raw_quote) if raw_quote is not None else _reference_price(order.symbol)
        price = mid * (1 + SPREAD) if order.side == "buy" else mid * (1 - SPREAD)
        marketable = order.type == "market" or (
            order.limit_price is not None
            and (price <= order.limit_price if order.side == "buy" else price >= order.limit_price)
        )
        fill_price = round(price, 4) if marketable else None
        sign = 1.0 if order.side == "buy" else -1.0
        placed = Order(
            id=str(uuid.uuid4()),
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            type=order.type,
            limit_price=order.limit_price,
            status="filled" if marketable else "accepted",
            filled_qty=order.qty if marketable else 0.0,
            filled_avg_price=fill_price,
            submitted_at=self._now().isoformat(),
        )
        reserve_price = fill_price if fill_price is not None else (order.limit_price or price)
        keys = self._keys
        outcome, detail = self._submit(
            keys=[
                keys.orders,
                keys.order_ids,
                keys.positions,
                keys.account,
                keys.log,
            ],
            args=[
                order.client_order_id,
                placed.id,
                placed.to_json(),
                order.symbol,
                order.side,
                repr(order.qty),
                repr(-sign * order.qty * fill_price) if fill_price is not None else "0",
                repr(sign * order.qty) if fill_price is not None else "0",
                repr(self._initial_cash),
                repr(order.qty * reserve_price),
            ],
        )
        if outcome == "duplicate":
            raise BrokerAPIError(422, "client_order_id must be unique")
        if outcome == "insufficient_funds":
            raise BrokerAPIError(403, f"insufficient buying power (cash {float(detail):.2f})")
        if outcome == "insufficient_qty":
            raise BrokerAPIError(422, f"insufficient qty available for order (held {detail})")
        self._strike("submit_order", "after")
        return Order.from_dict(json.loads(detail))

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """The order booked under ``client_order_id``, if any."""
        self._strike("get_order", "before")
        raw = self._client.hget(self._keys.orders, client_order_id)
        return Order.from_dict(json.loads(raw)) if raw is not None else None

    def cancel_order(self, order_id: str) -> Order:
        """Cancel a resting order; 404 if unknown, 422 if already filled or canceled."""
        self._strike("cancel_order", "before")
        keys = self._keys
        outcome, detail = self._cancel(
            keys=[keys.orders, keys.order_ids, keys.account, keys.log],
            args=[order_id],
        )
        if outcome == "not_found":
            raise BrokerAPIError(404, f"order not found: {order_id}")
        if outcome == "not_cancelable":
            raise BrokerAPIError(422, f"order is not cancelable (status {detail})")
        self._strike("cancel_order", "after")
        return Order.from_dict(json.loads(detail))

    def get_order(self, order_id: str) -> Order | None:
        """The order with broker id ``order_id``, if any."""
        client_order_id = self._client.hget(self._keys.order_ids, order_id)
        return self.get_order_by_client_id(str(client_order_id)) if client_order_id else None

    def list_positions(self) -> list[Position]:
        """Every non-zero position."""
        self._strike("list_positions", "before")
        raw = cast("dict[str, str]", self._client.hgetall(self._keys.positions))
        return [Position(s, float(q)) for s, q in sorted(raw.items()) if abs(float(q)) > 1e-12]

    def get_account(self) -> Account:
        """Cash (the paper broker lends nothing: buying power equals cash)."""
        self._strike("get_account", "before")
        raw = self._client.hget(self._keys.account, "cash")
        cash = float(raw) if raw is not None else self._initial_cash
        return Account(cash=cash, buying_power=cash)

    def list_orders(self) -> list[Order]:
        """Every booked order, oldest first."""
        raw = cast("dict[str, str]", self._client.hgetall(self._keys.orders))
        orders = [Order.from_dict(json.loads(v)) for v in raw.values()]
        return sorted(orders, key=lambda o: (o.submitted_at, o.client_order_id))

    def counters(self) -> dict[str, int]:
        """accepted, duplicates_rejected, rejected, canceled."""
        raw = cast("dict[str, str]", self._client.hgetall(self._keys.account))
        return {k: int(float(v)) for k, v in raw.items() if k != "cash"}

    def reset(self) -> None:
        """Forget every order, position, quote and counter."""
        keys = self._keys
        self._client.delete(
            keys.orders,
            keys.order_ids,
            keys.positions,
            keys.account,
            keys.quotes,
            keys.log,
        )
