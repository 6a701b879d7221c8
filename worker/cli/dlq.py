"""``alchemiser dlq``: inspect, replay and discard dead letters.

An ID is a dead letter's id or any start of it that no other id shares (as git names commits).
Exit codes: 0 when every ID was shown, replayed (or would be, with ``--dry-run``) or discarded;
1 when some were skipped (each with its reason: on stderr, or in the ``--json`` document) and
when Redis or the broker cannot be reached; 2 for usage errors (no ID nor ``--all``, an unknown
``--error`` class or ``--task`` name, a bad ``--ttl``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from resilience.deadletter.replay import Replayer, ReplayResult
from resilience.deadletter.store import DeadLetter, DeadLetterStore, IdMatches, TransitionConflict
from resilience.errors import error_classes
from tasks.replay import prepare_replay, replay_publisher
from tasks.routing import ROUTES
from worker.cli.context import (
    EXIT_FAILURE,
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
from worker.settings import MAX_ORDER_TTL_S

__all__ = ["app"]

app = typer.Typer(
    help="Dead letters: tasks that failed for good.",
    epilog=(
        "An ID may be shortened to any start of it that no other id shares. Exit codes: 0 done,"
        " 1 some ID skipped (or Redis/broker unreachable), 2 usage error."
    ),
    no_args_is_help=True,
)

ErrorFilter = Annotated[
    str | None, typer.Option("--error", help="Only entries with this error type (class name).")
]
IdsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="ID", help="Dead-letter ids, or unique starts of them.", show_default=False
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every entry with status 'dead'.")]

NO_SUCH = "no such dead letter"


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
        _check_filters(error, task)
        entries = svc.dead_letters.entries(error_type=error, task=task, status=status)
    if as_json:
        print_json([_row(entry) for entry in entries])
        return
    print_table(
        "Dead letters",
        ["id", "task", "error_type", "attempts", "dead_at", "status", "client_order_id", "message"],
        (
            [
                e.id,
                e.task,
                e.error_type,
                len(e.attempts),
                e.dead_at,
                e.status,
                e.idempotency_key or "",
                e.message,
            ]
            for e in entries
        ),
        empty="no dead letters",
        whole=["id"],
    )


def _row(entry: DeadLetter) -> dict[str, Any]:
    """The row shape of ``dlq list --json`` (CONTRACT)."""
    return {
        "id": entry.id,
        "task": entry.task,
        "error_type": entry.error_type,
        "message": entry.message,
        "attempts": len(entry.attempts),
        "dead_at": entry.dead_at,
        "status": entry.status,
        "client_order_id": entry.idempotency_key,
    }


def _whole(entry: DeadLetter) -> dict[str, Any]:
    """``dlq show``: every field, the idempotency key by its name here (an order's)."""
    return {
        ("client_order_id" if name == "idempotency_key" else name): value
        for name, value in asdict(entry).items()
    }


@app.command("show")
def show(
    ctx: typer.Context,
    given: Annotated[
        str, typer.Argument(metavar="ID", help="Dead-letter id, or a unique start of it.")
    ],
    as_json: JsonOption = False,
) -> None:
    """One dead letter, whole: arguments, context, traceback and attempt history."""
    with services(ctx) as svc:
        store = svc.dead_letters
        target = _resolve(store, given)
        entry = None if isinstance(target, _Skip) else store.get(target)
        if entry is None:
            if isinstance(target, _Skip) and target.reason != NO_SUCH:
                raise CliError(target.reason)
            raise CliError(
                f"no dead letter with id {given!r} or an id starting with it; "
                "'alchemiser dlq list' shows the ids"
            )
    body = _whole(entry)
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


@dataclass(frozen=True, slots=True)
class _Skip:
    """An ID left alone, and why."""

    id: str
    reason: str


def _check_filters(error: str | None, task: str | None = None) -> None:
    """Usage errors for an ``--error`` that is no class of the hierarchy, or a ``--task`` that
    is no task name: such a filter would select nothing and hide the typo."""
    known_errors = sorted(cls.__name__ for cls in error_classes())
    if error is not None and error not in known_errors:
        raise CliError(
            f"--error {error!r} is not an error class; known: {', '.join(known_errors)}",
            exit_code=EXIT_USAGE,
        )
    if task is not None and task not in ROUTES:
        raise CliError(
            f"--task {task!r} is not a task name; known: {', '.join(sorted(ROUTES))}",
            exit_code=EXIT_USAGE,
        )


def _resolve(store: DeadLetterStore, given: str) -> str | _Skip:
    """The id ``given`` names (whole, or a unique start of it), or why it names none."""
    if not given:
        raise CliError("an empty ID names no dead letter", exit_code=EXIT_USAGE)
    match = store.resolve(given)
    return match.unique or _Skip(given, _unresolved(match))


def _unresolved(match: IdMatches) -> str:
    if match.count == 0:
        return NO_SUCH
    more = match.count - len(match.ids)
    listed = ", ".join(match.ids) + (f", and {more} more" if more else "")
    return (
        f"ambiguous: {match.count} dead letters start with {match.given!r} ({listed}); "
        "give more of the id"
    )


def _check_selection(ids: list[str] | None, all_: bool, error: str | None, verb: str) -> None:
    """Usage errors of a selection: ids and --all both or neither, an unknown --error."""
    _check_filters(error)
    if ids and all_:
        raise CliError(f"give dead-letter ids or --all, not both, to {verb}", exit_code=EXIT_USAGE)
    if not ids and not all_:
        raise CliError(
            f"nothing to {verb}: give dead-letter ids (see 'alchemiser dlq list') or --all",
            exit_code=EXIT_USAGE,
        )


def _selected(
    store: DeadLetterStore, ids: list[str] | None, error: str | None
) -> list[str | _Skip]:
    """The entries the IDs name, in the order given and each once, and the IDs that name none;
    without IDs (``--all``), every dead entry (of the ``--error`` type)."""
    if not ids:
        return [entry.id for entry in store.entries(status="dead", error_type=error)]
    selected: list[str | _Skip] = []
    for given in ids:
        target = _resolve(store, given)
        if target not in selected:
            selected.append(target)
    return selected


def _report_skipped(skipped: Iterable[tuple[str, str]]) -> None:
    """Each skipped ID and the reason, on stderr for people."""
    for skipped_id, reason in skipped:
        say(f"skipped {skipped_id}: {reason}", err=True)


@contextmanager
def _progress(total: int, *, show: bool) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr while ``show`` and stderr is a terminal (elsewhere it would
    leave a blank line); yields the callable that advances it."""
    console = Console(stderr=True)
    if not show or not console.is_terminal:
        yield lambda: None
        return
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
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
        renew_ttl_s = seconds_option("--ttl", ttl_s, maximum=MAX_ORDER_TTL_S)
        _check_selection(ids, all_, error, "replay")
        store = svc.dead_letters
        targets = _selected(store, ids, error)
        if not dry_run and any(isinstance(t, str) for t in targets):
            svc.check_broker()  # claim nothing while the broker is down
        replayer = Replayer(
            store,
            prepare=prepare_replay(now_s=time.time, renew_ttl_s=renew_ttl_s),
            publish=replay_publisher(svc.celery),
        )
        plan = _Plan(store, replayer, actor=actor(), error=error, dry_run=dry_run)
        with _progress(len(targets), show=len(targets) > 1 and not as_json) as advance:
            results: list[ReplayResult] = []
            for target in targets:
                results.append(plan.replay(target))
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
    else:
        print_table(
            "Replay (dry run)" if dry_run else "Replay",
            ["id", "outcome", "task_id"],
            ([r.id, r.outcome, r.task_id or ""] for r in done),
            empty="nothing would be replayed" if dry_run else "nothing replayed",
            whole=["id"],
        )
        _report_skipped((r.id, r.reason) for r in skipped)
    if skipped:
        raise typer.Exit(EXIT_FAILURE)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How each entry of one ``dlq replay`` is replayed."""

    store: DeadLetterStore
    replayer: Replayer
    actor: str
    error: str | None
    dry_run: bool

    def replay(self, target: str | _Skip) -> ReplayResult:
        """Replay one entry; explicit ids honour ``--error`` too."""
        if isinstance(target, _Skip):
            return ReplayResult(target.id, "skipped", target.reason)
        entry_id = target
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
        _check_selection(ids, all_, error, "discard")
        store = svc.dead_letters
        who = actor()
        discarded: list[str] = []
        skipped: list[_Skip] = []
        for target in _selected(store, ids, error):
            if isinstance(target, _Skip):
                skipped.append(target)
                continue
            try:
                store.discard(target, actor=who)
            except TransitionConflict as conflict:
                skipped.append(_Skip(target, _conflict_reason(conflict)))
            else:
                discarded.append(target)
    if as_json:
        print_json({"discarded": discarded, "skipped": [asdict(skip) for skip in skipped]})
    else:
        rows = ([i] for i in discarded)
        print_table("Discarded", ["id"], rows, empty="nothing discarded", whole=["id"])
        _report_skipped((skip.id, skip.reason) for skip in skipped)
    if skipped:
        raise typer.Exit(EXIT_FAILURE)


def _conflict_reason(conflict: TransitionConflict) -> str:
    if conflict.current == "missing":
        return NO_SUCH
    return f"status is {conflict.current}"
