"""Tests of ``resilience.observability.metrics``: fleet-wide error counts, windows, expiry and
recoveries."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.errors import (
    InsufficientFundsError,
    MarketDataError,
    SecurityError,
    TradingClientError,
)
from resilience.observability.metrics import BUCKET_S, HORIZON_S, ErrorMetrics, RecoveryStats
from resilience.observability.outcomes import OutcomeCounter
from resilience.policy.context import ErrorContext
from resilience.policy.handler import ErrorHandler
from resilience.scrub import Scrubber
from resilience.storage.clock import ManualClock
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from tests.namespaces import fresh_namespace

START_S = 1_767_225_600.0  # a bucket boundary (ManualClock's default start)
SECRET = "sk9fakeSecretValue1234"
ORDER = ErrorContext(operation="tasks.submit_order", component="trading")
QUOTE = ErrorContext(operation="tasks.fetch_quote", component="market_data")


def metrics_for(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, **options: int
) -> ErrorMetrics:
    return ErrorMetrics(client, keys, clock, scrubber=Scrubber([SECRET]), **options)


def handler_for(metrics: ErrorMetrics) -> ErrorHandler:
    return ErrorHandler(recorders=(metrics,), scrubber=Scrubber([SECRET]))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_S)


@pytest.fixture
def metrics(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> ErrorMetrics:
    return metrics_for(client, keys, clock)


def fail(handler: ErrorHandler, error: Exception, times: int = 1, *, quote: bool = False) -> None:
    """Hand ``error`` to the handler ``times`` times (as ``times`` failed attempts would)."""
    for _ in range(times):
        if quote:
            handler.handle_error(error, QUOTE, "market_data")
        else:
            handler.handle_error(error, ORDER, "trading")


def test_every_handled_error_is_counted_per_type_and_component(metrics: ErrorMetrics) -> None:
    """Totals per ``ErrorType:component``, and per severity, from the handler's recorder."""
    handler = handler_for(metrics)
    fail(handler, TradingClientError("503"), 3)
    fail(handler, MarketDataError("stale quote"), 2, quote=True)
    fail(handler, SecurityError("bad signature"))
    assert metrics.error_counts() == {
        "TradingClientError:trading": 3,
        "MarketDataError:market_data": 2,
        "SecurityError:trading": 1,
    }
    assert metrics.error_counts_by_severity() == {
        ("TradingClientError", "trading", "high"): 3,
        ("MarketDataError", "market_data", "medium"): 2,
        ("SecurityError", "trading", "critical"): 1,
    }


def test_series_buckets_by_minute_oldest_first_zero_filled(
    metrics: ErrorMetrics, clock: ManualClock
) -> None:
    """Errors land in the bucket of the minute they happened; empty minutes are zeros."""
    handler = handler_for(metrics)
    fail(handler, TradingClientError("503"), 2)  # minute 0
    clock.advance(59.9)
    fail(handler, TradingClientError("503"))  # still minute 0
    clock.advance(0.1 + 120)
    fail(handler, MarketDataError("stale"), 4, quote=True)  # minute 3
    clock.advance(30)  # now START + 3.5 min
    assert metrics.series(300) == [
        (START_S - 60, 0),
        (START_S, 3),
        (START_S + 60, 0),
        (START_S + 120, 0),
        (START_S + 180, 4),
    ]
    assert metrics.series(300, key="TradingClientError:trading") == [
        (START_S - 60, 0),
        (START_S, 3),
        (START_S + 60, 0),
        (START_S + 120, 0),
        (START_S + 180, 0),
    ]
    # Steps of several buckets add them up, aligned on multiples of the step.
    assert metrics.series(600, step_s=300) == [(START_S - 300, 0), (START_S, 7)]


def test_rates_per_minute_over_a_window_fleet_wide_and_per_key(
    metrics: ErrorMetrics, clock: ManualClock
) -> None:
    """The rate is the window's errors over its minutes; a key narrows it to one kind."""
    handler = handler_for(metrics)
    fail(handler, TradingClientError("503"), 6)
    clock.advance(120)
    fail(handler, MarketDataError("stale"), 4, quote=True)
    assert metrics.error_rate_per_min(300) == pytest.approx(2.0)
    assert metrics.error_rate_per_min(300, "TradingClientError:trading") == pytest.approx(1.2)
    assert metrics.error_rate_per_min(60, "MarketDataError:market_data") == pytest.approx(4.0)
    assert metrics.error_rate_per_min(300, "Unknown:trading") == 0.0


