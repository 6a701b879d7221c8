"""Admission and outcome recording for guarded resources, one Redis round trip each.

Before a task's body runs, :meth:`Guard.admit` asks every resource it declares (breaker, rate
limiter, concurrency limit) in one script call; after, :meth:`Guard.record` returns the leases,
feeds the breaker and spends or refills the retry budget in one more. Decisions are taken in
Lua on Redis server time, so the fleet shares them and host clocks do not matter.

A breaker found OPEN is remembered in this process (by monotonic time, never the wall clock)
for at most ``open_cache_s``, so a fleet facing an open breaker does not ask Redis per task.
When Redis cannot be asked, each resource's ``fail_mode`` decides; every such decision is
logged and counted.
"""

from __future__ import annotations

import enum
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog
from redis import Redis
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from resilience.background import BackgroundScripts
from resilience.clock import Clock
from resilience.keys import KeySpace
from resilience.resources import ResourceConfig, config_argv
from resilience.scripts import register

__all__ = ["Admission", "Guard", "Outcome", "Permit", "RecordResult", "RetryKind"]

_log = structlog.get_logger("alchemiser.guard")

LIBRARY = "guard_lib"
RetryKind = Literal["retry", "timeout"]
# Leases this process releases itself while their records wait in the background; every
# admission carries them. Past this many (the sender is stuck), records go synchronously.
MAX_RELEASING = 64


class Outcome(enum.Enum):
    """How an admitted run went, as far as its resources' breakers are concerned."""

    OK = "ok"
    FAILED = "fail"  # the remote side's fault: counts against the breaker
    IGNORED = "ignore"  # an error that says nothing of the resource's health
    NONE = "none"  # nothing to record (a hint or a released lease only)


