"""The ``alchemiser`` console script: the command tree and its entry point."""

from __future__ import annotations

from typing import Annotated

import typer

from resilience.scrub import Scrubber
from worker.cli import alerts, breaker, chaos, dlq, health, limits, orders, paper
from worker.logging import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="alchemiser",
    help="Operate Alchemiser: publish orders, inspect dead letters, inject faults, watch and "
    "override breakers and limits.",
    no_args_is_help=True,
    # Locals may hold URLs with passwords; an unexpected traceback must not print them.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _log_to_stderr() -> None:
    # structlog's default writes to stdout, into the one JSON document of a --json command.
    # Until the settings are loaded (Services does it again with their secrets and level),
    # lines are scrubbed by pattern only.
    configure_logging(Scrubber())


app.add_typer(orders.app, name="order")
app.add_typer(paper.app, name="paper")
app.add_typer(dlq.app, name="dlq")
app.add_typer(chaos.app, name="chaos")
app.add_typer(breaker.app, name="breaker")
app.add_typer(limits.app, name="limits")
app.add_typer(alerts.app, name="alerts")
app.command("health")(health.health)
app.command("serve")(health.serve)


@app.command("demo")
def demo(
    orders: Annotated[int, typer.Option(min=4, max=1000, help="Orders in the flaky phase.")] = 40,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Worker processes to start.")] = 2,
    keep: Annotated[bool, typer.Option(help="Keep the demo's Redis keys afterwards.")] = False,
) -> None:
    """Run the main job end to end on the embedded default (no Redis needed)."""
    # Imported when asked: the demo pulls in the embedded Redis and the worker fleet.
    from worker.demo import run_demo  # noqa: PLC0415

    raise typer.Exit(run_demo(orders=orders, workers=workers, keep=keep))


def main() -> None:
    """Entry point of the ``alchemiser`` console script."""
    app(prog_name="alchemiser")


if __name__ == "__main__":
    main()
