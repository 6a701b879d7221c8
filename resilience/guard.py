"""Admission and outcome recording for guarded resources, one Redis round trip each.

Before a task's body runs, :meth:`Guard.admit` asks every resource it declares (breaker, rate
limiter, concurrency limit) in one script call; after, :meth:`Guard.record` returns the leases,
feeds the breaker and spends or refills the retry budget in one more. Decisions are taken in
Lua on Redis server time, so the fleet shares them and host clocks do not matter.

With ``record_successes_late``, a success (nobody waits for its answer) costs no round trip of
its own: it is tallied in the process and settled by the next admission of the same resource,
or by a background thread within a few milliseconds (:mod:`resilience.settlement`).

A resource configured with a permit lease (``permit_lease``, opt-in) is asked for a batch of
admissions at once: the process spends them on its next runs without a round trip, for at
most the lease's ``ttl_s`` from when it asked, and drops what is left at a failure, a server's
Retry-After or a breaker leaving CLOSED (the weaker bounds this gives are on
:class:`resilience.resources.PermitLeaseConfig`).

A breaker found OPEN is remembered in this process (by monotonic time, never the wall clock)
for at most ``open_cache_s``, so a fleet facing an open breaker does not ask Redis per task.
When Redis cannot be asked, each resource's ``fail_mode`` decides; every such decision is
logged and counted.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import random
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog
from redis import Redis
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from resilience.clock import Clock
from resilience.direct_script import DirectScript, NotSentError
from resilience.keys import KeySpace
from resilience.resources import ResourceConfig, config_argv
from resilience.scripts import script_source
from resilience.settlement import Late, LateSuccesses, Settler

__all__ = ["Admission", "Guard", "Outcome", "Permit", "RecordResult", "RetryKind"]

_log = structlog.get_logger("alchemiser.guard")

LIBRARY = ("clock_lib", "guard_lib")
RetryKind = Literal["retry", "timeout"]
_NOTHING_LATE = Late()


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
    # Admitted from this process's permit lease, without asking Redis (ticket and at_us: the
    # grant's).
    leased: bool = False

    @property
    def resources(self) -> tuple[str, ...]:
        """The configured resources this admission covers."""
        return tuple(p.resource for p in self.permits)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every admission of one tuple of resource names sends, worked out once."""

    names: tuple[str, ...]  # the configured ones
    keys: tuple[str, ...]
    configs: tuple[str | int | float, ...]
    # The most runs one round trip may ask for: > 1 when every resource leases permits (the
    # smallest lease of them), else 1; and for how long a lease may be spent.
    permits: int = 1
    lease_ttl_s: float = 0.0


@dataclass(slots=True)
class _Lease:
    """The last grant of one tuple of resources to this process: what is left of it, and what
    it says of how many runs the next round trip should ask for."""

    admission: Admission  # what each run spent from it is told (leased)
    granted: int
    left: int
    asked_at: float  # monotonic, when the process asked
    expires: float  # asked_at + the lease's TTL: counted from the ask, not from Redis' answer


@dataclass(frozen=True, slots=True)
class RecordResult:
    """The answer to :meth:`Guard.record`."""

    retry_allowed: bool
    transitions: tuple[tuple[str, str], ...] = ()  # (resource, "from>to")


def _as_int(value: object) -> int:
    """An integer from a script's reply (redis-py gives Lua numbers as ``int`` already)."""
    return value if isinstance(value, int) else int(str(value))


def _script(client: Redis, name: str) -> DirectScript:
    return DirectScript(client, script_source("resilience", name, library=LIBRARY))


