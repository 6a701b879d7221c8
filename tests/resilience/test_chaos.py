"""Tests of ``resilience.chaos``: fault rules validated, built and fired from a real Redis."""

from __future__ import annotations

import logging
import random
import time

import pytest
import redis

from resilience.chaos import ChaosHTTPError, ChaosRule, ChaosStore, build_fault
from resilience.errors import MarketDataError, RateLimitError
from resilience.storage.keys import KeySpace
from resilience.storage.server_clock import MAX_CLOCK_SHIFT_S, ServerClock
from tasks.classification import trading_classifier

TARGET = "broker.submit_order"


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace) -> ChaosStore:
    """A chaos store with a seeded random source."""
    return ChaosStore(client, keys, rng=random.Random(1234))


def _strikes(store: ChaosStore, n: int, target: str = TARGET) -> int:
    """How many of ``n`` strikes raised."""
    raised = 0
    for _ in range(n):
        try:
            store.strike(target, "before")
        except (TimeoutError, ConnectionError, ChaosHTTPError, RateLimitError):
            raised += 1
    return raised


# --- rule validation --------------------------------------------------------------------------


@pytest.mark.parametrize("probability", [0.0, -0.1, 1.01, 2.0])
def test_probability_out_of_range_is_refused(probability: float) -> None:
    """A probability outside (0, 1] is refused at construction."""
    with pytest.raises(ValueError, match="probability must be in"):
        ChaosRule(TARGET, "TimeoutError", probability=probability)


@pytest.mark.parametrize("count", [0, -3])
def test_count_below_one_is_refused(count: int) -> None:
    """A count below 1 is refused."""
    with pytest.raises(ValueError, match="count must be >= 1"):
        ChaosRule(TARGET, "TimeoutError", count=count)


def test_negative_latency_is_refused() -> None:
    """Negative latency is refused."""
    with pytest.raises(ValueError, match="latency_ms"):
        ChaosRule(TARGET, "none", latency_ms=-1)


def test_bad_phase_is_refused() -> None:
    """A phase other than before/after is refused."""
    with pytest.raises(ValueError, match="phase must be 'before' or 'after'"):
        ChaosRule(TARGET, "TimeoutError", phase="during")  # type: ignore[arg-type]


def test_unknown_error_name_lists_the_allowed_ones() -> None:
    """An unknown error name is refused with the allowed kinds in the message."""
    with pytest.raises(ValueError) as refused:
        ChaosRule(TARGET, "KaboomError")
    message = str(refused.value)
    assert "'KaboomError'" in message
    for allowed in ("resilience.errors", "TimeoutError", "ConnectionError", "http:<status>"):
        assert allowed in message


@pytest.mark.parametrize("name", ["http:abc", "http:", "http:1000", "http:99"])
def test_malformed_http_status_is_refused_naming_the_form(name: str) -> None:
    """A malformed or impossible HTTP status is refused with the allowed form in the message."""
    with pytest.raises(ValueError, match=r"http:<status>"):
        ChaosRule(TARGET, name)


def test_rule_json_round_trip() -> None:
    """A rule survives its stored form unchanged."""
    rule = ChaosRule(
        TARGET,
        "http:503",
        probability=0.25,
        count=4,
        expires_at_ms=1_800_000_000_000,
        latency_ms=15,
        phase="after",
        retry_after_s=2.5,
    )
    assert ChaosRule.from_json(rule.to_json()) == rule


# --- build_fault --------------------------------------------------------------------------------


def test_build_fault_hierarchy_class_carries_retry_after() -> None:
    """A hierarchy name builds that class with the rule's ``retry_after_s``."""
    fault = build_fault(ChaosRule("market_data.get_quote", "MarketDataError", retry_after_s=3.0))
    assert type(fault) is MarketDataError
    assert fault.retry_after_s == 3.0
    assert "market_data.get_quote" in str(fault)


def test_build_fault_timeout() -> None:
    """``TimeoutError`` builds the built-in timeout."""
    fault = build_fault(ChaosRule(TARGET, "TimeoutError"))
    assert type(fault) is TimeoutError


def test_build_fault_connection_error() -> None:
    """``ConnectionError`` builds a connection reset (a ``ConnectionError``)."""
    fault = build_fault(ChaosRule(TARGET, "ConnectionError"))
    assert isinstance(fault, ConnectionError)


def test_build_fault_http_429_with_retry_after_header() -> None:
    """``http:429`` builds a foreign HTTP error with a Retry-After the classifier honours."""
    fault = build_fault(ChaosRule(TARGET, "http:429", retry_after_s=7.0))
    assert isinstance(fault, ChaosHTTPError)
    assert fault.status_code == 429
    assert fault.headers == {"Retry-After": "7.0"}
    classified = trading_classifier().classify(fault)
    assert type(classified) is RateLimitError
    assert classified.retry_after_s == 7.0


