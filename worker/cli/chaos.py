"""``alchemiser chaos``: fault injection shared by every worker."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from resilience.chaos import FOREIGN_FAULTS, ChaosRule, Phase
from tasks.brokers.paper import CHAOS_TARGETS as BROKER_TARGETS
from tasks.market_data.providers import FALLBACK_CHAOS_TARGETS
from worker.cli.context import (
    EXIT_USAGE,
    CliError,
    JsonOption,
    print_json,
    print_table,
    say,
    seconds_option,
    services,
    whole_option,
)
from worker.settings import DAY_S, WEEK_S

# Every operation that consults fault rules: the paper broker's and the second quote provider's.
CHAOS_TARGETS = (*BROKER_TARGETS, *FALLBACK_CHAOS_TARGETS)

__all__ = ["app"]

# Bounds of `chaos inject`: a drill's rule, not a permanent outage or a worker asleep for good.
MAX_DURATION_S = WEEK_S
MAX_RETRY_AFTER_S = DAY_S
MAX_COUNT = 1_000_000
MAX_LATENCY_MS = 600_000

app = typer.Typer(help="Inject faults into adapter operations.", no_args_is_help=True)


@app.command("inject")
def inject(
    ctx: typer.Context,
    *,
    target: Annotated[
        str, typer.Argument(help="Adapter operation: " + ", ".join(CHAOS_TARGETS) + ".")
    ],
    error: Annotated[
        str,
        typer.Option(
            "--error",
            help="A class of resilience.errors, or one of " + ", ".join(FOREIGN_FAULTS) + ".",
        ),
    ],
    probability: Annotated[
        float, typer.Option("--probability", help="Chance each call fails, in (0, 1].")
    ] = 1.0,
    duration_s: Annotated[
        float | None,
        typer.Option("--duration", help="Seconds the rule stays active."),
    ] = None,
    count: Annotated[int | None, typer.Option("--count", help="Fire at most this often.")] = None,
    latency_ms: Annotated[
        int, typer.Option("--latency-ms", help="Extra latency before the fault, ms.")
    ] = 0,
    phase: Annotated[
        Phase,
        typer.Option("--phase", help="before: the call never happens; after: its reply is lost."),
    ] = "before",
    retry_after_s: Annotated[
        float | None, typer.Option("--retry-after", help="Retry-After hint carried by the fault.")
    ] = None,
    message: Annotated[
        str | None, typer.Option("--message", help="Text appended to the fault's message.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Add (or replace) the fault rule of TARGET for its phase."""
    with services(ctx) as svc:
        if target not in CHAOS_TARGETS:
            raise CliError(
                f"unknown chaos target {target!r}; known: {', '.join(CHAOS_TARGETS)}",
                exit_code=EXIT_USAGE,
            )
        duration = seconds_option("--duration", duration_s, maximum=MAX_DURATION_S)
        whole_option("--latency-ms", latency_ms, minimum=0, maximum=MAX_LATENCY_MS)
        expires_at_ms = None if duration is None else int((time.time() + duration) * 1000)
        try:
            rule = ChaosRule(
                target=target,
                error=error,
                probability=probability,
                count=whole_option("--count", count, minimum=1, maximum=MAX_COUNT),
                expires_at_ms=expires_at_ms,
                latency_ms=latency_ms,
                phase=phase,
                retry_after_s=seconds_option(
                    "--retry-after", retry_after_s, maximum=MAX_RETRY_AFTER_S, allow_zero=True
                ),
                message=message,
            )
        except ValueError as invalid:
            raise CliError(str(invalid), exit_code=EXIT_USAGE) from None
        svc.chaos.inject(rule)  # Redis is touched only once the rule is valid
    if as_json:
        print_json(asdict(rule))
        return
    say(f"injected {rule.error} on {rule.target} ({_describe(rule)})")


@app.command("clear")
def clear(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Argument(help="Only this target (default: all).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Remove the rule of TARGET, or every rule."""
    with services(ctx) as svc:
        removed = svc.chaos.clear(target)
    if as_json:
        print_json({"removed": removed})
        return
    say(f"removed {removed} rule{'' if removed == 1 else 's'}")


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Active rules, with how often each target's faults fired."""
    with services(ctx) as svc:
        rules = svc.chaos.rules()
        fired = svc.chaos.fired()
    if as_json:
        print_json([{**asdict(rule), "fired": fired.get(rule.target, 0)} for rule in rules])
        return
    print_table(
        "Fault rules",
        ["target", "error", "phase", "rule", "fired"],
        ([r.target, r.error, r.phase, _describe(r), fired.get(r.target, 0)] for r in rules),
        empty="no fault rules",
    )


@app.command("clock")
def clock(
    ctx: typer.Context,
    seconds: Annotated[
        float | None,
        typer.Argument(
            help="Move the escalation clock this many seconds ahead (-- -60 moves it back).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show, or move, the fleet's escalation clock: a drill of group waits, escalation levels,
    reminders and resolution without waiting for them. `chaos clear` resets it."""
    with services(ctx) as svc:
        if seconds is None:
            shift = svc.chaos.clock_shift_s()
        else:
            try:
                shift = svc.chaos.shift_clock(seconds)
            except ValueError as invalid:
                raise CliError(str(invalid), exit_code=EXIT_USAGE) from None
    if as_json:
        print_json({"clock_shift_s": shift})
        return
    say(f"the escalation clock runs {shift:+g} s from Redis time")


def _describe(rule: ChaosRule) -> str:
    parts = [f"p={rule.probability:g}"]
    if rule.count is not None:
        parts.append(f"{rule.count} left")
    if rule.expires_at_ms is not None:
        expires = datetime.fromtimestamp(rule.expires_at_ms / 1000, UTC)
        past = " (expired)" if rule.expires_at_ms <= time.time() * 1000 else ""
        parts.append(f"until {expires.isoformat(timespec='seconds')}{past}")
    if rule.latency_ms:
        parts.append(f"+{rule.latency_ms} ms")
    if rule.retry_after_s is not None:
        parts.append(f"retry-after {rule.retry_after_s:g}s")
    return ", ".join(parts)
