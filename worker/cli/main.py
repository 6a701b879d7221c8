"""The ``alchemiser`` console script: the command tree and its entry point."""

from __future__ import annotations

from typing import Annotated

import typer

from resilience.scrub import Scrubber
from worker.cli import (
    alerts,
    breaker,
    chaos,
    dlq,
    health,
    limits,
    orders,
    paper,
    patterns,
    runbook,
)
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
app.command("patterns")(patterns.patterns)
app.command("runbook")(runbook.runbook)


@app.command("demo")
def demo(
    orders: Annotated[int, typer.Option(min=4, max=1000, help="Orders in the flaky phase.")] = 40,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Worker processes to start.")] = 2,
    keep: Annotated[bool, typer.Option(help="Keep the demo's Redis keys afterwards.")] = False,
) -> None:
    """Run the main job end to end on the embedded default (no Redis needed)."""
    # Imported when asked: the demo pulls in the embedded Redis and the worker fleet.
    from worker.demo import run_demo  # noqa: PLC0415
    from worker.embedded import NoRedisForDemoError  # noqa: PLC0415

    try:
        code = run_demo(orders=orders, workers=workers, keep=keep)
    except NoRedisForDemoError as missing:
        typer.echo(f"error: {missing}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``alchemiser`` console script.

    Click's own errors (an unknown command, a value that is not a number) print as one line on
    stderr, as the commands' own do, instead of a usage block and a framed message.
    """
    try:
        code = app(prog_name="alchemiser", standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        raise SystemExit(1) from None
    except typer.TyperException as error:  # Click's errors (Typer ships its own Click)
        raise SystemExit(_report(error)) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _report(error: typer.TyperException) -> int:
    """Print a Click error as one line (the help, for a group called without a command)."""
    ctx = getattr(error, "ctx", None)
    exit_code = int(getattr(error, "exit_code", 2))
    if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help())
        return exit_code
    message = " ".join(str(getattr(error, "format_message", error.__str__)()).split())
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    typer.echo(f"error: {message}{hint}", err=True)
    return exit_code


if __name__ == "__main__":
    main()