def test_build_fault_http_without_retry_after_has_no_header() -> None:
    """An HTTP fault without ``retry_after_s`` carries no headers."""
    fault = build_fault(ChaosRule(TARGET, "http:503"))
    assert isinstance(fault, ChaosHTTPError)
    assert (fault.status_code, fault.headers) == (503, {})


@pytest.mark.parametrize("name", ["none", "crash"])
def test_build_fault_none_and_crash_raise_nothing(name: str) -> None:
    """Latency-only and crash rules build no exception."""
    assert build_fault(ChaosRule(TARGET, name)) is None


# --- the store -------------------------------------------------------------------------------


def test_inject_list_and_clear(store: ChaosStore) -> None:
    """Rules are listed once injected; clear(target) and clear() report what they removed."""
    timeout = ChaosRule(TARGET, "TimeoutError")
    after = ChaosRule(TARGET, "ConnectionError", phase="after")
    quote = ChaosRule("broker.get_quote", "http:500")
    for rule in (timeout, after, quote):
        store.inject(rule)
    assert sorted(store.rules(), key=lambda r: (r.target, r.phase)) == [quote, after, timeout]

    assert store.clear(TARGET) == 2
    assert store.rules() == [quote]
    assert store.clear(TARGET) == 0
    store.inject(timeout)
    assert store.clear() == 2
    assert store.rules() == []


def test_inject_replaces_the_rule_of_the_same_target_and_phase(store: ChaosStore) -> None:
    """One rule per target and phase: a second injection replaces the first."""
    store.inject(ChaosRule(TARGET, "TimeoutError"))
    store.inject(ChaosRule(TARGET, "http:503"))
    assert [r.error for r in store.rules()] == ["http:503"]


def test_strike_raises_the_fault(store: ChaosStore) -> None:
    """A matching rule makes ``strike`` raise its fault; other targets are untouched."""
    store.inject(ChaosRule(TARGET, "TimeoutError"))
    with pytest.raises(TimeoutError, match="chaos: injected TimeoutError"):
        store.strike(TARGET, "before")
    store.strike("broker.get_quote", "before")
    assert store.fired() == {TARGET: 1}


def test_count_fires_exactly_n_times_then_the_rule_is_gone(store: ChaosStore) -> None:
    """A rule with ``count=3`` fires on three strikes, then is removed."""
    store.inject(ChaosRule(TARGET, "TimeoutError", count=3))
    assert _strikes(store, 10) == 3
    assert store.rules() == []
    assert store.fired() == {TARGET: 3}


def test_count_is_decremented_in_the_stored_rule(store: ChaosStore) -> None:
    """After one of five firings the stored rule has four left and keeps its other fields."""
    expires_ms = int((time.time() + 3600) * 1000)
    store.inject(
        ChaosRule(TARGET, "http:429", count=5, retry_after_s=1.5, expires_at_ms=expires_ms)
    )
    assert _strikes(store, 1) == 1
    (rule,) = store.rules()
    assert rule.count == 4
    assert (rule.error, rule.retry_after_s, rule.probability) == ("http:429", 1.5, 1.0)
    assert rule.expires_at_ms == expires_ms


def test_probability_is_respected(client: redis.Redis, keys: KeySpace) -> None:
    """At p=0.3 a seeded source fires on 240..360 of 1000 strikes; the count is the same."""
    store = ChaosStore(client, keys, rng=random.Random(42))
    store.inject(ChaosRule(TARGET, "TimeoutError", probability=0.3))
    fired = _strikes(store, 1000)
    assert 240 <= fired <= 360
    assert store.fired() == {TARGET: fired}


def test_same_seed_fires_the_same_strikes(client: redis.Redis, keys: KeySpace) -> None:
    """An injected random source makes the firing pattern reproducible."""
    patterns = []
    for _ in range(2):
        store = ChaosStore(client, keys, rng=random.Random(7))
        store.inject(ChaosRule(TARGET, "TimeoutError", probability=0.5))
        pattern = []
        for _ in range(50):
            try:
                store.strike(TARGET, "before")
                pattern.append(False)
            except TimeoutError:
                pattern.append(True)
        patterns.append(pattern)
    assert patterns[0] == patterns[1]
    assert 0 < sum(patterns[0]) < 50


def test_expired_rule_never_fires_and_is_removed(store: ChaosStore) -> None:
    """A rule past ``expires_at_ms`` does not fire and is dropped when consulted."""
    past_ms = int((time.time() - 60) * 1000)
    store.inject(ChaosRule(TARGET, "TimeoutError", expires_at_ms=past_ms))
    assert _strikes(store, 5) == 0
    assert store.rules() == []
    assert store.fired() == {}


def test_rule_expiring_in_the_future_fires(store: ChaosStore) -> None:
    """A rule whose expiry lies ahead is active."""
    future_ms = int((time.time() + 3600) * 1000)
    store.inject(ChaosRule(TARGET, "TimeoutError", expires_at_ms=future_ms))
    assert _strikes(store, 2) == 2


