"""``alchemiser dlq``: inspect, replay and discard dead letters."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from resilience.deadletter import DeadLetterStore, TransitionConflict
from resilience.replay import Replayer, ReplayResult
from tasks.replay import prepare_replay, replay_publisher
from worker.cli.context import (
    EXIT_USAGE,
    CliError,
    JsonOption,
    actor,
    print_json,
    print_table,
    say,
    seconds_option,
    services,
)

__all__ = ["app"]

app = typer.Typer(help="Dead letters: tasks that failed for good.", no_args_is_help=True)

ErrorFilter = Annotated[
    str | None, typer.Option("--error", help="Only entries with this error type (class name).")
]
IdsArgument = Annotated[
    list[str] | None, typer.Argument(metavar="ID", help="Dead-letter ids.", show_default=False)
]
AllOption = Annotated[bool, typer.Option("--all", help="Every entry with status 'dead'.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    *,
    as_json: JsonOption = False,
    error: ErrorFilter = None,
    task: Annotated[str | None, typer.Option("--task", help="Only this task name.")] = None,
    status: Annotated[
        Literal["dead", "replaying", "replayed"] | None,
        typer.Option("--status", help="Only entries in this status."),
    ] = None,
) -> None:
    """Dead letters, newest first."""
    with services(ctx) as svc:
        entries = svc.dead_letters.entries(error_type=error, task=task, status=status)
    if as_json:
        print_json([entry.summary() for entry in entries])
        return
    print_table(
        "Dead letters",
        ["id", "task", "error", "attempts", "dead at", "status", "client_order_id", "message"],
        (
            [
                e.id,
                e.task,
                e.error_type,
                len(e.attempts),
                e.dead_at,
                e.status,
                e.client_order_id or "",
                e.message,
            ]
            for e in entries
        ),
        empty="no dead letters",
    )


@app.command("show")
def show(
    ctx: typer.Context,
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="Dead-letter id.")],
    as_json: JsonOption = False,
) -> None:
    """One dead letter, whole: arguments, context, traceback and attempt history."""
    with services(ctx) as svc:
        entry = svc.dead_letters.get(entry_id)
        if entry is None:
            raise CliError(
                f"no dead letter with id {entry_id!r}; 'alchemiser dlq list' shows the ids"
            )
    body = asdict(entry)
    if as_json:
        print_json(body)
        return
    traceback = body.pop("traceback")
    print_table(
        f"Dead letter {entry.id}",
        ["field", "value"],
        (
            [name, value if isinstance(value, str) else json.dumps(value, indent=2)]
            for name, value in body.items()
        ),
        empty="",
    )
    if traceback:
        say(traceback)


def _selected_ids(
    store: DeadLetterStore, ids: list[str] | None, all_: bool, error: str | None, verb: str
) -> list[str]:
    given = list(ids or [])
    if given and all_:
        raise CliError(f"give dead-letter ids or --all, not both, to {verb}", exit_code=EXIT_USAGE)
    if not given and not all_:
        raise CliError(
            f"nothing to {verb}: give dead-letter ids (see 'alchemiser dlq list') or --all",
            exit_code=EXIT_USAGE,
        )
    if all_:
        return [entry.id for entry in store.entries(status="dead", error_type=error)]
    return given


@contextmanager
def _progress(total: int, *, show: bool) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr while ``show``; yields the callable that advances it."""
    if not show:
        yield lambda: None
        return
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task("replay", total=total)
        yield lambda: progress.advance(bar)


@app.command("replay")
def replay(
    ctx: typer.Context,
    *,
    ids: IdsArgument = None,
    all_: AllOption = False,
    error: ErrorFilter = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check what would be replayed; publish nothing.")
    ] = False,
    ttl_s: Annotated[
        float | None,
        typer.Option("--ttl", help="Give replayed orders a new deadline, in seconds."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-publish dead letters (same client_order_id, each at most once)."""
    with services(ctx) as svc:
        renew_ttl_s = seconds_option("--ttl", ttl_s)
        store = svc.dead_letters
        targets = _selected_ids(store, ids, all_, error, "replay")
        if targets and not dry_run:
            svc.check_broker()  # claim nothing while the broker is down
        replayer = Replayer(
            store,
            prepare=prepare_replay(now_s=time.time, renew_ttl_s=renew_ttl_s),
            publish=replay_publisher(svc.celery),
        )
        plan = _Plan(store, replayer, actor=actor(), error=error, dry_run=dry_run)
        with _progress(len(targets), show=len(targets) > 1 and not as_json) as advance:
            results: list[ReplayResult] = []
            for entry_id in targets:
                results.append(plan.replay(entry_id))
                advance()
    done = [r for r in results if r.outcome != "skipped"]
    skipped = [r for r in results if r.outcome == "skipped"]
    if as_json:
        document: dict[str, Any] = {
            "replayed": [r.to_dict() for r in done],
            "skipped": [r.to_dict() for r in skipped],
        }
        if dry_run:
            document["dry_run"] = True
        print_json(document)
        return
    print_table(
        "Replay (dry run)" if dry_run else "Replay",
        ["id", "outcome", "reason", "task_id"],
        ([r.id, r.outcome, r.reason, r.task_id or ""] for r in results),
        empty="nothing to replay",
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    """How each entry of one ``dlq replay`` is replayed."""

    store: DeadLetterStore
    replayer: Replayer
    actor: str
    error: str | None
    dry_run: bool

    def replay(self, entry_id: str) -> ReplayResult:
        """Replay one entry; explicit ids honour ``--error`` too."""
        if self.error is not None:
            entry = self.store.get(entry_id)
            if entry is not None and entry.error_type != self.error:
                reason = f"error type is {entry.error_type}, not {self.error}"
                return ReplayResult(entry_id, "skipped", reason)
        return self.replayer.replay(entry_id, actor=self.actor, dry_run=self.dry_run)


@app.command("discard")
def discard(
    ctx: typer.Context,
    *,
    ids: IdsArgument = None,
    all_: AllOption = False,
    error: ErrorFilter = None,
    as_json: JsonOption = False,
) -> None:
    """Remove dead letters (each stays in the audit trail)."""
    with services(ctx) as svc:
        store = svc.dead_letters
        targets = _selected_ids(store, ids, all_, error, "discard")
        who = actor()
        discarded: list[str] = []
        skipped: list[dict[str, str]] = []
        for entry_id in targets:
            try:
                store.discard(entry_id, actor=who)
            except TransitionConflict as conflict:
                skipped.append({"id": entry_id, "reason": _conflict_reason(conflict)})
            else:
                discarded.append(entry_id)
    if as_json:
        print_json({"discarded": discarded, "skipped": skipped})
        return
    rows = [[i, "discarded", ""] for i in discarded]
    rows += [[s["id"], "skipped", s["reason"]] for s in skipped]
    print_table("Discard", ["id", "outcome", "reason"], rows, empty="nothing to discard")


def _conflict_reason(conflict: TransitionConflict) -> str:
    if conflict.current == "missing":
        return "no such dead letter"
    return f"status is {conflict.current}"
