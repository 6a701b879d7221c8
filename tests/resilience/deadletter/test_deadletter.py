"""Tests of ``resilience.deadletter.store``: the bounded dead-letter store on a real Redis."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.deadletter.store import (
    VALUE_LIMIT,
    DeadLetter,
    DeadLetterStore,
    TransitionConflict,
    bound_value,
)
from resilience.storage.keys import KeySpace


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace) -> DeadLetterStore:
    """A store with the default bounds."""
    return DeadLetterStore(client, keys)


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def make_entry(entry_id: str = "dl-1", *, age_s: float = 0.0, **overrides: Any) -> DeadLetter:
    """A complete dead letter of a submit_order task that died ``age_s`` seconds ago."""
    fields: dict[str, Any] = {
        "id": entry_id,
        "task": "tasks.submit_order",
        "queue": "trading",
        "args": [],
        "kwargs": {"symbol": "AAPL", "side": "buy", "qty": 10.0, "client_order_id": "alc-1"},
        "headers": {"alchemiser": {"redeliveries": 0}},
        "idempotency_key": "alc-1",
        "error_type": "TradingClientError",
        "message": "TimeoutError: read timed out",
        "reason": "attempts exhausted",
        "severity": "high",
        "traceback": "Traceback (most recent call last):\n  ...\nTimeoutError: read timed out",
        "context": {"operation": "submit_order", "component": "trading"},
        "attempts": [{"attempt": 1, "error_type": "TradingClientError"}, {"attempt": 2}],
        "hostname": "worker-1@host",
        "dead_at": _ago(age_s),
    }
    fields.update(overrides)
    return DeadLetter(**fields)


# --- add, get, list ----------------------------------------------------------------------


def test_add_then_get_returns_the_same_entry(store: DeadLetterStore) -> None:
    """An added entry comes back field for field, with status ``dead``."""
    entry = make_entry()
    assert store.add(entry) == []
    assert store.get("dl-1") == entry
    assert store.count() == 1


def test_get_unknown_id_is_none(store: DeadLetterStore) -> None:
    """Asking for an id the store never held gives ``None``."""
    assert store.get("nope") is None


def test_entries_are_listed_newest_first(store: DeadLetterStore) -> None:
    """Listing orders entries by ``dead_at``, newest first, whatever the insertion order."""
    store.add(make_entry("middle", age_s=20))
    store.add(make_entry("newest", age_s=10))
    store.add(make_entry("oldest", age_s=30))
    assert [e.id for e in store.entries()] == ["newest", "middle", "oldest"]
    assert [e.id for e in store.entries(limit=2)] == ["newest", "middle"]


def test_entries_filter_by_error_type_task_and_status(store: DeadLetterStore) -> None:
    """Filters match error type, task name and status exactly and combine."""
    store.add(make_entry("a", age_s=3, error_type="RateLimitError"))
    store.add(make_entry("b", age_s=2, task="tasks.fetch_quote", error_type="MarketDataError"))
    store.add(make_entry("c", age_s=1))
    store.transition("c", expected="dead", new="replaying", actor="t", action="replay_claim")

    assert [e.id for e in store.entries(error_type="RateLimitError")] == ["a"]
    assert [e.id for e in store.entries(error_type="Rate")] == []
    assert [e.id for e in store.entries(task="tasks.fetch_quote")] == ["b"]
    assert [e.id for e in store.entries(task="tasks.submit_order")] == ["c", "a"]
    assert [e.id for e in store.entries(status="replaying")] == ["c"]
    assert [e.id for e in store.entries(status="dead")] == ["b", "a"]
    assert [e.id for e in store.entries(task="tasks.submit_order", status="dead")] == ["a"]


def test_same_id_overwrites_without_duplicating(store: DeadLetterStore) -> None:
    """Adding an id again replaces its body; the store still holds one entry."""
    store.add(make_entry("dl-1", message="first"))
    store.add(make_entry("dl-1", message="second"))
    assert store.count() == 1
    assert [e.message for e in store.entries()] == ["second"]
    got = store.get("dl-1")
    assert got is not None
    assert got.message == "second"
    assert store.evicted_total() == 0


# --- bounds --------------------------------------------------------------------------------


def test_max_entries_evicts_the_oldest(client: redis.Redis, keys: KeySpace) -> None:
    """Beyond ``max_entries`` the oldest entries go, are counted and audited with their body."""
    store = DeadLetterStore(client, keys, max_entries=3)
    entries = [make_entry(f"dl-{i}", age_s=100 - i) for i in range(5)]  # dl-0 oldest
    returned = [store.add(e) for e in entries]

    assert returned == [[], [], [], ["dl-0"], ["dl-1"]]
    assert store.count() == 3
    assert [e.id for e in store.entries()] == ["dl-4", "dl-3", "dl-2"]
    assert store.get("dl-0") is None
    assert store.evicted_total() == 2

    evictions = [r for r in store.audit() if r.action == "evict"]
    assert [r.id for r in evictions] == ["dl-1", "dl-0"]
    assert {r.actor for r in evictions} == {"max_entries"}
    for record, entry in zip(evictions, (entries[1], entries[0]), strict=True):
        assert record.detail["entry"] == json.loads(entry.to_json())


def test_retention_evicts_entries_older_than_retention(client: redis.Redis, keys: KeySpace) -> None:
    """An add evicts every entry whose ``dead_at`` lies beyond the retention period."""
    lenient = DeadLetterStore(client, keys, retention_s=10 * 24 * 3600)
    lenient.add(make_entry("old", age_s=2 * 3600))
    lenient.add(make_entry("recent", age_s=600))
    assert lenient.count() == 2

    strict = DeadLetterStore(client, keys, retention_s=3600)
    assert strict.add(make_entry("fresh")) == ["old"]
    assert [e.id for e in strict.entries()] == ["fresh", "recent"]
    assert strict.evicted_total() == 1
    evicted = [r for r in strict.audit() if r.action == "evict"]
    assert [r.id for r in evicted] == ["old"]
    assert evicted[0].actor == "retention"
    assert evicted[0].detail["entry"]["id"] == "old"


def test_bounds_must_be_positive(client: redis.Redis, keys: KeySpace) -> None:
    """A store refuses ``max_entries < 1`` and a retention that is not positive."""
    with pytest.raises(ValueError, match="max_entries"):
        DeadLetterStore(client, keys, max_entries=0)
    with pytest.raises(ValueError, match="retention_s"):
        DeadLetterStore(client, keys, retention_s=0)


# --- status transitions ------------------------------------------------------------------


def test_transition_is_compare_and_set(store: DeadLetterStore) -> None:
    """dead -> replaying succeeds once; a second claim fails naming the current status."""
    store.add(make_entry())
    store.transition("dl-1", expected="dead", new="replaying", actor="ops", action="replay_claim")
    got = store.get("dl-1")
    assert got is not None
    assert got.status == "replaying"

    with pytest.raises(TransitionConflict) as conflict:
        store.transition(
            "dl-1", expected="dead", new="replaying", actor="ops2", action="replay_claim"
        )
    assert conflict.value.current == "replaying"
    assert conflict.value.entry_id == "dl-1"
    assert "replaying" in str(conflict.value)

    claim = store.audit()[0]
    assert (claim.action, claim.id, claim.actor) == ("replay_claim", "dl-1", "ops")
    assert claim.detail == {"from": "dead", "to": "replaying"}


def test_transition_of_missing_id_reports_missing(store: DeadLetterStore) -> None:
    """Changing the status of an unknown id fails with current status ``missing``."""
    with pytest.raises(TransitionConflict) as conflict:
        store.transition("ghost", expected="dead", new="replaying", actor="ops", action="x")
    assert conflict.value.current == "missing"


def test_discard_removes_the_entry_and_the_audit_keeps_it(store: DeadLetterStore) -> None:
    """Discarding deletes the entry; the audit record holds its whole body."""
    entry = make_entry()
    store.add(entry)
    store.discard("dl-1", actor="alice")

    assert store.get("dl-1") is None
    assert store.count() == 0
    assert store.entries() == []
    record = store.audit()[0]
    assert (record.action, record.id, record.actor) == ("discard", "dl-1", "alice")
    assert record.detail["entry"] == json.loads(entry.to_json())
    assert record.detail["from"] == "dead"

    with pytest.raises(TransitionConflict) as again:
        store.discard("dl-1", actor="alice")
    assert again.value.current == "missing"


def test_discard_refuses_an_entry_being_replayed(store: DeadLetterStore) -> None:
    """Only a ``dead`` entry can be discarded; a replaying one stays."""
    store.add(make_entry())
    store.transition("dl-1", expected="dead", new="replaying", actor="ops", action="replay_claim")
    with pytest.raises(TransitionConflict) as conflict:
        store.discard("dl-1", actor="ops")
    assert conflict.value.current == "replaying"
    assert store.count() == 1


def test_add_is_audited_as_dead_letter(store: DeadLetterStore) -> None:
    """Every add leaves a ``dead_letter`` audit record naming the actor."""
    store.add(make_entry("dl-9"), actor="worker-7")
    record = store.audit()[0]
    assert (record.action, record.id, record.actor) == ("dead_letter", "dl-9", "worker-7")


# --- shapes ----------------------------------------------------------------------------------


def test_an_entry_stored_before_the_rename_keeps_its_idempotency_key() -> None:
    """Bodies written before 2026-12-05 name the key ``client_order_id``: read as the
    idempotency key, nothing lost."""
    written = make_entry()
    body = json.loads(written.to_json())
    body["client_order_id"] = body.pop("idempotency_key")
    entry = DeadLetter.from_json(json.dumps(body), "dead")
    assert entry == written
    assert "client_order_id" not in json.loads(entry.to_json())


def test_bound_value_truncates_long_strings() -> None:
    """A 10 MB string becomes a few KB, saying how much was cut; small values stay."""
    huge = "x" * 10_000_000
    bounded = bound_value(huge)
    assert len(bounded) < VALUE_LIMIT + 64
    assert bounded.startswith("x" * VALUE_LIMIT)
    assert f"truncated {10_000_000 - VALUE_LIMIT} characters" in bounded
    assert bound_value("short") == "short"
    assert bound_value("a" * VALUE_LIMIT) == "a" * VALUE_LIMIT


def test_bound_value_walks_nested_values() -> None:
    """Strings inside dicts, lists and tuples are cut; keys too; other scalars untouched."""
    value = {"k" * 50: ["y" * 100, ("z" * 100, 3)], "n": 1.5, "b": True, "none": None}
    bounded = bound_value(value, limit=10)
    key = next(iter(bounded))
    assert key == "k" * 10
    inner = bounded[key]
    assert inner[0].startswith("y" * 10)
    assert "truncated 90 characters" in inner[0]
    assert inner[1][0].startswith("z" * 10)
    assert inner[1][1] == 3
    assert (bounded["n"], bounded["b"], bounded["none"]) == (1.5, True, None)
    assert len(json.dumps(bound_value({"kwargs": {"blob": "q" * 10_000_000}}))) < 5_000


def test_json_round_trip_keeps_every_field() -> None:
    """``from_json(to_json())`` rebuilds the entry; status travels separately."""
    entry = make_entry(replay_of="dl-0", extra={"note": "ü ☃"})
    body = json.loads(entry.to_json())
    assert "status" not in body
    assert DeadLetter.from_json(entry.to_json(), "dead") == entry
    assert DeadLetter.from_json(entry.to_json(), "replayed") == replace(entry, status="replayed")


def test_dead_at_ms_is_unix_milliseconds() -> None:
    """``dead_at_ms`` converts the ISO timestamp to Unix milliseconds."""
    entry = make_entry(dead_at="2026-01-02T03:04:05.678000+00:00")
    assert entry.dead_at_ms == 1_767_323_045_678


_json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
_json_values = st.recursive(
    _json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=50, deadline=None)
@given(kwargs=st.dictionaries(st.text(max_size=8), _json_values, max_size=4))
def test_json_round_trip_of_arbitrary_kwargs(kwargs: dict[str, Any]) -> None:
    """Any JSON-shaped kwargs survive the stored form unchanged."""
    entry = make_entry(kwargs=kwargs)
    assert DeadLetter.from_json(entry.to_json(), "dead") == entry
