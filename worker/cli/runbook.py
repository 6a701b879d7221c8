"""``alchemiser runbook ERROR_TYPE``: the runbook of an error type, generated from the fleet's
own history (Markdown; ``--json`` adds its parts as data)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated

import typer

from resilience.errors import error_class_by_name
from resilience.patterns.analysis import detect_patterns
from resilience.patterns.history import ErrorHistory
from resilience.patterns.resolutions import ResolutionLog
from resilience.runbooks.generator import RunbookInputs, build_runbook
from resilience.storage.clock import SystemClock
from tasks.spec import SPEC
from worker.cli.context import EXIT_USAGE, CliError, JsonOption, print_json, services

__all__ = ["runbook"]

DAY_S = 86_400
# Dead letters discarded are counted from this many newest audit records.
AUDIT_DEPTH = 10_000


def runbook(
    ctx: typer.Context,
    error_type: Annotated[str, typer.Argument(help="An error class, e.g. RateLimitError.")],
    as_json: JsonOption = False,
    days: Annotated[
        float, typer.Option("--days", min=1, max=365, help="History read, up to now.")
    ] = 28,
) -> None:
    """The runbook of ERROR_TYPE from what happened here: causes, diagnosis, what resolved it
    (most often first), prevention, who is told."""
    with services(ctx) as svc:
        try:
            error_class = error_class_by_name(error_type)
        except KeyError as unknown:
            raise CliError(str(unknown.args[0]), exit_code=EXIT_USAGE) from None
        now_s = time.time()
        events = ErrorHistory(svc.redis, svc.keys, SystemClock()).events(
            since_s=now_s - days * DAY_S
        )
        store = svc.dead_letters
        statuses = Counter(e.status for e in store.entries(error_type=error_type))
        discarded = sum(
            1
            for record in store.audit(limit=AUDIT_DEPTH)
            if record.action == "discard"
            and record.detail.get("entry", {}).get("error_type") == error_type
        )
        inputs = RunbookInputs(
            events=events,
            patterns=detect_patterns(events),
            resolutions=ResolutionLog(svc.redis, svc.keys).counts(error_type),
            dead_letters=statuses,
            discarded=discarded,
            policy=svc.settings.escalation_policy,
            advice=SPEC.advice,
            guidance=SPEC.guidance,
        )
    book = build_runbook(error_class, inputs, now_s=now_s)
    if as_json:
        print_json(book.to_dict())
        return
    typer.echo(book.to_markdown(), nl=False)
