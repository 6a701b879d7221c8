"""The ``alchemiser`` console script: the command tree and its entry point."""

from __future__ import annotations

import typer

from worker.cli import chaos, dlq, orders, paper

__all__ = ["app", "main"]

app = typer.Typer(
    name="alchemiser",
    help="Operate Alchemiser: publish orders, inspect dead letters, inject faults.",
    no_args_is_help=True,
    # Locals may hold URLs with passwords; an unexpected traceback must not print them.
    pretty_exceptions_show_locals=False,
)
app.add_typer(orders.app, name="order")
app.add_typer(paper.app, name="paper")
app.add_typer(dlq.app, name="dlq")
app.add_typer(chaos.app, name="chaos")


@app.command("demo")
def demo() -> None:
    """Run the main job end to end on the embedded default (no Redis needed)."""
    # Imported when asked: the demo pulls in the embedded Redis and the worker fleet.
    from worker.demo import run_demo  # noqa: PLC0415

    raise typer.Exit(run_demo())


def main() -> None:
    """Entry point of the ``alchemiser`` console script."""
    app(prog_name="alchemiser")
