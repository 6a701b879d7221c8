"""``alchemiser dlq`` as operators type it: ids shortened to a unique start (as git's), every ID
that is skipped named with its reason and exit 1, usage errors exit 2; in-process and as a
subprocess against a real Redis, one namespace per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from resilience.deadletter.store import DeadLetterStore
from resilience.errors import error_classes
from tests.worker.test_cli import (
    DOWN_URL,
    all_queued,
    as_json,
    ns,
    order_letter,
    queued,
    run,
    store,
)

__all__ = ["ns", "store"]  # the fixtures, shared with test_cli

ROOT = Path(__file__).resolve().parents[2]
# Celery task ids, as the workers dead-letter them: two share their first four characters.
FIRST = "3f2a9c1b-0d4e-4c6a-9b1f-7e8d2c5a0b91"
SECOND = "3f2a77e0-51c2-4d8b-a0f3-26b9e4d1c7a5"
THIRD = "8b41d0c6-9e2f-4a17-b3c5-d0e6f7a8b9c2"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``alchemiser ARGS`` in a subprocess from the worktree, as a user runs it (the test's
    namespace and Redis come from the environment the ``ns`` fixture set)."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli.main", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def add_three(store: DeadLetterStore) -> None:
    """Three dead orders; FIRST and SECOND start alike."""
    for entry_id in (FIRST, SECOND, THIRD):
        store.add(order_letter(entry_id))


def test_help_states_the_prefix_rule_and_the_exit_codes() -> None:
    """`dlq --help` says IDs may be shortened and what exit 1 and 2 mean."""
    text = " ".join(run("dlq", "--help").stdout.split())
    assert "An ID may be shortened to any start of it that no other id shares" in text
    assert "1 some ID skipped" in text
    assert "2 usage error" in text


# --- show --------------------------------------------------------------------------------


def test_show_takes_a_unique_start_of_the_id(ns: str, store: DeadLetterStore) -> None:
    """`dlq show 3f2a9` shows the one entry whose id starts so."""
    add_three(store)
    assert as_json(run("dlq", "show", "3f2a9", "--json"))["id"] == FIRST
    assert as_json(run("dlq", "show", THIRD[:1], "--json"))["id"] == THIRD


def test_show_of_an_ambiguous_start_lists_the_candidates_and_exits_1(
    ns: str, store: DeadLetterStore
) -> None:
    """A start two ids share names neither: exit 1, both candidates on stderr, stdout empty."""
    add_three(store)
    result = run("dlq", "show", "3f2a", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"ambiguous: 2 dead letters start with '3f2a' ({SECOND}, {FIRST})" in result.stderr
    assert "give more of the id" in result.stderr


def test_show_of_an_unknown_id_says_no_id_starts_with_it(ns: str, store: DeadLetterStore) -> None:
    """No id is or starts with the text: exit 1 and a message naming it."""
    add_three(store)
    result = run("dlq", "show", "3f2b")
    assert result.exit_code == 1
    assert "no dead letter with id '3f2b' or an id starting with it" in result.stderr


def test_an_empty_id_is_a_usage_error(ns: str, store: DeadLetterStore) -> None:
    """`dlq show ''` would name every entry: exit 2."""
    add_three(store)
    for args in (["show", ""], ["replay", "", "--json"], ["discard", ""]):
        result = run("dlq", *args)
        assert result.exit_code == 2, args
        assert "an empty ID names no dead letter" in result.stderr
        assert result.stdout == ""


# --- replay ------------------------------------------------------------------------------


def test_replay_of_a_unique_start_replays_the_whole_id(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """`dlq replay 8b4` replays THIRD, reported by its whole id; exit 0."""
    add_three(store)
    doc = as_json(run("dlq", "replay", "8b4", "--json"))
    assert [row["id"] for row in doc["replayed"]] == [THIRD]
    assert doc["skipped"] == []
    [message] = queued(client, ns, "trading")
    assert message["headers"]["alchemiser"] == {"replay_of": THIRD}


def test_replay_of_the_same_entry_named_twice_replays_it_once(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """An entry named by its id and by a start of it is replayed once, not skipped the second
    time."""
    add_three(store)
    doc = as_json(run("dlq", "replay", THIRD, "8b41", "--json"))
    assert [row["id"] for row in doc["replayed"]] == [THIRD]
    assert doc["skipped"] == []
    assert all_queued(client, ns) == 1


def test_replay_skipping_some_ids_exits_1_with_one_json_document(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """Replayed, ambiguous, unknown, already replayed, expired and invalid IDs: one JSON
    document with each skipped ID and its reason, exit 1; only the good one is published."""
    add_three(store)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = order_letter("expired-1")
    store.add(replace(expired, kwargs={**expired.kwargs, "valid_until": past}))
    invalid = order_letter("invalid-1")
    store.add(replace(invalid, kwargs={**invalid.kwargs, "qty": -1}))
    as_json(run("dlq", "replay", THIRD, "--json"))

    args = ("3f2a", "nope", THIRD, "exp", "inv", "3f2a9", "--json")
    result = run("dlq", "replay", *args)
    assert result.exit_code == 1
    assert result.stderr == ""
    doc = as_json(result, exit_code=1)
    assert set(doc) == {"replayed", "skipped"}
    assert [row["id"] for row in doc["replayed"]] == [FIRST]
    reasons = {row["id"]: row["reason"] for row in doc["skipped"]}
    assert list(reasons) == ["3f2a", "nope", THIRD, "expired-1", "invalid-1"]
    assert reasons["3f2a"].startswith(f"ambiguous: 2 dead letters start with '3f2a' ({SECOND}, ")
    assert reasons["nope"] == "no such dead letter"
    assert reasons[THIRD] == "status is replayed"
    assert "valid_until has passed; replay with --ttl" in reasons["expired-1"]
    assert "no longer validates" in reasons["invalid-1"]
    assert all_queued(client, ns) == 2  # THIRD before, FIRST now
    assert {e.id: e.status for e in store.entries()}[SECOND] == "dead"


def test_replay_without_json_names_each_skipped_id_on_stderr(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """Human form: the replayed entry in the table on stdout, one line per skipped ID with its
    reason on stderr, exit 1."""
    add_three(store)
    result = run("dlq", "replay", "8b4", "nope", "3f2a")
    assert result.exit_code == 1
    assert THIRD in result.stdout
    assert "nope" not in result.stdout
    lines = result.stderr.splitlines()
    assert lines[0] == "skipped nope: no such dead letter"
    assert lines[1].startswith("skipped 3f2a: ambiguous: 2 dead letters start with '3f2a'")
    assert len(lines) == 2
    assert all_queued(client, ns) == 1


def test_replay_when_every_id_is_skipped_says_nothing_was_replayed(
    ns: str, store: DeadLetterStore
) -> None:
    """Nothing replayed: stdout says so, stderr says why, exit 1."""
    result = run("dlq", "replay", "nope")
    assert result.exit_code == 1
    assert result.stdout.strip() == "nothing replayed"
    assert result.stderr == "skipped nope: no such dead letter\n"


def test_dry_run_reports_what_would_be_skipped_with_the_same_exit_rule(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """`--dry-run` of a good and an unknown ID: would replay one, skips one, exit 1; nothing is
    published or claimed. All good: exit 0."""
    add_three(store)
    doc = as_json(run("dlq", "replay", "8b4", "nope", "--dry-run", "--json"), exit_code=1)
    assert doc["dry_run"] is True
    assert [row["id"] for row in doc["replayed"]] == [THIRD]
    assert doc["skipped"] == [{"id": "nope", "reason": "no such dead letter", "task_id": None}]
    human = run("dlq", "replay", "8b4", "nope", "--dry-run")
    assert human.exit_code == 1
    assert "would_replay" in human.stdout
    assert human.stderr == "skipped nope: no such dead letter\n"
    assert as_json(run("dlq", "replay", "8b4", "--dry-run", "--json"))["skipped"] == []
    assert all_queued(client, ns) == 0
    assert {e.status for e in store.entries()} == {"dead"}


# --- discard -----------------------------------------------------------------------------


def test_discard_takes_a_unique_start_and_exits_1_for_unknown_and_ambiguous_ids(
    ns: str, store: DeadLetterStore
) -> None:
    """`dlq discard 8b4 nope 3f2a`: THIRD discarded, the other two skipped with reasons and
    exit 1; the ambiguous start removed neither of its candidates."""
    add_three(store)
    doc = as_json(run("dlq", "discard", "8b4", "nope", "3f2a", "--json"), exit_code=1)
    assert doc["discarded"] == [THIRD]
    assert [row["id"] for row in doc["skipped"]] == ["nope", "3f2a"]
    assert doc["skipped"][0]["reason"] == "no such dead letter"
    assert "ambiguous: 2 dead letters" in doc["skipped"][1]["reason"]
    assert {e.id for e in store.entries()} == {FIRST, SECOND}

    human = run("dlq", "discard", "nope")
    assert human.exit_code == 1
    assert human.stdout.strip() == "nothing discarded"
    assert human.stderr == "skipped nope: no such dead letter\n"
    assert run("dlq", "discard", "3f2a7").exit_code == 0
    assert [e.id for e in store.entries()] == [FIRST]


# --- filters ---------------------------------------------------------------------------

TASK_NAMES = (
    "tasks.cancel_order, tasks.escalate, tasks.fetch_quote, tasks.rebalance, "
    "tasks.submit_order, tasks.sync_positions"
)


def test_list_refuses_an_unknown_error_class_naming_the_known_ones(
    ns: str, store: DeadLetterStore
) -> None:
    """`dlq list --error NoSuchError`: exit 2 and every class of the hierarchy, subclasses too;
    a subclass name is a valid filter."""
    store.add(order_letter())
    result = run("dlq", "list", "--error", "NoSuchError", "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    known = sorted(cls.__name__ for cls in error_classes())
    assert f"--error 'NoSuchError' is not an error class; known: {', '.join(known)}" in (
        result.stderr
    )
    for name in ("InsufficientFundsError", "DuplicateOrderError", "PoisonMessageError"):
        assert name in known
    assert as_json(run("dlq", "list", "--error", "OrderExecutionError", "--json")) == []


def test_list_refuses_an_unknown_task_name_naming_the_known_ones(
    ns: str, store: DeadLetterStore
) -> None:
    """`dlq list --task tasks.nope`: exit 2 and the six task names of the contract."""
    result = run("dlq", "list", "--task", "tasks.nope")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"--task 'tasks.nope' is not a task name; known: {TASK_NAMES}" in result.stderr


@pytest.mark.parametrize("command", ["replay", "discard"])
def test_replay_and_discard_refuse_an_unknown_error_class_and_touch_nothing(
    client: redis.Redis, ns: str, store: DeadLetterStore, command: str
) -> None:
    """`--all --error NoSuchError` is a usage error (exit 2), not an empty selection: nothing
    is published, claimed or discarded."""
    add_three(store)
    result = run("dlq", command, "--all", "--error", "NoSuchError", "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "is not an error class" in result.stderr
    assert all_queued(client, ns) == 0
    assert [e.status for e in store.entries()] == ["dead"] * 3


def test_an_unknown_filter_is_refused_before_redis_is_asked(
    ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis down, a bad --error still exits 2 (the usage error), not 1."""
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", DOWN_URL)
    assert run("dlq", "list", "--error", "NoSuchError").exit_code == 2
    assert run("dlq", "replay", "--all", "--error", "NoSuchError").exit_code == 2


