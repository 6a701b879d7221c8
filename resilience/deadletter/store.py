"""The dead-letter store: tasks that failed for good, kept for inspection and replay.

Redis-backed and bounded (max entries and retention, enforced atomically on every add; what is
evicted is counted and kept in the audit stream). An entry's body is immutable JSON; its
status lives beside it and changes only by compare-and-set, so two operators replaying at once
cannot publish the same dead letter twice. An entry is named by its id or any start of it
that no other id shares (as git names commits), looked up in an index of ids, not a scan.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from redis import Redis

from resilience.storage.keys import KeySpace
from resilience.storage.scripts import register

__all__ = [
    "DEFAULT_CLAIM_TIMEOUT_S",
    "VALUE_LIMIT",
    "AuditRecord",
    "DeadLetter",
    "DeadLetterStore",
    "IdMatches",
    "Status",
    "TransitionConflict",
    "bound_value",
]

Status = Literal["dead", "replaying", "replayed"]

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_RETENTION_S = 30 * 24 * 3600
AUDIT_MAX_LEN = 100_000
# A replay claim older than this belongs to a replayer that died before publishing.
DEFAULT_CLAIM_TIMEOUT_S = 600.0
# Longest string kept in an entry: a 10 MB payload must not become a 10 MB dead letter.
VALUE_LIMIT = 4_096


def bound_value(value: Any, limit: int = VALUE_LIMIT) -> Any:
    """A copy of a JSON-shaped value with every string cut to ``limit`` characters."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}...[truncated {len(value) - limit} characters]"
    if isinstance(value, dict):
        return {str(k)[:limit]: bound_value(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [bound_value(v, limit) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One task that failed for good, with everything needed to understand and replay it.

    Arguments, context and traceback are stored already scrubbed of secrets.
    """

    id: str
    task: str
    queue: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, Any]
    idempotency_key: str | None  # what makes the task's effect happen once (idempotency_key_of)
    error_type: str
    message: str
    reason: str
    severity: str
    traceback: str | None
    context: dict[str, Any]
    attempts: list[dict[str, Any]]
    hostname: str
    dead_at: str
    replay_of: str | None = None
    status: str = "dead"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dead_at_ms(self) -> int:
        """``dead_at`` as Unix milliseconds."""
        return int(datetime.fromisoformat(self.dead_at).timestamp() * 1000)

    def to_json(self) -> str:
        """The stored body (status is kept separately)."""
        body = asdict(self)
        body.pop("status")
        return json.dumps(body, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str, status: str) -> DeadLetter:
        """Rebuild an entry from its stored body and status."""
        body = json.loads(raw)
        known = {name: body[name] for name in cls.__dataclass_fields__ if name in body}
        # Entries stored before 2026-12-05 name the key after the trading app's orders.
        known.setdefault("idempotency_key", body.get("client_order_id"))
        known["status"] = status
        return cls(**known)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One line of the audit trail (dead-lettered, replayed, discarded, evicted)."""

    at: str
    action: str
    id: str
    actor: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IdMatches:
    """The entries an id, or the start of one, names: ``ids`` are the first few in byte order,
    ``count`` how many there are in all."""

    given: str
    ids: tuple[str, ...]
    count: int

    @property
    def unique(self) -> str | None:
        """The id of the one entry named; ``None`` when none or several are."""
        return self.ids[0] if self.count == 1 else None


class TransitionConflict(Exception):  # noqa: N818 - a refusal, not an error of the hierarchy
    """A status change was refused because the entry is missing or in another status."""

    def __init__(self, entry_id: str, current: str) -> None:
        super().__init__(f"dead letter {entry_id} is {current}")
        self.entry_id = entry_id
        self.current = current


class DeadLetterStore:
    """Dead letters in Redis under one namespace."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if retention_s <= 0:
            raise ValueError("retention_s must be > 0")
        self._client = client
        self._keys = keys
        self.max_entries = max_entries
        self.retention_s = retention_s
        self._add = register(client, "resilience.deadletter", "dlq_add")
        self._transition = register(client, "resilience.deadletter", "dlq_transition")
        self._resolve = register(client, "resilience.deadletter", "dlq_resolve")

    def add(self, entry: DeadLetter, *, actor: str = "worker") -> list[str]:
        """Store ``entry`` (same id overwrites); returns ids evicted to stay within bounds."""
        keys = self._keys
        evicted = self._add(
            keys=[
                keys.dlq_entries,
                keys.dlq_status,
                keys.dlq_index,
                keys.dlq_audit,
                keys.dlq_evicted,
                keys.dlq_claims,
                keys.dlq_ids,
            ],
            args=[
                entry.id,
                entry.to_json(),
                entry.dead_at_ms,
                self.max_entries,
                int(self.retention_s * 1000),
                AUDIT_MAX_LEN,
                actor,
            ],
        )
        return [str(e) for e in evicted]

    def get(self, entry_id: str) -> DeadLetter | None:
        """One entry, or ``None``."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hget(self._keys.dlq_entries, entry_id)
        pipe.hget(self._keys.dlq_status, entry_id)
        raw, status = pipe.execute()
        if raw is None:
            return None
        return DeadLetter.from_json(raw, status or "dead")

    def resolve(self, given: str, *, most: int = 10) -> IdMatches:
        """The entries ``given`` names, as git resolves a short commit id: an id stored whole
        names its entry (even when it also starts longer ids); otherwise every id starting
        with ``given``, at most ``most`` of them listed. One round trip, O(log N + most)."""
        if most < 1:
            raise ValueError("most must be >= 1")
        keys = self._keys
        reply = self._resolve(
            keys=[keys.dlq_status, keys.dlq_index, keys.dlq_ids], args=[given, most]
        )
        return IdMatches(given, tuple(str(i) for i in reply[1:]), int(reply[0]))

    def entries(
        self,
        *,
        error_type: str | None = None,
        task: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """Entries newest first, filtered by exact error type, task name and status."""
        ids = cast("list[str]", self._client.zrevrange(self._keys.dlq_index, 0, -1))
        entries = self._load(ids)
        selected = [
            e
            for e in entries
            if (error_type is None or e.error_type == error_type)
            and (task is None or e.task == task)
            and (status is None or e.status == status)
        ]
        return selected[:limit] if limit is not None else selected

    def _load(self, ids: Iterable[str]) -> list[DeadLetter]:
        id_list = list(ids)
        if not id_list:
            return []
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(self._keys.dlq_entries, id_list)
        pipe.hmget(self._keys.dlq_status, id_list)
        bodies, statuses = pipe.execute()
        return [
            DeadLetter.from_json(raw, status or "dead")
            for raw, status in zip(bodies, statuses, strict=True)
            if raw is not None
        ]

    def count(self) -> int:
        """How many entries the store holds (every status)."""
        return int(self._client.zcard(self._keys.dlq_index))

    def awaiting(self) -> int:
        """How many entries wait for an operator (status ``dead``: not replayed, not being
        replayed)."""
        statuses = cast("list[str]", self._client.hvals(self._keys.dlq_status))
        return self.count() - sum(1 for status in statuses if status != "dead")

    def dead_since(self, since_ms: int) -> int:
        """How many entries were dead-lettered at or after ``since_ms`` (Unix ms)."""
        return int(self._client.zcount(self._keys.dlq_index, since_ms, "+inf"))

    def evicted_total(self) -> int:
        """How many entries were ever evicted by the bounds."""
        return int(self._client.get(self._keys.dlq_evicted) or 0)

    def transition(
        self,
        entry_id: str,
        *,
        expected: str,
        new: str,
        actor: str,
        action: str,
        detail: dict[str, Any] | None = None,
        stale_claim_s: float = 0.0,
    ) -> None:
        """Compare-and-set the status; :class:`TransitionConflict` if it was not ``expected``.

        With ``stale_claim_s`` > 0, a ``replaying`` claim at least that old counts as ``dead``
        (its replayer died between claim and publish): the takeover is audited as ``reclaim``.
        """
        keys = self._keys
        ok, current = self._transition(
            keys=[
                keys.dlq_entries,
                keys.dlq_status,
                keys.dlq_index,
                keys.dlq_audit,
                keys.dlq_claims,
                keys.dlq_ids,
            ],
            args=[
                entry_id,
                expected,
                new,
                actor,
                action,
                json.dumps(detail or {}, sort_keys=True),
                AUDIT_MAX_LEN,
                int(stale_claim_s * 1000),
            ],
        )
        if int(ok) != 1:
            raise TransitionConflict(entry_id, str(current))

    def discard(
        self, entry_id: str, *, actor: str, stale_claim_s: float = DEFAULT_CLAIM_TIMEOUT_S
    ) -> None:
        """Remove a dead entry (or one whose replay claim went stale); the audit trail keeps
        its body."""
        self.transition(
            entry_id,
            expected="dead",
            new="discarded",
            actor=actor,
            action="discard",
            stale_claim_s=stale_claim_s,
        )

    def audit(self, *, limit: int = 100) -> list[AuditRecord]:
        """The newest audit records first."""
        rows = cast(
            "list[tuple[str, dict[str, str]]]",
            self._client.xrevrange(self._keys.dlq_audit, count=limit),
        )
        records = []
        for stream_id, fields in rows:
            millis = int(str(stream_id).split("-", 1)[0])
            detail: dict[str, Any] = json.loads(fields["detail"]) if fields.get("detail") else {}
            if fields.get("from"):
                detail["from"] = fields["from"]
                detail["to"] = fields.get("to")
            if fields.get("entry"):
                detail["entry"] = json.loads(fields["entry"])
            records.append(
                AuditRecord(
                    at=datetime.fromtimestamp(millis / 1000, UTC).isoformat(),
                    action=fields["action"],
                    id=fields["id"],
                    actor=fields.get("actor", ""),
                    detail=detail,
                )
            )
        return records
