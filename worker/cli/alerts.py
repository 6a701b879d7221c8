"""``alchemiser alerts``: open alerts (groups of alike final failures) and their escalation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from kombu.exceptions import OperationalError as BrokerError

from resilience.notify.alert_store import AlertState
from worker.cli.context import (
    CliError,
    JsonOption,
    print_json,
    print_table,
    say,
    services,
)

__all__ = ["app"]

app = typer.Typer(
    help="Open alerts and their escalation; an acknowledged alert escalates no further.",
    no_args_is_help=True,
)

AlertIdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="Alert id, as 'alerts list' shows it.")
]


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every open alert, oldest first."""
    with services(ctx) as svc:
        alerts = svc.alerts.open_alerts()
    if as_json:
        print_json([_document(alert) for alert in alerts])
        return
    print_table(
        "Open alerts",
        ["id", "group", "severity", "status", "count", "level", "rule", "opened_at"],
        (
            [
                a.alert_id,
                a.group,
                a.severity,
                a.status,
                str(a.count),
                "none yet" if a.level < 0 else str(a.level),
                a.rule,
                _iso(a.opened_at_s),
            ]
            for a in alerts
        ),
        empty="no open alerts",
        whole=["id"],
    )


@app.command("ack")
def ack(ctx: typer.Context, alert_id: AlertIdArgument, as_json: JsonOption = False) -> None:
    """Acknowledge alert ID: its next escalation levels and reminders are not sent."""
    with services(ctx) as svc:
        if not svc.alerts.ack(alert_id):
            raise CliError(f"no open alert {alert_id!r} (see 'alchemiser alerts list')")
        # The workers tell the receivers that track incidents (PagerDuty) it was acknowledged.
        try:
            svc.publish("tasks.escalate", kwargs={"acknowledged": {"alert_id": alert_id}})
        except BrokerError as down:
            say(
                f"warning: {svc.describe_broker_failure(down)}; the alert is acknowledged, but"
                " PagerDuty was not told: run this again once the broker answers",
                err=True,
            )
    if as_json:
        print_json({"id": alert_id, "status": "acknowledged"})
    else:
        typer.echo(f"acknowledged {alert_id}: no further escalation")


def _document(alert: AlertState) -> dict[str, object]:
    return {
        "id": alert.alert_id,
        "group": alert.group,
        "severity": alert.severity,
        "status": alert.status,
        "count": alert.count,
        "level": alert.level,
        "rule": alert.rule,
        "opened_at": _iso(alert.opened_at_s),
    }


def _iso(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, UTC).isoformat(timespec="seconds")
