"""``alchemiser limits``: rate limits, concurrency limits, retry budgets and permit leases, with
their usage."""

from __future__ import annotations

import typer

from resilience.guard.status import LimitStatus
from worker.cli.context import JsonOption, print_json, print_table, services

__all__ = ["app"]

app = typer.Typer(
    help="Rate limits, concurrency limits and retry budgets of guarded resources.",
    no_args_is_help=True,
)

OFF = "-"


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every resource's limits with their current usage (fleet-wide)."""
    with services(ctx) as svc:
        statuses = svc.guard_status.limits()
    if as_json:
        print_json([status.to_dict() for status in statuses])
        return
    print_table(
        "Limits",
        [
            "name",
            "rate_limit",
            "rate_limit.remaining",
            "rate_limit.next_allowed_in_s",
            "concurrency",
            "retry_budget",
            "permit_lease",
            "admitted",
            "refused",
            "without_redis",
        ],
        (_row(s) for s in statuses),
        empty="no limits configured",
    )


def _row(status: LimitStatus) -> list[str]:
    rate, concurrency, budget = status.rate_limit, status.concurrency, status.retry_budget
    lease = status.permit_lease
    return [
        status.name,
        f"{rate.rate:g} per {rate.period_s:g} s, burst {rate.burst}" if rate else OFF,
        str(rate.remaining) if rate else OFF,
        f"{rate.next_allowed_in_s:.3f} s" if rate else OFF,
        f"{concurrency.in_use} of {concurrency.limit} in use" if concurrency else OFF,
        f"{budget.tokens:.1f} of {budget.capacity:g} tokens" if budget else OFF,
        f"{lease.permits} per {lease.ttl_s:g} s" if lease else OFF,
        str(status.admitted),
        ", ".join(f"{reason} {n}" for reason, n in status.refused.items()) or "0",
        ", ".join(f"{decision} {n}" for decision, n in status.without_redis.items()) or "0",
    ]
