"""``alchemiser order``: publish order tasks, validated before anything is sent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from tasks.payloads import CancelRequest, OrderRequest, parse_payload
from worker.cli.context import JsonOption, print_json, say, seconds_option, services
from worker.settings import MAX_ORDER_TTL_S

__all__ = ["app"]

app = typer.Typer(
    help="Publish trading tasks (validated before they are sent).", no_args_is_help=True
)


def new_client_order_id() -> str:
    """A fresh ``client_order_id`` for an order the operator did not name."""
    return f"alc-{uuid.uuid4().hex}"


@app.command("submit")
def submit(
    ctx: typer.Context,
    *,
    symbol: Annotated[str, typer.Argument(help="Ticker such as AAPL, BRK.B or BTC/USD.")],
    side: Annotated[str, typer.Option("--side", help="buy or sell.")],
    qty: Annotated[float, typer.Option("--qty", help="Quantity, greater than 0.")],
    order_type: Annotated[str, typer.Option("--type", help="market or limit.")] = "market",
    limit_price: Annotated[
        float | None, typer.Option("--limit-price", help="Limit price (limit orders only).")
    ] = None,
    client_order_id: Annotated[
        str | None,
        typer.Option("--client-order-id", help="Idempotency key; derived when absent."),
    ] = None,
    ttl_s: Annotated[
        float | None,
        typer.Option(
            "--ttl",
            help="Seconds the order stays valid (default: the configured order TTL).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Enqueue tasks.submit_order."""
    with services(ctx) as svc:
        ttl = seconds_option("--ttl", ttl_s, maximum=MAX_ORDER_TTL_S) or svc.settings.order_ttl_s
        payload: dict[str, Any] = {
            "symbol": symbol,
            "side": side,
            "qty": qty,
            "type": order_type,
            "client_order_id": client_order_id or new_client_order_id(),
            "valid_until": (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat(),
        }
        if limit_price is not None:
            payload["limit_price"] = limit_price
        order = parse_payload(OrderRequest, payload)  # ValidationError: exit 2, nothing sent
        task_id = svc.publish("tasks.submit_order", kwargs=order.to_kwargs())
    if as_json:
        print_json({"task_id": task_id, "client_order_id": order.client_order_id})
        return
    say(
        f"queued tasks.submit_order {task_id}: {order.side} {order.qty:g} {order.symbol} "
        f"({order.type}), client_order_id {order.client_order_id}, "
        f"valid until {order.valid_until.isoformat()}"
    )


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The broker's order id.")],
    as_json: JsonOption = False,
) -> None:
    """Enqueue tasks.cancel_order."""
    with services(ctx) as svc:
        request = parse_payload(CancelRequest, {"order_id": order_id})
        task_id = svc.publish("tasks.cancel_order", kwargs=request.model_dump(mode="json"))
    if as_json:
        print_json({"task_id": task_id, "order_id": request.order_id})
        return
    say(f"queued tasks.cancel_order {task_id} for order {request.order_id}")
