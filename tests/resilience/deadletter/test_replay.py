"""Tests of ``resilience.deadletter.replay``: claim, publish and record, never twice, on a real
Redis."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from resilience.deadletter.replay import Replayer, ReplayRefused, ReplayResult
from resilience.deadletter.store import DeadLetter, DeadLetterStore
from resilience.storage.keys import KeySpace
from tests.builders import dead_order

THREADS = 8


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace) -> DeadLetterStore:
    """A dead-letter store in the test's own namespace."""
    return DeadLetterStore(client, keys)


def make_entry(entry_id: str = "dl-1") -> DeadLetter:
    """A dead submit_order task."""
    return dead_order(entry_id, kwargs={"symbol": "AAPL", "side": "buy", "qty": 5.0})


class FakePublisher:
    """Records every publish and returns a new task id each time."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, entry: DeadLetter, kwargs: dict[str, Any]) -> str:
        with self._lock:
            self.calls.append((entry.id, kwargs))
            return f"task-{len(self.calls)}"


def passthrough(entry: DeadLetter) -> dict[str, Any]:
    """A prepare that accepts every entry with its stored kwargs."""
    return dict(entry.kwargs)


def _status(store: DeadLetterStore, entry_id: str) -> str:
    entry = store.get(entry_id)
    assert entry is not None
    return entry.status


def test_replay_publishes_once_and_marks_replayed(store: DeadLetterStore) -> None:
    """A dead entry is published with the prepared kwargs and becomes ``replayed``."""
    store.add(make_entry())
    publish = FakePublisher()
    replayer = Replayer(store, prepare=passthrough, publish=publish)

    result = replayer.replay("dl-1", actor="alice")

    assert result == ReplayResult("dl-1", "replayed", "", "task-1")
    assert publish.calls == [("dl-1", make_entry().kwargs)]
    assert _status(store, "dl-1") == "replayed"
    actions = [(r.action, r.actor) for r in store.audit()]
    assert actions[:2] == [("replay", "alice"), ("replay_claim", "alice")]
    assert store.audit()[0].detail["task_id"] == "task-1"


def test_second_replay_is_skipped(store: DeadLetterStore) -> None:
    """Replaying an entry already replayed publishes nothing and says why."""
    store.add(make_entry())
    publish = FakePublisher()
    replayer = Replayer(store, prepare=passthrough, publish=publish)
    replayer.replay("dl-1", actor="alice")

    again = replayer.replay("dl-1", actor="bob")

    assert again.outcome == "skipped"
    assert again.reason == "status is replayed"
    assert len(publish.calls) == 1


def test_replay_of_unknown_id_is_skipped(store: DeadLetterStore) -> None:
    """An id the store does not hold is skipped as ``no such dead letter``."""
    publish = FakePublisher()
    result = Replayer(store, prepare=passthrough, publish=publish).replay("ghost", actor="a")
    assert (result.outcome, result.reason) == ("skipped", "no such dead letter")
    assert publish.calls == []


def test_dry_run_publishes_nothing_and_leaves_status_dead(store: DeadLetterStore) -> None:
    """A dry run runs the checks, publishes nothing and does not claim the entry."""
    store.add(make_entry())
    prepared: list[str] = []
    publish = FakePublisher()

    def prepare(entry: DeadLetter) -> dict[str, Any]:
        prepared.append(entry.id)
        return dict(entry.kwargs)

    result = Replayer(store, prepare=prepare, publish=publish).replay(
        "dl-1", actor="a", dry_run=True
    )

    assert (result.outcome, result.reason, result.task_id) == ("would_replay", "dry run", None)
    assert prepared == ["dl-1"]
    assert publish.calls == []
    assert _status(store, "dl-1") == "dead"
    assert [r.action for r in store.audit()] == ["dead_letter"]


def test_refused_replay_is_skipped_with_reason(store: DeadLetterStore) -> None:
    """``ReplayRefused`` from prepare skips the entry with its message; status stays dead."""
    store.add(make_entry())
    publish = FakePublisher()

    def refuse(entry: DeadLetter) -> dict[str, Any]:
        raise ReplayRefused("'tasks.nope' is not a registered trading task")

    result = Replayer(store, prepare=refuse, publish=publish).replay("dl-1", actor="a")

    assert result.outcome == "skipped"
    assert result.reason == "'tasks.nope' is not a registered trading task"
    assert publish.calls == []
    assert _status(store, "dl-1") == "dead"


def test_failed_publish_hands_the_entry_back(store: DeadLetterStore) -> None:
    """A publish that raises puts the entry back to ``dead`` and audits ``replay_failed``."""
    store.add(make_entry())

    def broken(entry: DeadLetter, kwargs: dict[str, Any]) -> str:
        raise ConnectionError("broker unreachable")

    result = Replayer(store, prepare=passthrough, publish=broken).replay("dl-1", actor="a")

    assert result.outcome == "skipped"
    assert result.reason == "publish failed: ConnectionError: broker unreachable"
    assert result.task_id is None
    assert _status(store, "dl-1") == "dead"
    failed = store.audit()[0]
    assert failed.action == "replay_failed"
    assert failed.detail["from"] == "replaying"
    assert failed.detail["to"] == "dead"
    assert failed.detail["error"] == result.reason

    publish = FakePublisher()
    retried = Replayer(store, prepare=passthrough, publish=publish).replay("dl-1", actor="a")
    assert retried.outcome == "replayed"
    assert len(publish.calls) == 1


def test_concurrent_replays_publish_exactly_once(store: DeadLetterStore) -> None:
    """Eight threads replaying one entry at once publish it exactly once."""
    store.add(make_entry())
    others_done = threading.Event()
    results: list[ReplayResult] = []
    lock = threading.Lock()
    publish = FakePublisher()

    def slow_publish(entry: DeadLetter, kwargs: dict[str, Any]) -> str:
        # Hold the claim until every other thread has given up, so they all race the claim.
        others_done.wait(timeout=10)
        return publish(entry, kwargs)

    replayer = Replayer(store, prepare=passthrough, publish=slow_publish)
    start = threading.Barrier(THREADS)

    def run(n: int) -> None:
        start.wait()
        result = replayer.replay("dl-1", actor=f"op-{n}")
        with lock:
            results.append(result)
            if sum(r.outcome == "skipped" for r in results) == THREADS - 1:
                others_done.set()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert len(results) == THREADS
    assert len(publish.calls) == 1
    assert sorted(r.outcome for r in results) == ["replayed"] + ["skipped"] * (THREADS - 1)
    assert {r.reason for r in results if r.outcome == "skipped"} == {"status is replaying"}
    assert _status(store, "dl-1") == "replayed"
    assert sum(r.action == "replay_claim" for r in store.audit()) == 1


def test_result_to_dict_is_the_json_row() -> None:
    """``to_dict`` gives the ``dlq replay --json`` row: id, reason, task_id."""
    row = ReplayResult("dl-1", "replayed", "", "task-9").to_dict()
    assert row == {"id": "dl-1", "reason": "", "task_id": "task-9"}


def _claim_abandoned(
    store: DeadLetterStore, client: redis.Redis, keys: KeySpace, age_s: float
) -> None:
    """Claim dl-1 for replay as a replayer that then died, ``age_s`` seconds ago."""
    store.transition(
        "dl-1", expected="dead", new="replaying", actor="crashed", action="replay_claim"
    )
    claimed_ms = int(client.hget(keys.dlq_claims, "dl-1") or 0)
    client.hset(keys.dlq_claims, "dl-1", claimed_ms - int(age_s * 1000))


def test_a_fresh_claim_blocks_a_second_replayer(
    store: DeadLetterStore, client: redis.Redis, keys: KeySpace
) -> None:
    """While another replayer's claim is younger than the timeout, nothing is published."""
    store.add(make_entry())
    _claim_abandoned(store, client, keys, age_s=5)
    publish = FakePublisher()
    result = Replayer(store, prepare=passthrough, publish=publish, claim_timeout_s=600).replay(
        "dl-1", actor="bob"
    )
    assert (result.outcome, result.reason) == ("skipped", "status is replaying")
    assert publish.calls == []


def test_a_stale_claim_is_taken_over_and_audited(
    store: DeadLetterStore, client: redis.Redis, keys: KeySpace
) -> None:
    """A claim older than the timeout (its replayer died before publishing) no longer pins
    the entry: the next replay takes it over, publishes once and audits the takeover."""
    store.add(make_entry())
    _claim_abandoned(store, client, keys, age_s=601)
    publish = FakePublisher()
    result = Replayer(store, prepare=passthrough, publish=publish, claim_timeout_s=600).replay(
        "dl-1", actor="bob"
    )
    assert result.outcome == "replayed"
    assert len(publish.calls) == 1
    assert _status(store, "dl-1") == "replayed"
    actions = [r.action for r in store.audit()]
    assert actions[:3] == ["replay", "replay_claim", "reclaim"]
    assert client.hget(keys.dlq_claims, "dl-1") is None


def test_a_stale_claim_can_be_discarded(
    store: DeadLetterStore, client: redis.Redis, keys: KeySpace
) -> None:
    """An entry stuck in a dead replayer's claim can still be discarded by an operator."""
    store.add(make_entry())
    _claim_abandoned(store, client, keys, age_s=3600)
    store.discard("dl-1", actor="ops")
    assert store.get("dl-1") is None
