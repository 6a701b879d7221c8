"""``alchemiser health`` (CONTRACT: exit code 0, 1, 2, or 3 when the fleet's state cannot be
read) and ``alchemiser serve`` (the HTTP face: /health, /metrics, the dashboard)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, NoReturn

import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from resilience.observability.health import HealthReport, HealthStatus
from worker.cli.context import CliError, JsonOption, print_json, print_table, say, services

__all__ = ["EXIT_UNKNOWN", "health", "serve"]

# Nagios' UNKNOWN: a monitor must not read "Redis is down" as the fleet's WARNING (1).
EXIT_UNKNOWN = 3

_MARK = {HealthStatus.HEALTHY: "ok", HealthStatus.WARNING: "!!", HealthStatus.CRITICAL: "XX"}


def health(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The fleet's health: healthy (exit 0), warning (1) or critical (2), and why; unknown (3)
    when Redis cannot be read."""
    from worker.observability import build_health_monitor  # noqa: PLC0415 - pulls in the runtime

    with services(ctx) as svc:
        try:
            report = build_health_monitor(svc.settings, svc.redis, svc.keys).report()
        except (RedisConnectionError, RedisTimeoutError) as down:
            _unknown(svc.describe_redis_failure(down), type(down).__name__, as_json=as_json)
    if as_json:
        print_json(report.to_dict())
    else:
        _print(report)
    raise typer.Exit(report.status.exit_code)


def _unknown(reason: str, error: str, *, as_json: bool) -> NoReturn:
    """Report the fleet's state as unknown, like a state that was read (stdout), and exit 3."""
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    if as_json:
        print_json(
            {"status": "unknown", "checked_at": checked_at, "reasons": [reason], "error": error}
        )
    else:
        say(f"UNKNOWN at {checked_at}")
        say(f"  - {reason}")
    raise typer.Exit(EXIT_UNKNOWN)


def _print(report: HealthReport) -> None:
    say(f"{report.status.value.upper()} at {report.checked_at}")
    for reason in report.reasons:
        say(f"  - {reason}")
    print_table(
        "Checks",
        ["", "check", "observed", "threshold", "says"],
        (
            [
                _MARK[c.status],
                c.name,
                "" if c.observed is None else f"{c.observed:g}",
                "" if c.threshold is None else f"{c.threshold:g}",
                c.message,
            ]
            for c in report.checks
        ),
        empty="no checks",
    )
    for advice in report.recommendations:
        say(f"* {advice}")


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: ALCHEMISER_HTTP_HOST).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port (default: ALCHEMISER_HTTP_PORT)."),
    ] = None,
) -> None:
    """Serve /health, /metrics and the dashboard (/) until interrupted. Starts without Redis:
    /health answers 503 "unknown" until Redis can be read."""
    from worker.http import ObservabilityServer  # noqa: PLC0415
    from worker.observability import build_sources  # noqa: PLC0415

    with services(ctx) as svc:
        # No Redis check here: a monitor needs /health to say "unknown" while Redis is down,
        # and every request reads Redis afresh, so answers recover when it is back.
        settings = svc.settings
        sources = build_sources(settings)
        address = (
            host if host is not None else settings.http_host,
            port if port is not None else settings.http_port,
        )
        try:
            server = ObservabilityServer(sources, host=address[0], port=address[1])
        except OSError as cannot:  # the port is taken, the host is not this machine's
            raise CliError(
                f"cannot listen on {address[0]}:{address[1]} ({cannot.strerror or cannot}). "
                "Choose another with --host/--port (ALCHEMISER_HTTP_HOST, ALCHEMISER_HTTP_PORT)."
            ) from None
        say(f"serving {server.url}/ (dashboard), /health, /metrics")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            say("stopped")
