"""The trading actions as Celery tasks (names fixed by CONTRACT).

Each body validates its payload, calls the broker adapter and lets exceptions out:
``ResilientTask`` classifies them and applies the policy. Orders are idempotent by
``client_order_id``: whenever an earlier delivery may have reached the broker (a retry, a
redelivery after a crash, a replay), the order is looked up before it is submitted and before
it is dead-lettered, and a 422 for a repeated id resolves to the order the broker already has
if that is this order (same symbol, side, qty, type and limit price), else it is a conflict.
"""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from celery.result import AsyncResult
from kombu.utils.uuid import uuid

from resilience.errors import (
    DuplicateOrderError,
    IdempotencyConflictError,
    OrderExecutionError,
    ValidationError,
)
from resilience.task import DeliveryState, ResilientTask
from tasks.application import application_task
from tasks.brokers.base import Order
from tasks.ordering import (
    already_placed_result,
    fill_order_defaults,
    order_differences,
    parse_deadline_s,
)
from tasks.payloads import (
    CancelRequest,
    OrderRequest,
    QuoteRequest,
    RebalanceRequest,
    SyncRequest,
    parse_payload,
)
from tasks.runtime import ORDER_TTL_SETTING, TradingRuntime, trading_runtime

__all__ = ["cancel_order", "fetch_quote", "rebalance", "submit_order", "sync_positions"]

_log = structlog.get_logger("alchemiser.trading")

MIN_ORDER_VALUE = 1.0


class TradingTask(ResilientTask):
    """A task on the ``trading`` queue: admitted by the account's rate limit and the trading
    API's breaker and concurrency limit."""

    component = "trading"
    resources = ("broker.api", "broker.orders")

    def idempotency_key_of(self, kwargs: dict[str, Any]) -> str | None:
        """The order's ``client_order_id``: the broker books it once."""
        value = kwargs.get("client_order_id")
        return str(value) if value is not None else None

    @property
    def trading(self) -> TradingRuntime:
        """This process's trading runtime."""
        return trading_runtime(self.app)

    def may_have_reached_broker(self) -> bool:
        """Whether an earlier delivery of this task may already have acted at the broker."""
        state = self.delivery_state()
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        return redelivered or state.failures > 0 or state.replay_of is not None