class Guard:
    """One per process; thread-safe (its mutable state: the OPEN cache, the late successes)."""

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
        record_successes_late: bool = False,
    ) -> None:
        self._client = client
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
        self._admit = _script(client, "guard_admit")
        self._record = _script(client, "guard_record")
        self._settle = _script(client, "guard_settle")
        self._argv = {name: config_argv(r) for name, r in self._resources.items()}
        self._resource_keys = {name: keys.resource(name) for name in self._resources}
        # resource -> (monotonic time the cached answer expires, monotonic open_until)
        self._open_cache: dict[str, tuple[float, float]] = {}
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._leases: dict[tuple[str, ...], _Lease] = {}
        # Successes Redis has not heard of yet, by resource (settled by the next admission of
        # the resource or by the settler thread).
        self._late: dict[str, LateSuccesses] = {}
        self._settler = Settler(self._settle_due) if record_successes_late else None
        self._lock = threading.Lock()
        # A forked child must not settle its parent's runs a second time.
        forget = weakref.WeakMethod(self._forget_late)
        os.register_at_fork(after_in_child=lambda: (f := forget()) and f())
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
        plan = self._plans.get(names) if isinstance(names, tuple) else None
        if plan is not None:
            return plan.names
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

    def _plan(self, names: Sequence[str]) -> _Plan:
        key = tuple(names)
        plan = self._plans.get(key)
        if plan is None:
            known = self.configured(key)
            leases = [self._resources[name].permit_lease for name in known]
            leasing = [lease for lease in leases if lease is not None]
            every = bool(known) and len(leasing) == len(known)
            plan = _Plan(
                names=known,
                keys=tuple(k for name in known for k in self._resource_keys[name]),
                configs=tuple(arg for name in known for arg in self._argv[name]),
                permits=min(lease.permits for lease in leasing) if every else 1,
                lease_ttl_s=min(lease.ttl_s for lease in leasing) if every else 0.0,
            )
            self._plans[key] = plan
        return plan

    def _cached_open(self, names: Sequence[str]) -> tuple[str, float] | None:
        if not self._open_cache:
            return None
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
        plan = self._plan(names)
        names = plan.names
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
        want = 1
        if plan.permits > 1:
            leased = self._spend_lease(names)
            if leased is not None:
                return leased
            want = self._lease_size(names, plan)
        late = self._take_late(names)
        argv: list[str | int | float] = [
            self._now_override(),
            ticket,
            len(names),
            self._rng.uniform(-1.0, 1.0) if any(r.counts for r in late) else 0,
            want,
            *plan.configs,
        ]
        for carried in late:
            argv.extend(carried.args())
        asked_at = self._monotonic()
        try:
            reply = self._admit(keys=plan.keys, args=argv)
        except NotSentError as unavailable:
            self._give_back_late(names, late)
            return self._degraded(names, ticket, unavailable)
        except RedisError as unavailable:
            # The script may have run: leases can be given back twice, counts cannot.
            self._give_back_late(names, [Late(tickets=carried.tickets) for carried in late])
            return self._degraded(names, ticket, unavailable)
        if self._unreported:
            self._report_degraded()
        admission = self._admission(names, ticket, reply)
        granted = _as_int(reply[5])
        if plan.permits > 1 and granted:
            with self._lock:
                self._leases[names] = _Lease(
                    admission=dataclasses.replace(admission, leased=True),
                    granted=granted,
                    left=granted - 1,
                    asked_at=asked_at,
                    expires=asked_at + plan.lease_ttl_s,
                )
        return admission

    def _spend_lease(self, names: tuple[str, ...]) -> Admission | None:
        """One run from this process's lease on ``names``, or None (none left, or expired)."""
        with self._lock:
            lease = self._leases.get(names)
            if lease is None or lease.left < 1 or lease.expires <= self._monotonic():
                return None
            lease.left -= 1
            return lease.admission

    def _lease_size(self, names: tuple[str, ...], plan: _Plan) -> int:
        """How many runs to ask for, from how the last grant went (slow start): one at first
        and after a failure; twice the last grant when it was spent and the process asks again
        within the TTL; what it spent when some expired unspent. So a process that runs rarely
        takes one run at a time and never holds the limiter's units idle."""
        with self._lock:
            last = self._leases.get(names)
            if last is None:
                return 1
            if last.left > 0:
                return max(last.granted - last.left, 1)
            if self._monotonic() - last.asked_at < plan.lease_ttl_s:
                return min(last.granted * 2, plan.permits)
            return last.granted

    def _drop_leases(self, names: Sequence[str]) -> None:
        """Give up every lease covering any of ``names`` (a failure, a breaker opening)."""
        if not self._leases:
            return
        with self._lock:
            for key in [key for key in self._leases if any(name in key for name in names)]:
                del self._leases[key]

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
        admitted, retry_us, refused_index, at_us = (
            _as_int(reply[0]),
            _as_int(reply[1]),
            _as_int(reply[2]),
            _as_int(reply[4]),
        )
        reason = str(reply[3])
        permits: list[Permit] = []
        for i, name in enumerate(names):
            gen, state, probe, remaining, transition = reply[6 + 5 * i : 11 + 5 * i]
            permits.append(
                Permit(
                    resource=name,
                    generation=_as_int(gen),
                    state=str(state),
                    probe=probe == 1,
                    remaining=_as_int(remaining),
                )
            )
            if transition:
                self._on_transition(name, str(transition))
        refused_by = names[refused_index - 1] if refused_index else None
        retry_after_s = retry_us / 1_000_000
        if refused_by is not None and reason.startswith("breaker"):
            self._drop_leases((refused_by,))
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
        push_us = int(push_s * 1_000_000) if push_s and push_s > 0 else 0
        if outcome is Outcome.FAILED or push_us:
            # The next run asks Redis, so the breaker and the pushed-back limiter decide.
            self._drop_leases(admission.resources)
        if self._settler is not None and self._may_record_late(admission, outcome, retry, push_us):
            self._record_late(self._settler, admission, duration_s)
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

    @staticmethod
    def _may_record_late(
        admission: Admission, outcome: Outcome, retry: RetryKind | None, push_us: int
    ) -> bool:
        """Whether nobody waits for this record's answer: a success, no retry, no hint, and no
        half-open probe (its verdict should not wait)."""
        return (
            outcome is Outcome.OK
            and not retry
            and not push_us
            and not any(permit.probe for permit in admission.permits)
        )

    def _record_late(self, settler: Settler, admission: Admission, duration_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            for permit in admission.permits:
                resource = self._resources[permit.resource]
                breaker, budget = resource.breaker, resource.retry_budget
                if not (breaker or budget or resource.concurrency):
                    continue
                tally = self._late.get(permit.resource)
                if tally is None:
                    tally = self._late[permit.resource] = LateSuccesses()
                tally.add(
                    now,
                    permit.generation if breaker else None,
                    slow=breaker is not None and duration_s >= breaker.slow_call_duration_s,
                    refill=budget.success_refill if budget else 0.0,
                    ticket=admission.ticket if resource.concurrency else None,
                )
        settler.poke()

    def _take_late(self, names: Sequence[str], *, everything: bool = False) -> list[Late]:
        """What the next round trip for ``names`` carries, one per name."""
        if not self._late:
            return [_NOTHING_LATE] * len(names)
        now = time.monotonic()
        with self._lock:
            return [
                tally.take(now, everything=everything)
                if (tally := self._late.get(name)) is not None
                else _NOTHING_LATE
                for name in names
            ]

    def _give_back_late(self, names: Sequence[str], late: Sequence[Late]) -> None:
        """Redis did not take them: keep them for the next round trip."""
        now = time.monotonic()
        with self._lock:
            for name, carried in zip(names, late, strict=True):
                if carried.tickets or carried.counts:
                    self._late.setdefault(name, LateSuccesses()).give_back(carried, now)

    def _forget_late(self) -> None:
        # In a forked child: the parent's tallies are the parent's to send, and its lock may
        # have been held by a thread that does not exist here.
        self._lock = threading.Lock()
        self._late = {}
        # Its parent's lease is its parent's: spending it here too would double it.
        self._leases = {}

    def _settle_due(self, now: float) -> float | None:
        """Settle every tally that is due (the settler thread); the seconds until the next one
        is due, or None when nothing is left."""
        with self._lock:
            due_at = {name: tally.due_at() for name, tally in self._late.items()}
        due = tuple(name for name, at in due_at.items() if at is not None and at <= now)
        if due:
            # An admission may have carried some of them meanwhile: send only what is left.
            carried = zip(due, self._take_late(due, everything=True), strict=True)
            left = [(name, late) for name, late in carried if late.tickets or late.counts]
            if left:
                self._send_late([name for name, _ in left], [late for _, late in left])
        waiting = [at for name, at in due_at.items() if at is not None and name not in due]
        return max(min(waiting) - now, 0.0) if waiting else None

    def _send_late(self, names: Sequence[str], late: Sequence[Late]) -> bool:
        keys = [key for name in names for key in self._resource_keys[name]]
        argv: list[str | int | float] = [
            self._now_override(),
            len(names),
            self._rng.uniform(-1.0, 1.0),
        ]
        for name in names:
            argv.extend(self._argv[name])
        for carried in late:
            argv.extend(carried.args())
        try:
            reply = self._settle(keys=keys, args=argv)
        except RedisError as unavailable:
            # The leases expire on their own; the window misses these successes.
            _log.warning("outcomes_not_recorded", resources=list(names), error=str(unavailable))
            return False
        for name, transition in zip(names, reply, strict=True):
            if transition:
                self._on_transition(name, str(transition))
        return True

    def _transitions(
        self, names: Sequence[str], reply: list[object]
    ) -> tuple[tuple[str, str], ...]:
        transitions = tuple((name, str(t)) for name, t in zip(names, reply[1:], strict=True) if t)
        for name, transition in transitions:
            self._on_transition(name, transition)
        return transitions

    def flush(self) -> bool:
        """Settle every success recorded late, now (shutdown, tests); False if Redis did not
        take them."""
        with self._lock:
            names = tuple(name for name, tally in self._late.items() if not tally.empty)
        return self._send_late(names, self._take_late(names, everything=True)) if names else True

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

    def _on_transition(self, resource: str, transition: str) -> None:
        before, _, after = transition.partition(">")
        if after != "closed":
            self._drop_leases((resource,))
        log = _log.warning if after in ("open", "forced_open") else _log.info
        log("breaker_transition", resource=resource, from_state=before, to_state=after)
