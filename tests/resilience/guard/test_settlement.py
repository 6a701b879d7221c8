"""Tests of successes recorded late (``resilience.guard.settlement`` and the guard's
``record_successes_late``): the tally, what rides on admissions and when, the settler thread,
and what Redis ends up counting, on a real Redis with time injected.

The guard reads ``time.monotonic()`` for its tallies; the ``mono`` fixture replaces it (in
``resilience.guard.admission`` only) with a clock that moves only when told, so whether counts are
due never depends on how fast the test runs. Guards made by ``late_guard`` do not start their
settler thread unless asked: the tests settle by calling ``_settle_due(now)`` or ``flush()``.
"""

from __future__ import annotations

import json
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pytest
import redis
from redis.exceptions import ConnectionError, TimeoutError

from resilience.guard.admission import Admission, Guard, Outcome
from resilience.guard.resources import (
    BreakerConfig,
    ConcurrencyConfig,
    ResourceConfig,
    RetryBudgetConfig,
)
from resilience.guard.settlement import (
    CARRY_COUNTS_S,
    LINGER_S,
    MAX_TICKETS,
    Late,
    LateSuccesses,
    Settler,
)
from resilience.guard.status import GuardStatus
from resilience.storage.clock import ManualClock
from resilience.storage.connection import connect
from resilience.storage.direct_script import NotSentError
from resilience.storage.keys import KeySpace
from tests import builders
from tests.builders import guarded
from tests.forking import run_forked

BREAKER, WINDOW, PROBES, EVENTS, RATE, LEASES, BUDGET, STATS = range(8)
T0 = 1_000.0  # the injected monotonic time a test starts at


# --- helpers ---------------------------------------------------------------------------------


class LateGuardFactory(Protocol):
    """Builds a Guard with ``record_successes_late`` (see the ``late_guard`` fixture)."""

    def __call__(
        self, *resources: ResourceConfig, client: redis.Redis = ..., thread: bool = False
    ) -> Guard: ...


def breaker(**overrides: Any) -> BreakerConfig:
    """The tests' breaker (tests/builders.py) with one half-open probe."""
    return builders.breaker(**{"permitted_calls_in_half_open": 1, **overrides})


def window(client: redis.Redis, keys: KeySpace, name: str = "api") -> tuple[int, int, int]:
    """The breaker window's stored (calls, fails, slow); zeros when there is no window."""
    fields: dict[str, str] = client.hgetall(keys.resource(name)[WINDOW])  # type: ignore[assignment]
    return int(fields.get("calls", 0)), int(fields.get("fails", 0)), int(fields.get("slow", 0))


def leases(client: redis.Redis, keys: KeySpace, name: str = "api") -> list[str]:
    """The concurrency leases held, by ticket."""
    return client.zrange(keys.resource(name)[LEASES], 0, -1)  # type: ignore[return-value]


def breaker_state(client: redis.Redis, keys: KeySpace, name: str = "api") -> tuple[str, int]:
    """The breaker's stored (state, generation); never transitioned is ("closed", 0)."""
    fields: dict[str, str] = client.hgetall(keys.resource(name)[BREAKER])  # type: ignore[assignment]
    return fields.get("state", "closed"), int(fields.get("gen", 0))


def events(client: redis.Redis, keys: KeySpace, name: str = "api") -> list[tuple[str, str]]:
    """(from, to) of every transition event of the resource, oldest first."""
    entries: list[tuple[str, dict[str, str]]] = client.xrange(keys.resource(name)[EVENTS])  # type: ignore[assignment]
    return [(fields["from"], fields["to"]) for _, fields in entries]


def tokens(client: redis.Redis, keys: KeySpace, name: str = "api") -> float:
    """The retry budget's stored tokens."""
    return float(client.hget(keys.resource(name)[BUDGET], "tokens"))  # type: ignore[arg-type]


def admitted(guard: Guard, name: str = "api") -> Admission:
    """An admission of ``name`` that must be granted."""
    admission = guard.admit([name])
    assert admission.admitted, admission
    return admission


def succeed(guard: Guard, count: int, name: str = "api", duration_s: float = 0.0) -> None:
    """``count`` admitted runs of ``name``, each recorded OK."""
    for _ in range(count):
        guard.record(admitted(guard, name), Outcome.OK, duration_s=duration_s)


