"""``alchemiser breaker``: the fleet-wide circuit breakers, and the operator's overrides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from resilience.errors import ConfigurationError
from resilience.guard.status import BreakerState, BreakerStatus, GuardStatus
from worker.cli.context import CliError, JsonOption, print_json, print_table, say, services

__all__ = ["app"]

app = typer.Typer(
    help="Circuit breakers: inspect, isolate (open), bypass (close), reset.", no_args_is_help=True
)

NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Resource name, e.g. broker.orders.")
]

# A worker that was refused by an OPEN breaker remembers it for up to Guard.open_cache_s.
CACHE_NOTE = "note: workers that saw it OPEN may keep refusing for up to 1 s (local cache)"


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every breaker: its state, and failure rate and calls over its window."""
    with services(ctx) as svc:
        statuses = svc.guard_status.breakers()
    if as_json:
        print_json([status.to_dict() for status in statuses])
        return
    print_table(
        "Breakers",
        [
            "name",
            "state",
            "failure_rate",
            "slow_call_rate",
            "calls",
            "open_until",
            "probes_in_flight",
            "opened_count",
        ],
        (_row(s) for s in statuses),
        empty="no breakers configured",
    )


def _row(status: BreakerStatus) -> list[str | int]:
    return [
        status.name,
        status.state.value,
        f"{status.failure_rate:.1f}%",
        f"{status.slow_call_rate:.1f}%",
        status.calls,
        status.open_until or "",
        status.probes_in_flight,
        status.opened_count,
    ]


@app.command("open")
def open_(ctx: typer.Context, name: NameArgument, as_json: JsonOption = False) -> None:
    """Force NAME open (isolate it): every new call is refused until 'breaker reset'."""
    _act(ctx, name, GuardStatus.force_open, BreakerState.FORCED_OPEN, as_json=as_json)


@app.command("close")
def close(ctx: typer.Context, name: NameArgument, as_json: JsonOption = False) -> None:
    """Force NAME closed (disable it): every call is admitted and none recorded, until
    'breaker reset'."""
    _act(ctx, name, GuardStatus.disable, BreakerState.DISABLED, as_json=as_json)


@app.command("reset")
def reset(ctx: typer.Context, name: NameArgument, as_json: JsonOption = False) -> None:
    """Back to normal: CLOSED with a fresh window and no memory of earlier openings."""
    _act(ctx, name, GuardStatus.reset, BreakerState.CLOSED, as_json=as_json)


def _act(
    ctx: typer.Context,
    name: str,
    action: Callable[[GuardStatus, str], str],
    target: BreakerState,
    *,
    as_json: bool,
) -> None:
    with services(ctx) as svc:
        guard = svc.guard_status  # bad settings still exit 2 from here
        try:
            transition = action(guard, name)
        except ConfigurationError as unknown:  # a name without a breaker: exit 1, known names
            raise CliError(unknown.message) from None
    before, _, after = transition.partition(">")
    if as_json:
        changed = bool(transition)
        print_json(
            {
                "name": name,
                "from": before if changed else target.value,
                "to": after if changed else target.value,
                "changed": changed,
            }
        )
        return
    say(f"{name}: {before} -> {after}" if transition else f"{name}: already {target.value}")
    if target is not BreakerState.FORCED_OPEN:
        say(CACHE_NOTE)
