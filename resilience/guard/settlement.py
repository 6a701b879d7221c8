"""Successful runs recorded late: what a worker owes each resource until it next asks Redis.

A success needs no answer from Redis, so the task does not wait a round trip for it: the guard
tallies it here, per resource, and the worker's next admission of the same resource carries it
in its own round trip (guard_admit.lua). Its concurrency lease goes back with that very next
admission, so the worker's next run never waits on its own previous one; its counts (the
breaker's window, the retry budget's refill) ride along at most every ``CARRY_COUNTS_S``, which
keeps the admission script small on a busy worker. What no admission carries in time a
background thread settles on its own (guard_settle.lua): an idle worker's leases come back
within ``LINGER_S`` and its successes reach the breaker's window all the same. A tally lost with
its process costs what a crash costs anyway: its leases expire.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from resilience.guard.answers import Admission, Outcome
from resilience.guard.resources import ResourceConfig

__all__ = [
    "CARRY_COUNTS_S",
    "LINGER_S",
    "MAX_TICKETS",
    "Late",
    "LateLedger",
    "LateSuccesses",
    "Settler",
    "nobody_waits",
]

_log = structlog.get_logger("alchemiser.guard")

# How long a returned lease waits for an admission to carry it before the background thread
# sends it: a worker running tasks back to back (one every few ms) never needs the thread.
LINGER_S = 0.005
# How often successes are counted in the breaker's window and the retry budget: late by at most
# this much, against a window of seconds to minutes.
CARRY_COUNTS_S = 0.1
# Leases beyond this many (Redis was away for long) are left to expire on their own.
MAX_TICKETS = 256


def nobody_waits(admission: Admission, outcome: Outcome, retry: str | None, push_us: int) -> bool:
    """Whether a record may be late: a success, no retry to pay for, no server hint, and no
    half-open probe (its verdict should not wait)."""
    return (
        outcome is Outcome.OK
        and not retry
        and not push_us
        and not any(permit.probe for permit in admission.permits)
    )


@dataclass(frozen=True, slots=True)
class Late:
    """What one round trip carries for one resource."""

    tickets: tuple[str, ...] = ()
    calls: tuple[tuple[int, int, int], ...] = ()  # (generation, calls, slow calls)
    refill: float = 0.0
    counts_since: float = 0.0  # when the oldest success counted here was tallied

    @property
    def counts(self) -> bool:
        """Whether it carries counts (not only leases)."""
        return bool(self.calls) or self.refill > 0

    def args(self) -> list[str | int]:
        """The resource's late arguments, as guard_lib.lua's ``late_args`` reads them."""
        counts = ""
        if self.counts:
            counts = json.dumps([self.refill, self.calls], separators=(",", ":"))
        return [counts, len(self.tickets), *self.tickets]


_NOTHING_LATE = Late()


@dataclass(slots=True)
class LateSuccesses:
    """Successful runs of one resource that Redis has not heard of yet."""

    tickets: list[str] = field(default_factory=list)
    tickets_since: float = 0.0  # time.monotonic() of the oldest ticket
    calls: dict[int, list[int]] = field(default_factory=dict)  # generation -> [calls, slow]
    refill: float = 0.0  # retry budget tokens the successes earn
    counts_since: float = 0.0  # time.monotonic() of the oldest success not counted

    def add(
        self, now: float, generation: int | None, *, slow: bool, refill: float, ticket: str | None
    ) -> None:
        """One success: counted in ``generation``'s window (None: no breaker)."""
        if ticket is not None:
            if not self.tickets:
                self.tickets_since = now
            self.tickets.append(ticket)
            del self.tickets[:-MAX_TICKETS]
        if generation is not None or refill > 0:
            if not self.calls and self.refill == 0:
                self.counts_since = now
            if generation is not None:
                counts = self.calls.setdefault(generation, [0, 0])
                counts[0] += 1
                counts[1] += int(slow)
            self.refill += refill

    @property
    def empty(self) -> bool:
        """Nothing left to carry."""
        return not self.tickets and not self.calls and self.refill == 0

    def take(self, now: float, *, everything: bool = False) -> Late:
        """The leases, and the counts if they are due (or ``everything``); what is taken is
        forgotten here (:meth:`give_back` if it could not be sent)."""
        tickets, self.tickets = tuple(self.tickets), []
        if not everything and (self.empty or now - self.counts_since < CARRY_COUNTS_S):
            return Late(tickets=tickets)
        calls = tuple((gen, n, slow) for gen, (n, slow) in self.calls.items())
        late = Late(
            tickets=tickets, calls=calls, refill=self.refill, counts_since=self.counts_since
        )
        self.calls, self.refill = {}, 0.0
        return late

    def give_back(self, late: Late, now: float) -> None:
        """Keep what a failed round trip carried, to send it again."""
        if late.tickets:
            if not self.tickets:
                self.tickets_since = now
            # Older than those added since: past MAX_TICKETS, the oldest are the ones dropped.
            self.tickets[:0] = late.tickets
            del self.tickets[:-MAX_TICKETS]
        if late.counts:
            # As old as they were: due again as soon as they were due before.
            had_counts = bool(self.calls) or self.refill > 0
            self.counts_since = (
                min(self.counts_since, late.counts_since) if had_counts else late.counts_since
            )
            for gen, calls, slow in late.calls:
                counts = self.calls.setdefault(gen, [0, 0])
                counts[0] += calls
                counts[1] += slow
            self.refill += late.refill

    def due_at(self) -> float | None:
        """When the settler should send what is here, if no admission took it (monotonic)."""
        times = []
        if self.tickets:
            times.append(self.tickets_since + LINGER_S)
        if self.calls or self.refill > 0:
            times.append(self.counts_since + CARRY_COUNTS_S)
        return min(times) if times else None