@pytest.fixture
def clock() -> ManualClock:
    """Injected Redis server time, starting on a whole second."""
    return ManualClock(1_767_225_600.0)


@pytest.fixture
def mono(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The monotonic time the guard tallies by (``resilience.guard.settlement``'s
    ``time.monotonic``)."""
    monotonic = ManualClock(T0)
    monkeypatch.setattr(
        "resilience.guard.settlement.time", types.SimpleNamespace(monotonic=monotonic.now_s)
    )
    return monotonic


@pytest.fixture
def late_guard(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> LateGuardFactory:
    """Builds guards recording successes late, on ``clock``; their settler thread is not
    started unless ``thread=True``."""

    def build(
        *resources: ResourceConfig, client: redis.Redis = client, thread: bool = False
    ) -> Guard:
        guard = Guard(
            client,
            keys,
            {r.name: r for r in resources},
            server_clock=clock,
            monotonic=clock.now_s,
            record_successes_late=True,
        )
        assert guard._settler is not None
        if not thread:
            monkeypatch.setattr(guard._settler, "poke", lambda: None)
        return guard

    return build


# --- LateSuccesses and Late ------------------------------------------------------------------


def test_take_before_counts_are_due_carries_tickets_only() -> None:
    """Before CARRY_COUNTS_S the tickets go and the counts stay; at CARRY_COUNTS_S they go,
    grouped by generation with slow calls counted, and are forgotten."""
    tally = LateSuccesses()
    tally.add(T0, 3, slow=False, refill=1.0, ticket="a")
    tally.add(T0 + 0.01, 3, slow=True, refill=1.0, ticket="b")
    tally.add(T0 + 0.02, 4, slow=False, refill=0.5, ticket=None)

    early = tally.take(T0 + CARRY_COUNTS_S - 0.001)
    assert early == Late(tickets=("a", "b"))
    assert (early.calls, early.refill, early.counts) == ((), 0.0, False)
    assert tally.tickets == []
    assert (tally.calls, tally.refill, tally.empty) == ({3: [2, 1], 4: [1, 0]}, 2.5, False)

    due = tally.take(T0 + CARRY_COUNTS_S)
    assert due == Late(tickets=(), calls=((3, 2, 1), (4, 1, 0)), refill=2.5, counts_since=T0)
    assert due.counts
    assert (tally.calls, tally.refill, tally.empty) == ({}, 0.0, True)
    assert tally.take(T0 + 10) == Late()


def test_take_everything_carries_counts_at_once() -> None:
    """``everything=True`` (flush, the settler) takes counts however young they are."""
    tally = LateSuccesses()
    tally.add(T0, 0, slow=False, refill=0.0, ticket="a")
    tally.add(T0, 0, slow=False, refill=0.0, ticket=None)
    assert tally.take(T0, everything=True) == Late(
        tickets=("a",), calls=((0, 2, 0),), counts_since=T0
    )
    assert tally.empty


def test_add_without_generation_refill_or_ticket_leaves_nothing() -> None:
    """A success with no breaker, no budget refill and no lease leaves nothing to carry."""
    tally = LateSuccesses()
    tally.add(T0, None, slow=True, refill=0.0, ticket=None)
    assert tally.empty
    assert tally.due_at() is None
    tally.add(T0, None, slow=False, refill=2.0, ticket=None)
    assert (tally.calls, tally.refill, tally.due_at()) == ({}, 2.0, T0 + CARRY_COUNTS_S)


def test_due_at_is_the_earliest_of_linger_and_carry() -> None:
    """Tickets are due LINGER_S after the oldest ticket, counts CARRY_COUNTS_S after the
    oldest uncounted success; nothing waiting is None."""
    tally = LateSuccesses()
    assert tally.due_at() is None
    tally.add(T0, 1, slow=False, refill=0.0, ticket=None)
    assert tally.due_at() == T0 + CARRY_COUNTS_S
    tally.add(T0 + 0.05, 1, slow=False, refill=0.0, ticket="a")
    tally.add(T0 + 0.06, 1, slow=False, refill=0.0, ticket="b")
    assert tally.due_at() == T0 + 0.05 + LINGER_S  # the oldest ticket's, not the newest's
    tally.take(T0 + 0.07)  # tickets go, counts (0.07 old) stay
    assert tally.due_at() == T0 + CARRY_COUNTS_S
    tally.take(T0 + CARRY_COUNTS_S)
    assert tally.due_at() is None


def test_tickets_are_bounded_by_max_tickets_dropping_the_oldest() -> None:
    """Beyond MAX_TICKETS leases the oldest are dropped (left to expire in Redis)."""
    tally = LateSuccesses()
    for i in range(MAX_TICKETS + 44):
        tally.add(T0 + i, None, slow=False, refill=0.0, ticket=f"t{i}")
    assert len(tally.tickets) == MAX_TICKETS
    assert tally.tickets[0] == "t44"
    assert tally.tickets[-1] == f"t{MAX_TICKETS + 43}"


def test_give_back_restores_tickets_and_counts() -> None:
    """What a failed round trip carried is kept again, merged with what came since."""
    tally = LateSuccesses()
    tally.add(T0, 2, slow=True, refill=1.0, ticket="a")
    tally.add(T0, 2, slow=False, refill=1.0, ticket="b")
    carried = tally.take(T0, everything=True)
    assert tally.empty
    tally.add(T0 + 1, 2, slow=False, refill=1.0, ticket="c")

    tally.give_back(carried, T0 + 2)
    assert sorted(tally.tickets) == ["a", "b", "c"]
    assert (tally.calls, tally.refill) == ({2: [3, 1]}, 3.0)
    # The counts given back are as old as they were (due as soon as they were due before).
    assert tally.take(T0 + 2, everything=True) == Late(
        tickets=("a", "b", "c"), calls=((2, 3, 1),), refill=3.0, counts_since=T0
    )

    tally.give_back(Late(tickets=("x",)), T0 + 5)
    assert (tally.tickets, tally.calls, tally.refill) == (["x"], {}, 0.0)
    assert tally.due_at() == T0 + 5 + LINGER_S


def test_late_args_as_the_script_reads_them() -> None:
    """Nothing is ``['', 0]``; otherwise the counts as JSON [refill, [[gen, calls, slow]]],
    the number of tickets, then the tickets."""
    assert Late().args() == ["", 0]
    assert Late(tickets=("a", "b")).args() == ["", 2, "a", "b"]
    args = Late(tickets=("a",), calls=((5, 3, 1), (6, 2, 0)), refill=4.0).args()
    assert args[1:] == [1, "a"]
    assert json.loads(str(args[0])) == [4.0, [[5, 3, 1], [6, 2, 0]]]
    refill_only = Late(refill=1.5).args()
    assert json.loads(str(refill_only[0])) == [1.5, []]
    assert refill_only[1:] == [0]


# --- the guard: successes reach Redis late ---------------------------------------------------


def test_successes_reach_the_window_on_flush_not_on_record(
    client: redis.Redis, keys: KeySpace, mono: ManualClock, late_guard: LateGuardFactory
) -> None:
    """record(OK) only tallies: the window has no call until flush() sends all three."""
    guard = late_guard(guarded(breaker=breaker(minimum_calls=100)))
    succeed(guard, 3)
    assert window(client, keys) == (0, 0, 0)
    assert guard.flush() is True
    assert window(client, keys) == (3, 0, 0)
    assert guard.flush() is True  # nothing left: no round trip, nothing counted twice
    assert window(client, keys) == (3, 0, 0)


def test_back_to_back_runs_at_limit_one_give_the_lease_back_on_the_next_admission(
    client: redis.Redis, keys: KeySpace, mono: ManualClock, late_guard: LateGuardFactory
) -> None:
    """With a concurrency limit of 1 each admission returns the previous run's lease, so 20
    runs in a row are all admitted; one lease is held until flush."""
    guard = late_guard(guarded(concurrency=ConcurrencyConfig(limit=1)))
    admissions = []
    for _ in range(20):
        admission = guard.admit(["api"])
        admissions.append(admission.admitted)
        assert leases(client, keys) == [admission.ticket]
        guard.record(admission, Outcome.OK)
    assert admissions == [True] * 20
    assert len(leases(client, keys)) == 1  # the last run's lease, only tallied
    assert guard.flush() is True
    assert leases(client, keys) == []
    assert client.hget(keys.resource("api")[STATS], "admitted") == "20"


def test_another_worker_waits_for_the_tallied_lease_until_it_is_settled(
    client: redis.Redis, keys: KeySpace, mono: ManualClock, late_guard: LateGuardFactory
) -> None:
    """A second guard is refused by limit 1 while the first's success is only tallied; the
    settler's pass after LINGER_S returns the lease and the second guard is admitted."""
    resource = guarded(concurrency=ConcurrencyConfig(limit=1))
    first, second = late_guard(resource), late_guard(resource)
    first.record(admitted(first), Outcome.OK)

    refused = second.admit(["api"])
    assert (refused.admitted, refused.reason, refused.refused_by) == (
        False,
        "concurrency limit",
        "api",
    )
    # Not due yet: nothing sent, the next pass is a linger away.
    assert first._settle_due(mono.now_s()) == pytest.approx(LINGER_S)
    assert len(leases(client, keys)) == 1
    assert first._settle_due(mono.now_s() + 1) is None
    assert leases(client, keys) == []
    assert second.admit(["api"]).admitted


def test_counts_ride_on_admissions_only_once_due(
    client: redis.Redis, keys: KeySpace, mono: ManualClock, late_guard: LateGuardFactory
) -> None:
    """Admissions within CARRY_COUNTS_S of the oldest uncounted success leave the window as
    it is; the first one after carries the counts; the settler settles the rest."""
    guard = late_guard(guarded(breaker=breaker(minimum_calls=100)))
    succeed(guard, 5)
    for _ in range(3):
        admitted(guard)
    assert window(client, keys) == (0, 0, 0)

    mono.advance(CARRY_COUNTS_S)
    admitted(guard)
    assert window(client, keys) == (5, 0, 0)

    succeed(guard, 2)
    assert window(client, keys) == (5, 0, 0)
    assert guard._settle_due(mono.now_s() + 1) is None
    assert window(client, keys) == (7, 0, 0)


@pytest.mark.parametrize("settled_by", ["flush", "settler", "admission"])
def test_settled_successes_can_trip_the_breaker(
    client: redis.Redis,
    keys: KeySpace,
    mono: ManualClock,
    late_guard: LateGuardFactory,
    settled_by: str,
) -> None:
    """Two failures (recorded at once) and two tallied successes: the settle brings the window
    to minimum_calls 4 at 50 % failures and opens the breaker, with exactly one event."""
    guard = late_guard(guarded(breaker=breaker(minimum_calls=4, failure_rate_threshold=50.0)))
    runs = [admitted(guard) for _ in range(4)]
    guard.record(runs[0], Outcome.OK)
    guard.record(runs[1], Outcome.OK)
    assert guard.record(runs[2], Outcome.FAILED).transitions == ()
    assert guard.record(runs[3], Outcome.FAILED).transitions == ()
    assert window(client, keys) == (2, 2, 0)
    assert breaker_state(client, keys) == ("closed", 0)

    if settled_by == "flush":
        assert guard.flush() is True
    elif settled_by == "settler":
        assert guard._settle_due(mono.now_s() + 1) is None
    else:
        mono.advance(CARRY_COUNTS_S)
        refused = guard.admit(["api"])  # counted before the breaker is asked
        assert (refused.admitted, refused.reason) == (False, "breaker open")
    assert breaker_state(client, keys) == ("open", 1)
    assert events(client, keys) == [("closed", "open")]


def test_successes_of_an_earlier_generation_are_not_counted(
    client: redis.Redis,
    keys: KeySpace,
    clock: ManualClock,
    mono: ManualClock,
    late_guard: LateGuardFactory,
) -> None:
    """Successes tallied before the breaker moved to a new generation (an operator's reset)
    are not counted in the new generation's window; those tallied after it are."""
    resource = guarded(breaker=breaker(minimum_calls=100))
    guard = late_guard(resource)
    succeed(guard, 2)  # generation 0
    status = GuardStatus(client, keys, {"api": resource}, server_clock=clock)
    assert status.reset("api") == "closed>closed"
    assert breaker_state(client, keys) == ("closed", 1)
    succeed(guard, 3)  # generation 1
    assert guard._late.tallies["api"].calls == {0: [2, 0], 1: [3, 0]}

    assert guard.flush() is True
    assert window(client, keys) == (3, 0, 0)
    assert guard.record(admitted(guard), Outcome.FAILED).transitions == ()
    assert window(client, keys) == (4, 1, 0)


def test_tallied_successes_refill_the_retry_budget_by_their_count(
    client: redis.Redis, keys: KeySpace, mono: ManualClock, late_guard: LateGuardFactory
) -> None:
    """A paid retry spends 5 of 10 tokens at once; 3 tallied successes refill exactly 3 when
    settled, and refills stop at capacity."""
    budget = RetryBudgetConfig(capacity=10, retry_cost=5, success_refill=1, refill_per_s=0)
    guard = late_guard(guarded(retry_budget=budget))
    assert guard.record(admitted(guard), Outcome.FAILED, retry="retry").retry_allowed
    assert tokens(client, keys) == 5.0

    succeed(guard, 3)
    assert tokens(client, keys) == 5.0
    assert guard.flush() is True
    assert tokens(client, keys) == 8.0

    succeed(guard, 4)
    assert guard.flush() is True
    assert tokens(client, keys) == 10.0


def test_a_slow_success_is_counted_slow(
    client: redis.Redis, keys: KeySpace, mono: ManualClock, late_guard: LateGuardFactory
) -> None:
    """A success lasting slow_call_duration_s or more counts in the window's slow calls."""
    guard = late_guard(guarded(breaker=breaker(minimum_calls=100, slow_call_duration_s=1.0)))
    succeed(guard, 1, duration_s=1.0)
    succeed(guard, 1, duration_s=2.5)
    succeed(guard, 1, duration_s=0.999)
    assert guard.flush() is True
    assert window(client, keys) == (3, 0, 2)


def test_a_half_open_probes_success_is_recorded_at_once(
    client: redis.Redis,
    keys: KeySpace,
    clock: ManualClock,
    mono: ManualClock,
    late_guard: LateGuardFactory,
) -> None:
    """The probe's record(OK) closes the breaker before any flush: probes are never tallied."""
    guard = late_guard(guarded(breaker=breaker(minimum_calls=4, permitted_calls_in_half_open=1)))
    for _ in range(4):
        guard.record(admitted(guard), Outcome.FAILED)
    assert breaker_state(client, keys) == ("open", 1)

    clock.advance(30.0)
    probe = admitted(guard)
    assert (probe.permits[0].probe, probe.permits[0].state) == (True, "half_open")
    result = guard.record(probe, Outcome.OK)
    assert result.transitions == (("api", "half_open>closed"),)
    assert breaker_state(client, keys) == ("closed", 3)
    assert "api" not in guard._late.tallies
    assert client.zcard(keys.resource("api")[PROBES]) == 0


def fail_next_admission(
    monkeypatch: pytest.MonkeyPatch, guard: Guard, error: Exception, *, after_run: bool = False
) -> None:
    """The guard's next admission raises ``error``: before the script runs, or (``after_run``)
    after it ran, as when its reply is lost; later ones go through."""
    real_admit = guard._admit
    failures = [error]

    def failing(*, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        reply = real_admit(keys=keys, args=args) if after_run or not failures else None
        if failures:
            raise failures.pop()
        return reply

    monkeypatch.setattr(guard, "_admit", failing)


def test_the_settler_sends_nothing_an_admission_already_carried(
    client: redis.Redis,
    keys: KeySpace,
    mono: ManualClock,
    late_guard: LateGuardFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tally found due by the settler but carried by an admission before the settler took
    it costs no round trip: the settler sends only what is left."""
    guard = late_guard(guarded(concurrency=ConcurrencyConfig(limit=5)))
    guard.record(admitted(guard), Outcome.OK)
    settles: list[Sequence[str | int | float]] = []
    real_settle = guard._settle

    def counting(*, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        settles.append(args)
        return real_settle(keys=keys, args=args)

    monkeypatch.setattr(guard, "_settle", counting)
    take_late = guard._late.take
    raced: list[bool] = []

    def admission_first(names: Sequence[str], *, everything: bool = False) -> list[Late]:
        if everything and not raced:  # the settler's take: an admission gets there first
            raced.append(True)
            admitted(guard)
        return take_late(names, everything=everything)

    monkeypatch.setattr(guard._late, "take", admission_first)
    assert guard._settle_due(mono.now_s() + 1) is None
    assert settles == []
    assert len(leases(client, keys)) == 1  # the admission's own


def test_a_tally_the_admission_could_not_send_rides_on_the_next_one(
    client: redis.Redis,
    keys: KeySpace,
    mono: ManualClock,
    late_guard: LateGuardFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An admission that cannot reach Redis is decided by the fail mode (open: admitted) and
    keeps the tally; the next admission gives the earlier lease back."""
    guard = late_guard(guarded(concurrency=ConcurrencyConfig(limit=5)))
    first = admitted(guard)
    guard.record(first, Outcome.OK)

    fail_next_admission(monkeypatch, guard, ConnectionError("Redis went away"))
    degraded = guard.admit(["api"])
    assert (degraded.admitted, degraded.degraded) == (True, True)
    assert leases(client, keys) == [first.ticket]
    assert guard._late.tallies["api"].tickets == [first.ticket]

    last = admitted(guard)
    assert leases(client, keys) == [last.ticket]
    assert guard._late.tallies["api"].empty


def test_counts_an_admission_could_not_send_ride_on_the_next_one(
    client: redis.Redis,
    keys: KeySpace,
    mono: ManualClock,
    late_guard: LateGuardFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An admission that was never sent (NotSentError: the script did not run) keeps its
    counts as well as its leases, and the next admission counts them exactly once."""
    guard = late_guard(guarded(breaker=breaker(minimum_calls=100)))
    succeed(guard, 3)
    mono.advance(CARRY_COUNTS_S)

    fail_next_admission(monkeypatch, guard, NotSentError("not sent: Connection refused"))
    assert guard.admit(["api"]).degraded
    assert window(client, keys) == (0, 0, 0)
    admitted(guard)
    assert window(client, keys) == (3, 0, 0)
    assert guard.flush() is True
    assert window(client, keys) == (3, 0, 0)


def test_a_timed_out_admission_does_not_count_its_successes_twice(
    client: redis.Redis,
    keys: KeySpace,
    mono: ManualClock,
    late_guard: LateGuardFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An admission whose script ran but whose reply timed out must not leave its carried
    successes to be settled a second time."""
    guard = late_guard(guarded(breaker=breaker(minimum_calls=100)))
    succeed(guard, 3)
    mono.advance(CARRY_COUNTS_S)

    fail_next_admission(
        monkeypatch, guard, TimeoutError("Timeout reading from 127.0.0.1:6379"), after_run=True
    )
    assert guard.admit(["api"]).degraded
    assert window(client, keys) == (3, 0, 0)  # the script ran and counted them
    mono.advance(CARRY_COUNTS_S)
    admitted(guard)
    assert guard.flush() is True
    assert window(client, keys) == (3, 0, 0)


def test_a_settle_that_cannot_reach_redis_reports_false(
    keys: KeySpace, late_guard: LateGuardFactory, mono: ManualClock
) -> None:
    """Against a dead Redis the admission is degraded (nothing tallied); a tally then fails
    to settle: flush() returns False and the settler's pass returns, neither raises."""
    dead = connect("redis://127.0.0.1:1/0", socket_timeout_s=0.2, connect_timeout_s=0.2, retries=0)
    try:
        guard = late_guard(
            guarded(breaker=breaker(), concurrency=ConcurrencyConfig(limit=1)), client=dead
        )
        admission = guard.admit(["api"])
        assert (admission.admitted, admission.degraded) == (True, True)
        assert guard.record(admission, Outcome.OK).retry_allowed
        assert guard._late.tallies == {}

        tally = guard._late.tallies["api"] = LateSuccesses()
        tally.add(mono.now_s(), 0, slow=False, refill=0.0, ticket="t1")
        assert guard.flush() is False
        tally.add(mono.now_s(), 0, slow=False, refill=0.0, ticket="t2")
        assert guard._settle_due(mono.now_s() + 1) is None
    finally:
        dead.close()


def test_a_forked_child_does_not_settle_its_parents_tally(
    client: redis.Redis, keys: KeySpace, mono: ManualClock, late_guard: LateGuardFactory
) -> None:
    """A child forked with 2 successes tallied settles only its own 1; the parent settles its
    2: the window counts 3, not 5."""
    guard = late_guard(guarded(breaker=breaker(minimum_calls=100)))
    succeed(guard, 2)

    def child() -> int:
        succeed(guard, 1)
        return 0 if guard.flush() else 3

    assert run_forked(child) == 0
    assert window(client, keys) == (1, 0, 0)
    assert guard.flush() is True
    assert window(client, keys) == (3, 0, 0)


def test_a_child_forked_while_the_guard_lock_is_held_can_record(
    client: redis.Redis, keys: KeySpace, mono: ManualClock, late_guard: LateGuardFactory
) -> None:
    """A child forked while another thread holds the guard's locks (the settler thread takes
    the ledger's on every pass) can still record a success late."""
    guard = late_guard(guarded(breaker=breaker(minimum_calls=100)))

    def child() -> int:
        done = threading.Event()

        def run() -> None:
            succeed(guard, 1)
            done.set()

        threading.Thread(target=run, daemon=True).start()
        return 0 if done.wait(timeout=5) else 3

    # As the settler thread holds the ledger's lock while it takes a tally, and an admission
    # the open cache's while it looks.
    with guard._late._lock, guard._open._lock:
        status = run_forked(child)
    assert status == 0


# --- the settler thread ----------------------------------------------------------------------


def test_settler_calls_on_each_poke_and_waits_for_the_next() -> None:
    """poke() starts the thread, which calls settle_due; once it returns None the thread waits
    for the next poke, which calls it again."""
    called = [threading.Event(), threading.Event(), threading.Event()]
    seen: list[float] = []

    def settle_due(now: float) -> float | None:
        seen.append(now)
        called[len(seen) - 1].set()
        return None

    settler = Settler(settle_due)
    settler.poke()
    assert called[0].wait(timeout=5)
    assert not called[1].wait(timeout=0.05)  # None: no further call without a poke
    settler.poke()
    assert called[1].wait(timeout=5)
    assert len(seen) == 2
    assert seen[0] < seen[1]


def test_settler_calls_again_after_the_wait_it_returns_and_survives_errors() -> None:
    """A returned wait brings another call after it without a poke; an exception is logged
    and the next poke is still served."""
    called = [threading.Event() for _ in range(4)]

    def boom() -> float | None:
        raise RuntimeError("defect")

    replies: list[Callable[[], float | None]] = [lambda: 0.001, lambda: None, boom, lambda: None]
    seen: list[float] = []

    def settle_due(now: float) -> float | None:
        seen.append(now)
        called[len(seen) - 1].set()
        return replies[len(seen) - 1]()

    settler = Settler(settle_due)
    settler.poke()
    assert called[1].wait(timeout=5)  # 0.001, then the second call: one poke
    settler.poke()
    assert called[2].wait(timeout=5)  # raises
    settler.poke()
    assert called[3].wait(timeout=5)
    assert len(seen) == 4
    assert seen[1] - seen[0] >= 0.001


def test_the_settler_thread_settles_an_idle_workers_tally(
    client: redis.Redis,
    keys: KeySpace,
    late_guard: LateGuardFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without any further admission the guard's own thread returns the lease and counts the
    success (its pass is seen through the guard's send)."""
    guard = late_guard(
        guarded(breaker=breaker(minimum_calls=100), concurrency=ConcurrencyConfig(limit=1)),
        thread=True,
    )
    sent = threading.Event()
    send = guard._send_late

    def sending(names: Sequence[str], late: Sequence[Late]) -> bool:
        ok = send(names, late)
        sent.set()
        return ok

    monkeypatch.setattr(guard, "_send_late", sending)
    guard.record(admitted(guard), Outcome.OK)
    assert sent.wait(timeout=5)
    assert leases(client, keys) == []
    assert window(client, keys) == (1, 0, 0)
    assert guard._late.tallies["api"].empty
