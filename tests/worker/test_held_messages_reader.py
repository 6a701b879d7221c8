"""Reading the Redis broker's unacknowledged messages from kombu's index (fakeredis)."""

from __future__ import annotations

import fakeredis

from worker.held_messages import HeldMessageReader

NOW_S = 1_800_000_000.0
INDEX = "ns:unacked_index"


def test_counts_held_and_past_timeout_and_ages_the_oldest_lease() -> None:
    broker = fakeredis.FakeRedis(decode_responses=True)
    broker.zadd(INDEX, {"renewed": NOW_S - 5, "dead-a": NOW_S - 61, "dead-b": NOW_S - 130})
    found = HeldMessageReader(broker, INDEX, 60.0, now_s=lambda: NOW_S).read()
    assert (found.held, found.past_timeout, found.oldest_lease_age_s) == (3, 2, 130.0)
    assert found.visibility_timeout_s == 60.0


def test_nothing_held_reads_zero() -> None:
    broker = fakeredis.FakeRedis(decode_responses=True)
    found = HeldMessageReader(broker, INDEX, 60.0, now_s=lambda: NOW_S).read()
    assert (found.held, found.past_timeout, found.oldest_lease_age_s) == (0, 0, 0.0)