def test_windows_leave_out_older_buckets(metrics: ErrorMetrics, clock: ManualClock) -> None:
    """A window counts whole buckets ending with the current one, nothing older."""
    handler = handler_for(metrics)
    fail(handler, SecurityError("one"))
    clock.advance(600)
    fail(handler, SecurityError("two"))
    fail(handler, SecurityError("three"))
    clock.advance(59)  # same minute as the last two
    assert metrics.critical_count(60) == 2
    assert metrics.critical_count(600) == 2  # ten buckets: minute 0 is the eleventh back
    assert metrics.critical_count(660) == 3
    assert metrics.error_rate_per_min(60) == pytest.approx(2.0)
    # The totals are not windowed.
    assert metrics.error_counts() == {"SecurityError:trading": 3}


def test_critical_count_ignores_other_severities(metrics: ErrorMetrics) -> None:
    """Only critical errors count towards ``critical_count``."""
    handler = handler_for(metrics)
    fail(handler, TradingClientError("503"), 5)
    fail(handler, InsufficientFundsError("no cash"))
    fail(handler, SecurityError("bad key"))
    assert metrics.critical_count(3600) == 1


def test_recent_critical_is_a_capped_scrubbed_log_newest_first(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Critical errors only, newest first, secrets scrubbed, never more than the cap."""
    metrics = metrics_for(client, keys, clock, critical_limit=3)
    handler = handler_for(metrics)
    fail(handler, TradingClientError("503"))
    for n in range(5):
        fail(handler, SecurityError(f"key {SECRET} rejected ({n})"))
        clock.advance(1)
    entries = metrics.recent_critical()
    assert [e["message"] for e in entries] == [
        "key [Filtered] rejected (4)",
        "key [Filtered] rejected (3)",
        "key [Filtered] rejected (2)",
    ]
    newest = entries[0]
    assert newest["error_type"] == "SecurityError"
    assert newest["component"] == "trading"
    assert newest["operation"] == "tasks.submit_order"
    assert newest["at_s"] == START_S + 4
    assert newest["at"] == "2026-01-01T00:00:04+00:00"
    assert metrics.recent_critical(limit=1) == entries[:1]
    assert client.llen(keys.critical_errors) == 3
    assert SECRET not in str(client.lrange(keys.critical_errors, 0, -1))


def test_every_bucket_expires_after_the_horizon(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Bounded memory: each bucket lives for the horizon after it ends, not longer; three days
    of errors leave only a horizon's worth of buckets alive."""
    metrics = metrics_for(client, keys, clock)
    handler = handler_for(metrics)
    recorded_at: dict[str, float] = {}
    # Redis counts a TTL down in real time: the loop's own duration is taken out, so a loaded
    # machine (slow iterations) does not shorten the TTLs read back.
    written_wall: dict[str, float] = {}
    for _ in range(3 * 24 * 6):  # every 10 minutes for three days
        fail(handler, TradingClientError("503"))
        bucket = keys.error_bucket(int(clock.now_s() // BUCKET_S) * BUCKET_S)
        recorded_at[bucket] = clock.now_s()
        written_wall[bucket] = time.monotonic()
        clock.advance(600)
    now_s = clock.now_s()
    alive = 0
    for bucket, at_s in recorded_at.items():
        start_s = int(bucket.rsplit(":", 1)[1])
        ttl_s = client.pttl(bucket) / 1000 + (time.monotonic() - written_wall[bucket])
        # Redis's countdown started when the bucket was last written, at ``at_s``.
        assert ttl_s == pytest.approx(start_s + BUCKET_S + HORIZON_S - at_s, abs=0.1)
        if at_s + ttl_s > now_s:
            alive += 1
    assert alive == HORIZON_S // 600
    # The longest window (the current minute, empty here, and those before) reaches all but
    # the oldest live bucket, which outlives it by a minute; older errors are in the totals only.
    assert sum(n for _, n in metrics.series(HORIZON_S)) == HORIZON_S // 600 - 1
    assert metrics.error_counts() == {"TradingClientError:trading": 3 * 24 * 6}


def test_redis_drops_expired_buckets(client: redis.Redis, keys: KeySpace) -> None:
    """With a one-second horizon a bucket is gone shortly after it (Redis enforces it)."""
    clock = ManualClock(START_S + 0.9)  # 0.1 s before the bucket ends: TTL 1.1 s
    metrics = metrics_for(client, keys, clock, bucket_s=1, horizon_s=1)
    fail(handler_for(metrics), TradingClientError("503"))
    bucket = keys.error_bucket(int(START_S))
    assert 1000 <= client.pttl(bucket) <= 1100
    time.sleep(1.3)
    assert client.exists(bucket) == 0


def test_windows_and_steps_are_validated(metrics: ErrorMetrics) -> None:
    """Windows must be positive and within the horizon; steps whole buckets."""
    with pytest.raises(ValueError, match="positive"):
        metrics.series(0)
    with pytest.raises(ValueError, match="horizon"):
        metrics.error_rate_per_min(HORIZON_S + 1)
    with pytest.raises(ValueError, match="whole number"):
        metrics.series(600, step_s=90)


def test_recovery_statistics(client: redis.Redis, keys: KeySpace, metrics: ErrorMetrics) -> None:
    """Recovered (by retries it took), replayed, and dead from the outcome counters."""
    assert metrics.recovery() == RecoveryStats(0, {}, 0, 0)
    assert metrics.recovery().failure_rate == 0.0
    for retries in (2, 1, 2, 0):
        metrics.record_recovered(retries)
    metrics.record_replayed()
    outcomes = OutcomeCounter(client, keys)
    outcomes.incr("dead_lettered", "tasks.submit_order")
    outcomes.incr("dead_lettered", "tasks.fetch_quote")
    stats = metrics.recovery()
    assert stats == RecoveryStats(
        recovered=4, recovered_after={0: 1, 1: 1, 2: 2}, replayed=1, dead=2
    )
    assert list(stats.recovered_after) == [0, 1, 2]
    assert stats.failure_rate == pytest.approx(2 / 6)


def test_recording_never_fails_the_caller(clock: ManualClock) -> None:
    """Without Redis, errors and recoveries are logged and dropped, never raised."""
    dead = connect("redis://127.0.0.1:1/0", connect_timeout_s=0.2, retries=0)
    metrics = metrics_for(dead, KeySpace("unit"), clock)
    details = ErrorHandler(recorders=()).handle_error(SecurityError("x"), ORDER, "trading")
    metrics.record(details)
    metrics.record_recovered(1)
    metrics.record_replayed()


def test_each_record_is_one_round_trip(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record (critical included) is one pipeline, executed once."""
    executed: list[int] = []
    original = redis.client.Pipeline.execute

    def counting(self: redis.client.Pipeline, raise_on_error: bool = True) -> list[object]:
        executed.append(len(self.command_stack))
        return original(self, raise_on_error)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    fail(handler_for(metrics_for(client, keys, clock)), SecurityError("x"))
    assert executed == [5]  # total, bucket, its expiry, critical log, its cap


# --- property -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_client(redis_url: str) -> Iterator[redis.Redis]:
    """One client for every hypothesis example."""
    conn = connect(redis_url, socket_timeout_s=10.0)
    yield conn
    conn.close()


KINDS = [TradingClientError("503"), MarketDataError("stale"), SecurityError("bad key")]


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.integers(0, 6 * 3600), st.integers(0, len(KINDS) - 1)), max_size=40
    ),
    step_buckets=st.sampled_from([1, 5, 60]),
)
def test_series_add_up_to_the_counts(
    shared_client: redis.Redis, events: list[tuple[int, int]], step_buckets: int
) -> None:
    """Over a window reaching back past the first error, each key's series (whatever the
    step) sums to its count, and the fleet's series to the total."""
    keys = KeySpace(fresh_namespace("test-prop"))
    clock = ManualClock(START_S)
    metrics = metrics_for(shared_client, keys, clock)
    handler = handler_for(metrics)
    try:
        for offset_s, kind in sorted(events):
            clock.set(START_S + offset_s)
            fail(handler, KINDS[kind])
        clock.set(START_S + 6 * 3600)
        window_s = 7 * 3600
        step_s = step_buckets * BUCKET_S
        counts = metrics.error_counts()
        assert sum(n for _, n in metrics.series(window_s, step_s)) == len(events)
        for key, count in counts.items():
            assert sum(n for _, n in metrics.series(window_s, step_s, key)) == count
        critical = sum(1 for _, kind in events if isinstance(KINDS[kind], SecurityError))
        assert metrics.critical_count(window_s) == critical
    finally:
        stale = list(shared_client.scan_iter(match=f"{keys.namespace}:*", count=500))
        if stale:
            shared_client.delete(*stale)