def test_latency_only_rule_sleeps_and_does_not_raise(
    store: ChaosStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``none`` rule with latency delays the operation by ``latency_ms`` and raises nothing."""
    slept: list[float] = []
    monkeypatch.setattr("resilience.chaos.time.sleep", slept.append)
    store.inject(ChaosRule(TARGET, "none", latency_ms=250))
    store.strike(TARGET, "before")
    assert slept == [0.25]
    assert store.fired() == {TARGET: 1}


def test_before_and_after_are_separate_rules(store: ChaosStore) -> None:
    """The before and after phases of one target hold different rules."""
    store.inject(ChaosRule(TARGET, "TimeoutError", phase="before"))
    store.inject(ChaosRule(TARGET, "http:502", phase="after"))
    with pytest.raises(TimeoutError):
        store.strike(TARGET, "before")
    with pytest.raises(ChaosHTTPError) as after:
        store.strike(TARGET, "after")
    assert after.value.status_code == 502
    store.clear(TARGET)
    store.inject(ChaosRule(TARGET, "TimeoutError", phase="after"))
    store.strike(TARGET, "before")  # no before rule: nothing happens


def test_fired_counts_per_target(store: ChaosStore) -> None:
    """``fired()`` counts firings per target across phases."""
    store.inject(ChaosRule(TARGET, "TimeoutError"))
    store.inject(ChaosRule(TARGET, "TimeoutError", phase="after"))
    store.inject(ChaosRule("broker.get_quote", "ConnectionError"))
    assert _strikes(store, 2) == 2
    with pytest.raises(TimeoutError):
        store.strike(TARGET, "after")
    assert _strikes(store, 3, target="broker.get_quote") == 3
    assert store.fired() == {TARGET: 3, "broker.get_quote": 3}


# --- the fleet's escalation clock -------------------------------------------------------------


def test_the_server_clock_is_redis_time_plus_the_shift_a_drill_set(
    client: redis.Redis, keys: KeySpace, store: ChaosStore
) -> None:
    """Unshifted it reads Redis TIME; shifts add up, go back, and `clear` resets them."""
    clock = ServerClock(client, keys)

    def redis_now() -> float:
        seconds, micros = client.time()
        return seconds + micros / 1e6

    before = redis_now()
    unshifted = clock.now_s()
    assert before <= unshifted <= redis_now()
    assert store.clock_shift_s() == 0.0
    assert store.shift_clock(3600.0) == 3600.0
    assert store.shift_clock(-600.5) == 2999.5
    assert store.clock_shift_s() == 2999.5
    before = redis_now()
    shifted = clock.now_s()
    assert before + 2999.5 <= shifted <= redis_now() + 2999.5
    store.clear()
    assert store.clock_shift_s() == 0.0
    assert clock.now_s() < before + 60


@pytest.mark.parametrize("seconds", [float("inf"), float("-inf"), float("nan")])
def test_a_clock_shift_must_be_finite(store: ChaosStore, seconds: float) -> None:
    with pytest.raises(ValueError, match="finite number of seconds"):
        store.shift_clock(seconds)
    assert store.clock_shift_s() == 0.0


def test_a_clock_shift_stays_within_a_year_either_way(store: ChaosStore) -> None:
    """A year ahead or back is accepted; a step beyond it is refused and changes nothing."""
    assert store.shift_clock(MAX_CLOCK_SHIFT_S) == MAX_CLOCK_SHIFT_S
    with pytest.raises(ValueError, match="stays within"):
        store.shift_clock(1.0)
    assert store.clock_shift_s() == MAX_CLOCK_SHIFT_S
    assert store.shift_clock(-2 * MAX_CLOCK_SHIFT_S) == -MAX_CLOCK_SHIFT_S
    with pytest.raises(ValueError, match="stays within"):
        store.shift_clock(-1e308)
    assert store.clock_shift_s() == -MAX_CLOCK_SHIFT_S


@pytest.mark.parametrize("stored", ["1e308", "-31536001", "inf", "nan", "soon"])
def test_a_stored_clock_shift_out_of_bounds_is_ignored_with_a_warning(
    client: redis.Redis,
    keys: KeySpace,
    store: ChaosStore,
    caplog: pytest.LogCaptureFixture,
    stored: str,
) -> None:
    """Readers take such a shift (set by hand, or before the bound) as none, and say so."""
    client.set(keys.chaos_clock_shift, stored)
    seconds, micros = client.time()
    with caplog.at_level(logging.WARNING, logger="resilience.storage.server_clock"):
        assert store.clock_shift_s() == 0.0
        assert ServerClock(client, keys).now_s() < seconds + micros / 1e6 + 60
    assert "ignoring the stored clock shift" in caplog.text
    assert store.shift_clock(60.0) == 60.0