@dataclass(frozen=True, slots=True)
class Permit:
    """What admission granted on one resource."""

    resource: str
    generation: int
    state: str
    probe: bool
    remaining: int


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to :meth:`Guard.admit`."""

    admitted: bool
    ticket: str
    permits: tuple[Permit, ...] = ()
    retry_after_s: float = 0.0
    refused_by: str | None = None
    reason: str = ""
    # Redis could not be asked; the resources' fail modes decided.
    degraded: bool = False
    # Redis server time of the decision (µs since the epoch; 0 when Redis was not asked).
    at_us: int = 0

    @property
    def resources(self) -> tuple[str, ...]:
        """The configured resources this admission covers."""
        return tuple(p.resource for p in self.permits)


@dataclass(frozen=True, slots=True)
class RecordResult:
    """The answer to :meth:`Guard.record`."""

    retry_allowed: bool
    transitions: tuple[tuple[str, str], ...] = ()  # (resource, "from>to")


class Guard:
    """One per process; thread-safe (its mutable state: the OPEN cache, the background queue)."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        resources: Mapping[str, ResourceConfig],
        *,
        server_clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        open_cache_s: float = 1.0,
        background: BackgroundScripts | None = None,
    ) -> None:
        self._client = client
        # Successful runs are recorded off the task's critical path when given.
        self._background = background
        self._keys = keys
        # A resource with every protection off needs no round trip.
        self._resources = {
            name: r
            for name, r in resources.items()
            if r.breaker or r.rate_limit or r.concurrency or r.retry_budget
        }
        self._unguarded = frozenset(resources) - frozenset(self._resources)
        self._server_clock = server_clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._open_cache_s = open_cache_s
        self._admit = register(client, "resilience", "guard_admit", library=LIBRARY)
        self._record = register(client, "resilience", "guard_record", library=LIBRARY)
        self._argv = {name: config_argv(r) for name, r in self._resources.items()}
        self._resource_keys = {name: keys.resource(name) for name in self._resources}
        # resource -> (monotonic time the cached answer expires, monotonic open_until)
        self._open_cache: dict[str, tuple[float, float]] = {}
        # Tickets whose success is queued in the background: their leases are released by
        # this process's next admission (guard_admit.lua).
        self._releasing: list[str] = []
        self._lock = threading.Lock()
        self._warned_unknown: set[str] = set()
        # Decisions taken without Redis ("<resource>:admitted|refused"): all of this process's,
        # and those not yet added to the resources' stats (written once Redis answers again).
        self.degraded_decisions: Counter[str] = Counter()
        self._unreported: Counter[str] = Counter()

    @property
    def resources(self) -> Mapping[str, ResourceConfig]:
        """Every resource with at least one protection on, by name."""
        return self._resources

    def configured(self, names: Sequence[str]) -> tuple[str, ...]:
        """The names among ``names`` that have a configuration (others are not guarded)."""
        known = tuple(n for n in names if n in self._resources)
        for name in names:
            if (
                name not in self._resources
                and name not in self._unguarded
                and name not in self._warned_unknown
            ):
                self._warned_unknown.add(name)
                _log.warning("resource_not_configured", resource=name)
        return known

    def _now_override(self) -> str:
        if self._server_clock is None:
            return ""
        return str(int(self._server_clock.now_s() * 1_000_000))

    def _cached_open(self, names: Sequence[str]) -> tuple[str, float] | None:
        now = self._monotonic()
        with self._lock:
            for name in names:
                cached = self._open_cache.get(name)
                if cached is not None:
                    expires, open_until = cached
                    if expires > now:
                        return name, open_until - now
                    del self._open_cache[name]
        return None

    def admit(self, names: Sequence[str], ticket: str | None = None) -> Admission:
        """Ask every configured resource in ``names`` to admit one run, all or nothing."""
        names = self.configured(names)
        ticket = ticket or uuid.uuid4().hex
        if not names:
            return Admission(admitted=True, ticket=ticket)
        cached = self._cached_open(names)
        if cached is not None:
            name, wait_s = cached
            return Admission(
                admitted=False,
                ticket=ticket,
                retry_after_s=wait_s,
                refused_by=name,
                reason="breaker open",
            )
        keys = [key for name in names for key in self._resource_keys[name]]
        argv: list[str | int | float] = [self._now_override(), ticket, len(names)]
        for name in names:
            argv.extend(self._argv[name])
        with self._lock:
            argv.extend(self._releasing)
        try:
            reply = self._admit(keys=keys, args=argv)
        except RedisError as unavailable:
            return self._degraded(names, ticket, unavailable)
        if self._unreported:
            self._report_degraded()
        return self._admission(names, ticket, reply)

    def _report_degraded(self) -> None:
        """Add the decisions taken while Redis was away to the resources' stats (fleet-wide
        counts for `limits list`), now that it answers."""
        with self._lock:
            counts, self._unreported = self._unreported, Counter()
        pipe = self._client.pipeline(transaction=False)
        for key, count in counts.items():
            name, _, decision = key.rpartition(":")
            pipe.hincrby(self._resource_keys[name][7], f"without_redis:{decision}", count)
        try:
            pipe.execute()
        except RedisError:
            with self._lock:
                self._unreported.update(counts)

    def _admission(self, names: Sequence[str], ticket: str, reply: list[object]) -> Admission:
        admitted, retry_us, refused_index, reason, at_us = (
            int(str(reply[0])),
            int(str(reply[1])),
            int(str(reply[2])),
            str(reply[3]),
            int(str(reply[4])),
        )
        permits: list[Permit] = []
        for i, name in enumerate(names):
            gen, state, probe, remaining, transition = reply[5 + 5 * i : 10 + 5 * i]
            permits.append(
                Permit(
                    resource=name,
                    generation=int(str(gen)),
                    state=str(state),
                    probe=int(str(probe)) == 1,
                    remaining=int(str(remaining)),
                )
            )
            if transition:
                self._log_transition(name, str(transition))
        refused_by = names[refused_index - 1] if refused_index else None
        retry_after_s = retry_us / 1_000_000
        if refused_by is not None and reason == "breaker open":
            with self._lock:
                now = self._monotonic()
                self._open_cache[refused_by] = (
                    now + min(retry_after_s, self._open_cache_s),
                    now + retry_after_s,
                )
        return Admission(
            admitted=admitted == 1,
            ticket=ticket,
            permits=tuple(permits),
            retry_after_s=retry_after_s if not admitted else 0.0,
            refused_by=refused_by,
            reason=reason,
            at_us=at_us,
        )

    def _degraded(self, names: Sequence[str], ticket: str, error: RedisError) -> Admission:
        closed = [n for n in names if self._resources[n].fail_mode == "closed"]
        decision = "refused" if closed else "admitted"
        for name in names:
            self.degraded_decisions[f"{name}:{decision}"] += 1
            with self._lock:
                self._unreported[f"{name}:{decision}"] += 1
        # A script or encoding error is a defect, not an outage: same fail mode, louder.
        log = _log.warning if isinstance(error, (ConnectionError, TimeoutError)) else _log.error
        log(
            "admission_without_redis",
            resources=list(names),
            decision=decision,
            fail_closed=closed,
            error=str(error),
        )
        if closed:
            return Admission(
                admitted=False,
                ticket=ticket,
                retry_after_s=max(self._resources[n].fail_closed_retry_s for n in closed),
                refused_by=closed[0],
                reason="redis unavailable (fail closed)",
                degraded=True,
            )
        return Admission(admitted=True, ticket=ticket, degraded=True)

    def record(
        self,
        admission: Admission,
        outcome: Outcome,
        *,
        duration_s: float = 0.0,
        retry: RetryKind | None = None,
        push_s: float | None = None,
    ) -> RecordResult:
        """Record how the admitted run went; ask to pay for a retry with ``retry``; push the
        rate limiters back by ``push_s`` (a server's Retry-After).

        Returns whether the retry budget allows the retry (always, when Redis cannot be asked:
        the budget is a brake, not a gate).
        """
        if not admission.admitted or admission.degraded or not admission.permits:
            return RecordResult(retry_allowed=True)
        names = admission.resources
        keys = [key for name in names for key in self._resource_keys[name]]
        argv: list[str | int | float] = [
            self._now_override(),
            admission.ticket,
            len(names),
            self._rng.uniform(-1.0, 1.0),
        ]
        for name in names:
            argv.extend(self._argv[name])
        duration_us = int(duration_s * 1_000_000)
        push_us = int(push_s * 1_000_000) if push_s and push_s > 0 else 0
        for permit in admission.permits:
            budget = self._resources[permit.resource].retry_budget
            cost = 0.0
            if budget is not None and retry is not None:
                cost = budget.timeout_cost if retry == "timeout" else budget.retry_cost
            argv.extend(
                (
                    outcome.value,
                    duration_us,
                    permit.generation,
                    int(permit.probe),
                    push_us,
                    cost,
                    budget.success_refill if budget is not None else 0,
                )
            )
        if self._background is not None and self._may_record_later(outcome, retry, push_us):
            self._record_later(self._background, admission, names, keys, argv)
            return RecordResult(retry_allowed=True)
        try:
            reply = self._record(keys=keys, args=argv)
        except RedisError as unavailable:
            _log.warning(
                "outcome_not_recorded",
                resources=list(names),
                outcome=outcome.value,
                error=str(unavailable),
            )
            return RecordResult(retry_allowed=True)
        return RecordResult(
            retry_allowed=int(str(reply[0])) == 1, transitions=self._transitions(names, reply)
        )

    def _may_record_later(self, outcome: Outcome, retry: RetryKind | None, push_us: int) -> bool:
        """Whether nobody waits for this record's answer (a success, no retry, no hint) and
        the background sender keeps up."""
        with self._lock:
            backlog = len(self._releasing)
        return outcome is Outcome.OK and not retry and not push_us and backlog < MAX_RELEASING

    def _record_later(
        self,
        background: BackgroundScripts,
        admission: Admission,
        names: Sequence[str],
        keys: list[str],
        argv: list[str | int | float],
    ) -> None:
        # Until the record lands, this process's admissions release the run's concurrency
        # lease themselves, so its next run does not wait on it (with a limit of 1 it would
        # be refused every other time).
        holds_lease = any(self._resources[name].concurrency for name in names)
        if holds_lease:
            with self._lock:
                self._releasing.append(admission.ticket)

        def landed(reply: object) -> None:
            if holds_lease:
                with self._lock:
                    self._releasing.remove(admission.ticket)
            if isinstance(reply, list):
                self._transitions(names, reply)

        background.submit(self._record, keys, argv, landed)

    def _transitions(
        self, names: Sequence[str], reply: list[object]
    ) -> tuple[tuple[str, str], ...]:
        transitions = tuple((name, str(t)) for name, t in zip(names, reply[1:], strict=True) if t)
        for name, transition in transitions:
            self._log_transition(name, transition)
        return transitions

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every outcome recorded in the background was sent (shutdown, tests)."""
        return self._background.flush(timeout_s) if self._background is not None else True

    def push(self, name: str, wait_s: float) -> None:
        """A server said "not before ``wait_s`` from now": hold every worker's limiter back."""
        if name not in self._resources or self._resources[name].rate_limit is None:
            return
        self.record(
            Admission(
                admitted=True,
                ticket=uuid.uuid4().hex,
                permits=(Permit(name, 0, "", probe=False, remaining=-1),),
            ),
            Outcome.NONE,
            push_s=wait_s,
        )

    def forget_open(self) -> None:
        """Drop the local OPEN cache (tests, and after an operator's reset in this process)."""
        with self._lock:
            self._open_cache.clear()

    @staticmethod
    def _log_transition(resource: str, transition: str) -> None:
        before, _, after = transition.partition(">")
        log = _log.warning if after in ("open", "forced_open") else _log.info
        log("breaker_transition", resource=resource, from_state=before, to_state=after)