class LateLedger:
    """Every resource's tally of one guard's late successes; thread-safe."""

    def __init__(self, resources: Mapping[str, ResourceConfig]) -> None:
        self._resources = resources
        self._lock = threading.Lock()
        self.tallies: dict[str, LateSuccesses] = {}

    def add(self, admission: Admission, duration_s: float) -> None:
        """Tally a successful run of ``admission`` (what each of its resources keeps count of)."""
        now = time.monotonic()
        with self._lock:
            for permit in admission.permits:
                resource = self._resources[permit.resource]
                breaker, budget = resource.breaker, resource.retry_budget
                if not (breaker or budget or resource.concurrency):
                    continue
                tally = self.tallies.get(permit.resource)
                if tally is None:
                    tally = self.tallies[permit.resource] = LateSuccesses()
                tally.add(
                    now,
                    permit.generation if breaker else None,
                    slow=breaker is not None and duration_s >= breaker.slow_call_duration_s,
                    refill=budget.success_refill if budget else 0.0,
                    ticket=admission.ticket if resource.concurrency else None,
                )

    def take(self, names: Sequence[str], *, everything: bool = False) -> list[Late]:
        """What the next round trip for ``names`` carries, one per name."""
        if not self.tallies:
            return [_NOTHING_LATE] * len(names)
        now = time.monotonic()
        with self._lock:
            return [
                tally.take(now, everything=everything)
                if (tally := self.tallies.get(name)) is not None
                else _NOTHING_LATE
                for name in names
            ]

    def give_back(self, names: Sequence[str], late: Sequence[Late]) -> None:
        """Redis did not take them: keep them for the next round trip."""
        now = time.monotonic()
        with self._lock:
            for name, carried in zip(names, late, strict=True):
                if carried.tickets or carried.counts:
                    self.tallies.setdefault(name, LateSuccesses()).give_back(carried, now)

    def due_at(self) -> dict[str, float | None]:
        """When each tally is due to be sent."""
        with self._lock:
            return {name: tally.due_at() for name, tally in self.tallies.items()}

    def waiting(self) -> tuple[str, ...]:
        """The resources with something to send."""
        with self._lock:
            return tuple(name for name, tally in self.tallies.items() if not tally.empty)

    def forget(self) -> None:
        """In a forked child: the parent's tallies are the parent's to send, and its lock may
        have been held by a thread that does not exist here."""
        self._lock = threading.Lock()
        self.tallies = {}


class Settler:
    """One daemon thread per process (a forked child starts its own) that calls
    ``settle_due(now)`` a linger after something started waiting, and again after each wait it
    returns.

    ``settle_due`` gets ``time.monotonic()`` and returns the seconds until the next tally is due,
    or None when nothing is left.
    """

    def __init__(self, settle_due: Callable[[float], float | None]) -> None:
        self._settle_due = settle_due
        self._wake = threading.Event()
        self._pid = -1
        self._start_lock = threading.Lock()
        # A forked child starts its own thread; the parent's lock may be held by a thread the
        # child does not have.
        reset = weakref.WeakMethod(self._reset_after_fork)
        os.register_at_fork(after_in_child=lambda: (f := reset()) and f())

    def _reset_after_fork(self) -> None:
        self._start_lock = threading.Lock()

    def poke(self) -> None:
        """Something is waiting: make sure the thread will look at it."""
        if self._pid != os.getpid():
            self._start()
        if not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._wake = threading.Event()
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="alchemiser-guard-settler", daemon=True).start()

    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.wait()
            wake.clear()
            # Linger before looking: a busy worker's next admission carries the tally, and the
            # thread wakes at most once per linger instead of once per task.
            time.sleep(LINGER_S)
            try:
                while (wait_s := self._settle_due(time.monotonic())) is not None:
                    time.sleep(wait_s)
            except Exception:  # a defect must not stop later settlements
                _log.exception("settlement_failed")