class OrderTask(TradingTask):
    """``tasks.submit_order``: the order's identity and deadline are fixed when it is enqueued
    through this object (``.delay``/``.apply_async``), else before its first run."""

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        *more: Any,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Publish with ``client_order_id`` (from the task id) and ``valid_until`` (now plus
        the order TTL) filled in when absent, so the deadline counts the time in the queue."""
        ttl_s = self.app.conf.get(ORDER_TTL_SETTING)
        if kwargs is not None and ttl_s is not None:
            task_id = task_id or uuid()
            kwargs = fill_order_defaults(
                kwargs, seed=task_id, ttl_s=float(ttl_s), now_s=time.time()
            )
        return super().apply_async(args, kwargs, task_id, *more, **options)

    def prepare_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return fill_order_defaults(
            kwargs,
            seed=str(self.request.id),
            ttl_s=self.trading.order_ttl_s,
            now_s=self.runtime.clock.now_s(),
        )

    def deadline_s(self, kwargs: dict[str, Any]) -> float | None:
        return parse_deadline_s(kwargs.get("valid_until"))

    def settled_elsewhere(self, kwargs: dict[str, Any], state: DeliveryState) -> Any | None:
        """The order as already placed if an attempt that may have reached the broker booked
        it (its reply lost): then it is a success, not a dead letter. An order the broker
        holds under this id but with other terms is no settlement (the conflict stands)."""
        if not (state.failures or self.may_have_reached_broker()):
            return None
        try:
            request = parse_payload(OrderRequest, kwargs)
        except ValidationError:  # an invalid order was never sent
            return None
        existing = self.trading.broker.get_order_by_client_id(request.client_order_id)
        if existing is None or order_differences(request, existing):
            return None
        return already_placed_result(existing, outcomes=self.runtime.outcomes, task_name=self.name)


def _already_placed(task: OrderTask, request: OrderRequest, existing: Order) -> dict[str, Any]:
    """Resolve to ``existing`` if it is the order requested; a reused key for another order
    raises :class:`IdempotencyConflictError` (never reported as placed)."""
    differences = order_differences(request, existing)
    if differences:
        described = "; ".join(
            f"{name} {want!r} (the broker holds {have!r})"
            for name, (want, have) in differences.items()
        )
        raise IdempotencyConflictError(
            f"client_order_id {request.client_order_id} already names a different order at"
            f" the broker; this order was not placed. Differs in: {described}",
            details={"broker_order_id": existing.id, "differing_fields": list(differences)},
        )
    return already_placed_result(existing, outcomes=task.runtime.outcomes, task_name=task.name)


@application_task(base=OrderTask, name="tasks.submit_order")
def submit_order(self: OrderTask, /, **payload: Any) -> dict[str, Any]:
    """Place one order exactly once, whatever happened to earlier deliveries."""
    order = parse_payload(OrderRequest, payload)
    broker = self.trading.broker
    if self.may_have_reached_broker():
        existing = broker.get_order_by_client_id(order.client_order_id)
        if existing is not None:
            return _already_placed(self, order, existing)
    try:
        placed = broker.submit_order(order)
    except Exception as exc:
        error = self.classify(exc)
        if isinstance(error, DuplicateOrderError):
            existing = broker.get_order_by_client_id(order.client_order_id)
            if existing is not None:
                return _already_placed(self, order, existing)
        raise
    _log.info("order_placed", client_order_id=order.client_order_id, status=placed.status)
    return {"order": placed.to_dict(), "duplicate_avoided": False}


@application_task(base=TradingTask, name="tasks.cancel_order")
def cancel_order(self: TradingTask, /, **payload: Any) -> dict[str, Any]:
    """Cancel a resting order; a retry finding it already canceled succeeds."""
    request = parse_payload(CancelRequest, payload)
    broker = self.trading.broker
    try:
        order = broker.cancel_order(request.order_id)
    except Exception as exc:
        error = self.classify(exc)
        if isinstance(error, OrderExecutionError) and self.may_have_reached_broker():
            current = broker.get_order(request.order_id)
            if current is not None and current.status == "canceled":
                return {"order": current.to_dict()}
        raise
    return {"order": order.to_dict()}


class MarketDataTask(ResilientTask):
    """A task on the ``market_data`` queue; transient failures are data-provider errors."""

    component = "market_data"
    resources = ("broker.api", "broker.data")


@application_task(base=MarketDataTask, name="tasks.fetch_quote")
def fetch_quote(self: MarketDataTask, /, **payload: Any) -> dict[str, Any]:
    """The latest quote of one symbol from the broker, with its source and age; when the broker
    fails, the recovery strategies answer from the second provider or the last good quote."""
    request = parse_payload(QuoteRequest, payload)
    return trading_runtime(self.app).quotes.fetch(request.symbol, self.runtime.clock.now_s())


def _leg_client_order_id(rebalance_id: str, symbol: str, side: str) -> str:
    return f"rb-{rebalance_id}-{re.sub(r'[^A-Za-z0-9]', '_', symbol)}-{side}"[:128]


@application_task(base=TradingTask, name="tasks.rebalance")
def rebalance(self: TradingTask, /, **payload: Any) -> dict[str, Any]:
    """Move the portfolio toward target weights by fanning out ``tasks.submit_order``.

    Each leg's ``client_order_id`` derives from this task's id, so a retried rebalance sends
    the same legs again and the broker keeps one order per leg.
    """
    request = parse_payload(RebalanceRequest, payload)
    broker = self.trading.broker
    account = broker.get_account()
    held = {p.symbol: p.qty for p in broker.list_positions()}
    symbols = sorted(set(request.targets) | set(held))
    # Never a quote older than the limit: a rebalance on stale prices trades the wrong sizes.
    book, now_s = self.trading.quotes, self.runtime.clock.now_s()
    max_age_s = request.max_quote_age_s or book.max_age_s
    quotes = {s: book.for_trading(s, now_s, max_age_s) for s in symbols}
    prices = {s: (q["bid"] + q["ask"]) / 2.0 for s, q in quotes.items()}
    equity = account.cash + sum(qty * prices[s] for s, qty in held.items())
    legs: list[dict[str, Any]] = []
    for symbol in symbols:
        target_value = request.targets.get(symbol, 0.0) * equity
        delta_value = target_value - held.get(symbol, 0.0) * prices[symbol]
        qty = int(abs(delta_value) // prices[symbol])
        if qty == 0 or abs(delta_value) < max(request.min_drift * equity, MIN_ORDER_VALUE):
            continue
        side = "buy" if delta_value > 0 else "sell"
        legs.append(
            {
                "symbol": symbol,
                "side": side,
                "qty": qty,
                "client_order_id": _leg_client_order_id(str(self.request.id), symbol, side),
                **({"valid_until": request.valid_until.isoformat()} if request.valid_until else {}),
            }
        )
    # Sells first, so their proceeds fund the buys.
    legs.sort(key=lambda leg: leg["side"] != "sell")
    for leg in legs:
        self.app.send_task("tasks.submit_order", kwargs=leg)
    _log.info("rebalance_fanned_out", legs=len(legs), equity=round(equity, 2))
    return {"equity": equity, "legs": legs}


@application_task(base=TradingTask, name="tasks.sync_positions")
def sync_positions(self: TradingTask, /, **payload: Any) -> dict[str, Any]:
    """Read positions and cash from the broker (the source of truth)."""
    parse_payload(SyncRequest, payload)
    broker = self.trading.broker
    account = broker.get_account()
    positions = broker.list_positions()
    return {"account": account.to_dict(), "positions": [p.to_dict() for p in positions]}
