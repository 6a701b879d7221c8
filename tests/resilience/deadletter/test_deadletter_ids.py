"""Tests of ``DeadLetterStore.resolve``: dead letters named by a unique start of their id, as git
names commits, through the store's index of ids (a real Redis)."""

from __future__ import annotations

from uuid import uuid4

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience.deadletter.store import DeadLetterStore, IdMatches
from resilience.storage.keys import KeySpace
from tests.builders import dead_order


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace) -> DeadLetterStore:
    """A store with the default bounds."""
    return DeadLetterStore(client, keys)


def add(store: DeadLetterStore, *ids: str) -> None:
    """Dead-letter one order per id."""
    for entry_id in ids:
        store.add(dead_order(entry_id))


def test_a_unique_prefix_names_its_entry(store: DeadLetterStore) -> None:
    """The start of an id that no other id shares resolves to the whole id."""
    add(store, "3f2a9c1b-aaaa", "7d0e4411-bbbb")
    match = store.resolve("3f2a")
    assert match == IdMatches("3f2a", ("3f2a9c1b-aaaa",), 1)
    assert match.unique == "3f2a9c1b-aaaa"


def test_a_whole_id_names_its_entry_even_when_it_starts_longer_ids(
    store: DeadLetterStore,
) -> None:
    """An id stored whole wins over the longer ids it is the start of."""
    add(store, "dl-1", "dl-10", "dl-11")
    assert store.resolve("dl-1") == IdMatches("dl-1", ("dl-1",), 1)


def test_an_ambiguous_prefix_lists_candidates_in_id_order_and_counts_them_all(
    store: DeadLetterStore,
) -> None:
    """A prefix several ids share names none: the first ``most`` in byte order, and the total."""
    add(store, "ab-3", "ab-1", "ab-4", "ab-2", "zz-1")
    match = store.resolve("ab-", most=3)
    assert (match.ids, match.count, match.unique) == (("ab-1", "ab-2", "ab-3"), 4, None)
    assert store.resolve("ab-", most=10).ids == ("ab-1", "ab-2", "ab-3", "ab-4")


def test_a_prefix_of_no_id_names_nothing(store: DeadLetterStore) -> None:
    """No id starting with the text: no candidates, count 0."""
    add(store, "ab-1")
    assert store.resolve("ab-2") == IdMatches("ab-2", (), 0)
    assert store.resolve("b") == IdMatches("b", (), 0)


def test_prefix_characters_are_literal_not_patterns(store: DeadLetterStore) -> None:
    """``*``, ``?``, ``[`` and non-ASCII text match only themselves (no glob as in SCAN MATCH)."""
    add(store, "a*[b]?-é-1", "ab-2")
    assert store.resolve("a*").ids == ("a*[b]?-é-1",)
    assert store.resolve("a*[b]?-é").unique == "a*[b]?-é-1"
    assert store.resolve("a?").count == 0


def test_discarded_and_evicted_ids_leave_the_index(client: redis.Redis, keys: KeySpace) -> None:
    """Discard and eviction by the bounds take the id out of the index with the entry."""
    store = DeadLetterStore(client, keys, max_entries=2)
    add(store, "ab-1", "ab-2")
    store.discard("ab-1", actor="test")
    assert store.resolve("ab").ids == ("ab-2",)
    add(store, "ab-3", "ab-4")  # evicts ab-2, the oldest
    assert store.resolve("ab") == IdMatches("ab", ("ab-3", "ab-4"), 2)
    assert client.zcard(keys.dlq_ids) == store.count() == 2


def test_entries_stored_before_the_ids_index_are_found(
    client: redis.Redis, keys: KeySpace, store: DeadLetterStore
) -> None:
    """Entries from before the index (or an older worker) are indexed on the first lookup."""
    add(store, "ab-1", "ab-2")
    client.delete(keys.dlq_ids)  # as a store written by a version without the index
    assert store.resolve("ab-2").unique == "ab-2"
    assert store.resolve("ab") == IdMatches("ab", ("ab-1", "ab-2"), 2)
    assert client.zrange(keys.dlq_ids, 0, -1, withscores=True) == [("ab-1", 0.0), ("ab-2", 0.0)]


def test_most_must_be_positive(store: DeadLetterStore) -> None:
    """Listing no candidate at all is refused."""
    with pytest.raises(ValueError, match="most"):
        store.resolve("ab", most=0)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.sets(st.text(alphabet="ab1-é", min_size=1, max_size=4), min_size=1, max_size=8),
    given_text=st.text(alphabet="ab1-é", min_size=1, max_size=3),
)
def test_resolve_agrees_with_a_scan_of_every_id(
    client: redis.Redis, ids: set[str], given_text: str
) -> None:
    """For any ids and text: the whole id if stored, else every id starting with the text."""
    keys = KeySpace(f"test-{uuid4().hex}")
    try:
        store = DeadLetterStore(client, keys)
        add(store, *ids)
        named = {given_text} if given_text in ids else {i for i in ids if i.startswith(given_text)}
        in_order = tuple(sorted(named, key=lambda i: i.encode()))
        assert store.resolve(given_text, most=3) == IdMatches(given_text, in_order[:3], len(named))
    finally:
        client.delete(*client.scan_iter(match=f"{keys.namespace}:*"))