# --- as users run it ---------------------------------------------------------------------


def test_subprocess_show_replay_and_discard_by_short_ids(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """`python -m worker.cli.main dlq ...`: show by a short id exits 0; replay of an unknown
    and a short id prints one JSON document and exits 1; discard of an unknown id exits 1 with
    the reason on stderr."""
    add_three(store)
    shown = cli("dlq", "show", "3f2a9")
    assert shown.returncode == 0, shown.stderr
    assert FIRST in shown.stdout

    replayed = cli("dlq", "replay", "nope", "8b4", "--json")
    assert replayed.returncode == 1, replayed.stderr
    doc = json.loads(replayed.stdout)
    assert [row["id"] for row in doc["replayed"]] == [THIRD]
    assert doc["skipped"] == [{"id": "nope", "reason": "no such dead letter", "task_id": None}]
    assert all_queued(client, ns) == 1

    discarded = cli("dlq", "discard", "nope")
    assert discarded.returncode == 1
    assert discarded.stderr == "skipped nope: no such dead letter\n"


def test_subprocess_list_refuses_an_unknown_error_class(ns: str) -> None:
    """`python -m worker.cli.main dlq list --error NoSuchError` exits 2 naming known classes."""
    result = cli("dlq", "list", "--error", "NoSuchError")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "known: AdmissionRefusedError, AlchemiserError, CircuitBreakerOpenError" in (
        result.stderr
    )
