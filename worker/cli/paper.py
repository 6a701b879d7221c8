"""``alchemiser paper``: the built-in paper broker's state."""

from __future__ import annotations

import typer

from tasks.brokers.paper import PaperBroker
from worker.cli.context import EXIT_USAGE, CliError, JsonOption, print_json, print_table, services

__all__ = ["app"]

app = typer.Typer(help="Inspect the paper broker (state in Redis).", no_args_is_help=True)


@app.command("orders")
def orders(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """The paper broker's orders, oldest first."""
    with services(ctx) as svc:
        if svc.settings.trading_broker != "paper":
            raise CliError(
                f"ALCHEMISER_TRADING_BROKER is {svc.settings.trading_broker!r}; "
                "set it to 'paper' to inspect the paper broker",
                exit_code=EXIT_USAGE,
            )
        broker = svc.runtime.broker
        if not isinstance(broker, PaperBroker):  # pragma: no cover - build_runtime ensures it
            raise CliError("the runtime did not build a paper broker")
        rows = [
            {
                "client_order_id": order.client_order_id,
                "symbol": order.symbol,
                "side": order.side,
                "qty": order.qty,
                "status": order.status,
            }
            for order in broker.list_orders()
        ]
    if as_json:
        print_json(rows)
        return
    print_table(
        "Paper orders",
        ["client_order_id", "symbol", "side", "qty", "status"],
        (
            [r["client_order_id"], r["symbol"], r["side"], f"{r['qty']:g}", r["status"]]
            for r in rows
        ),
        empty="the paper broker has no orders",
    )
