"""Replay of dead letters: claim, validate, re-publish, record; never twice.

What may be replayed and how it is published are the application's business (it knows its
tasks and payloads), so both come in as callables; this module owns the safety: the claim is a
compare-and-set on the entry's status, a failed publish hands the entry back, and every outcome
lands in the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from resilience.deadletter.store import (
    DEFAULT_CLAIM_TIMEOUT_S,
    DeadLetter,
    DeadLetterStore,
    TransitionConflict,
)

__all__ = ["ReplayRefused", "ReplayResult", "Replayer"]

Outcome = Literal["replayed", "skipped", "would_replay"]


class ReplayRefused(Exception):  # noqa: N818 - a refusal with a reason for the operator
    """The entry must not be replayed; the message says why."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What happened to one entry."""

    id: str
    outcome: Outcome
    reason: str = ""
    task_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON row for ``dlq replay --json``."""
        return {"id": self.id, "reason": self.reason, "task_id": self.task_id}


PrepareReplay = Callable[[DeadLetter], dict[str, Any]]
PublishReplay = Callable[[DeadLetter, dict[str, Any]], str]


class Replayer:
    """Replays entries of one store with the application's checks and publisher."""

    def __init__(
        self,
        store: DeadLetterStore,
        *,
        prepare: PrepareReplay,
        publish: PublishReplay,
        claim_timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S,
    ) -> None:
        self._store = store
        self._prepare = prepare
        self._publish = publish
        self._claim_timeout_s = claim_timeout_s

    def replay(self, entry_id: str, *, actor: str, dry_run: bool = False) -> ReplayResult:
        """Replay one entry; refusals come back as ``skipped`` with the reason."""
        entry = self._store.get(entry_id)
        if entry is None:
            return ReplayResult(entry_id, "skipped", "no such dead letter")
        if entry.status not in ("dead", "replaying"):  # a replaying claim may have gone stale
            return ReplayResult(entry_id, "skipped", f"status is {entry.status}")
        try:
            kwargs = self._prepare(entry)
        except ReplayRefused as refused:
            return ReplayResult(entry_id, "skipped", str(refused))
        if dry_run:
            return ReplayResult(entry_id, "would_replay", "dry run")
        try:
            self._store.transition(
                entry_id,
                expected="dead",
                new="replaying",
                actor=actor,
                action="replay_claim",
                stale_claim_s=self._claim_timeout_s,
            )
        except TransitionConflict as conflict:
            return ReplayResult(entry_id, "skipped", f"status is {conflict.current}")
        return self._publish_claimed(entry, kwargs, actor=actor)

    def _publish_claimed(
        self, entry: DeadLetter, kwargs: dict[str, Any], *, actor: str
    ) -> ReplayResult:
        try:
            task_id = self._publish(entry, kwargs)
        except Exception as exc:
            reason = f"publish failed: {type(exc).__name__}: {exc}"
            self._store.transition(
                entry.id,
                expected="replaying",
                new="dead",
                actor=actor,
                action="replay_failed",
                detail={"error": reason},
            )
            return ReplayResult(entry.id, "skipped", reason)
        self._store.transition(
            entry.id,
            expected="replaying",
            new="replayed",
            actor=actor,
            action="replay",
            detail={"task_id": task_id},
        )
        return ReplayResult(entry.id, "replayed", "", task_id)
