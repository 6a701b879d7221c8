"""Admission and outcome recording for guarded resources, one Redis round trip each.

Before a task's body runs, :meth:`Guard.admit` asks every resource it declares (breaker, rate
limiter, concurrency limit) in one script call; after, :meth:`Guard.record` returns the leases,
feeds the breaker and spends or refills the retry budget in one more. Decisions are taken in
Lua on Redis server time, so the fleet shares them and host clocks do not matter.

With ``record_successes_late``, a success (nobody waits for its answer) costs no round trip of
its own: it is tallied in the process and settled by the next admission of the same resource,
or by a background thread within a few milliseconds (:mod:`resilience.guard.settlement`).

A resource configured with a permit lease (``permit_lease``, opt-in) is asked for a batch of
admissions at once: the process spends them on its next runs without a round trip, for at
most the lease's ``ttl_s`` from when it asked, and drops what is left at a failure, a server's
Retry-After or a breaker leaving CLOSED (the weaker bounds this gives are on
:class:`resilience.guard.resources.PermitLeaseConfig`).

A breaker found OPEN is remembered in this process (by monotonic time, never the wall clock)
for at most ``open_cache_s``, so a fleet facing an open breaker does not ask Redis per task.
When Redis cannot be asked, each resource's ``fail_mode`` decides; every such decision is
logged and counted.
"""

from __future__ import annotations

import os
import random
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import structlog
from redis import Redis
from redis.exceptions import RedisError

from resilience.guard.answers import Admission, Outcome, Permit, RecordResult
from resilience.guard.degraded import WithoutRedis
from resilience.guard.leases import PermitLeases
from resilience.guard.open_cache import OpenCache
from resilience.guard.plans import Plans
from resilience.guard.resources import ResourceConfig, config_argv
from resilience.guard.settlement import Late, LateLedger, Settler, nobody_waits
from resilience.guard.wire import (
    AdmitReply,
    RecordReply,
    ResourceOutcome,
    admit_argv,
    record_argv,
    settle_argv,
    transitions_of,
)
from resilience.storage.clock import Clock
from resilience.storage.direct_script import DirectScript, NotSentError
from resilience.storage.keys import KeySpace
from resilience.storage.scripts import CLOCK_LIB, LuaFile, script_source

__all__ = ["Admission", "Guard", "Outcome", "Permit", "RecordResult", "RetryKind"]

_log = structlog.get_logger("alchemiser.guard")

LIBRARY = (CLOCK_LIB, LuaFile("resilience.guard", "guard_lib"))
RetryKind = Literal["retry", "timeout"]


def _script(client: Redis, name: str) -> DirectScript:
    return DirectScript(client, script_source("resilience.guard", name, library=LIBRARY))


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
        self._admit = _script(client, "guard_admit")
        self._record = _script(client, "guard_record")
        self._settle = _script(client, "guard_settle")
        self._argv = {name: config_argv(r) for name, r in self._resources.items()}
        self._resource_keys = {name: keys.resource(name) for name in self._resources}
        self._open = OpenCache(monotonic, open_cache_s)
        self._plans = Plans(self._resources, self._unguarded, self._resource_keys, self._argv)
        self._leases = PermitLeases(monotonic)
        # Successes Redis has not heard of yet, by resource (settled by the next admission of
        # the resource or by the settler thread).
        self._late = LateLedger(self._resources)
        self._settler = Settler(self._settle_due) if record_successes_late else None
        # A forked child must not settle its parent's runs a second time.
        forget = weakref.WeakMethod(self._forget_late)
        os.register_at_fork(after_in_child=lambda: (f := forget()) and f())
        self._without_redis = WithoutRedis(client, self._resources, self._resource_keys)

    @property
    def degraded_decisions(self) -> Counter[str]:
        """Decisions taken without Redis by this process ("<resource>:admitted|refused")."""
        return self._without_redis.decisions

    @property
    def resources(self) -> Mapping[str, ResourceConfig]:
        """Every resource with at least one protection on, by name."""
        return self._resources

    def configured(self, names: Sequence[str]) -> tuple[str, ...]:
        """The names among ``names`` that have a configuration (others are not guarded)."""
        return self._plans.configured(names)

    def _now_override(self) -> str:
        if self._server_clock is None:
            return ""
        return str(int(self._server_clock.now_s() * 1_000_000))

    def admit(self, names: Sequence[str], ticket: str | None = None) -> Admission:
        """Ask every configured resource in ``names`` to admit one run, all or nothing."""
        plan = self._plans.plan(names)
        names = plan.names
        ticket = ticket or uuid.uuid4().hex
        if not names:
            return Admission(admitted=True, ticket=ticket)
        cached = self._open.find(names)
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
            leased = self._leases.spend(names)
            if leased is not None:
                return leased
            want = self._leases.size(names, plan.permits, plan.lease_ttl_s)
        late = self._late.take(names)
        argv = admit_argv(
            now_override=self._now_override(),
            ticket=ticket,
            jitter=self._rng.uniform(-1.0, 1.0) if any(r.counts for r in late) else 0,
            want=want,
            configs=plan.configs,
            late=late,
        )
        asked_at = self._monotonic()
        try:
            reply = self._admit(keys=plan.keys, args=argv)
        except NotSentError as unavailable:
            self._late.give_back(names, late)
            return self._without_redis.decide(names, ticket, unavailable)
        except RedisError as unavailable:
            # The script may have run: leases can be given back twice, counts cannot.
            self._late.give_back(names, [Late(tickets=carried.tickets) for carried in late])
            return self._without_redis.decide(names, ticket, unavailable)
        self._without_redis.report()
        answer = AdmitReply.decode(reply, len(names))
        admission = self._admission(names, ticket, answer)
        granted = answer.granted
        if plan.permits > 1 and granted:
            self._leases.grant(names, admission, granted, asked_at=asked_at, ttl_s=plan.lease_ttl_s)
        return admission

    def _admission(self, names: Sequence[str], ticket: str, answer: AdmitReply) -> Admission:
        permits: list[Permit] = []
        for name, resource in zip(names, answer.resources, strict=True):
            permits.append(
                Permit(
                    resource=name,
                    generation=resource.generation,
                    state=resource.state,
                    probe=resource.probe,
                    remaining=resource.remaining,
                )
            )
            if resource.transition:
                self._on_transition(name, resource.transition)
        reason, refused_index = answer.reason, answer.refused_index
        refused_by = names[refused_index - 1] if refused_index else None
        retry_after_s = answer.retry_after_us / 1_000_000
        if refused_by is not None and reason.startswith("breaker"):
            self._leases.drop((refused_by,))
        if refused_by is not None and reason == "breaker open":
            self._open.remember(refused_by, retry_after_s)
        return Admission(
            admitted=answer.admitted,
            ticket=ticket,
            permits=tuple(permits),
            retry_after_s=retry_after_s if not answer.admitted else 0.0,
            refused_by=refused_by,
            reason=reason,
            at_us=answer.at_us,
        )

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
            self._leases.drop(admission.resources)
        if self._settler is not None and nobody_waits(admission, outcome, retry, push_us):
            self._late.add(admission, duration_s)
            self._settler.poke()
            return RecordResult(retry_allowed=True)
        names = admission.resources
        keys = [key for name in names for key in self._resource_keys[name]]
        duration_us = int(duration_s * 1_000_000)
        outcomes = []
        for permit in admission.permits:
            budget = self._resources[permit.resource].retry_budget
            cost = 0.0
            if budget is not None and retry is not None:
                cost = budget.timeout_cost if retry == "timeout" else budget.retry_cost
            outcomes.append(
                ResourceOutcome(
                    outcome=outcome.value,
                    duration_us=duration_us,
                    generation=permit.generation,
                    probe=permit.probe,
                    push_us=push_us,
                    retry_cost=cost,
                    success_refill=budget.success_refill if budget is not None else 0,
                )
            )
        argv = record_argv(
            now_override=self._now_override(),
            ticket=admission.ticket,
            jitter=self._rng.uniform(-1.0, 1.0),
            configs=[self._argv[name] for name in names],
            outcomes=outcomes,
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
        answer = RecordReply.decode(reply, len(names))
        return RecordResult(
            retry_allowed=answer.retry_allowed,
            transitions=self._transitions(names, answer.transitions),
        )

    def _forget_late(self) -> None:
        # In a forked child: the parent's tallies, leases and cached answers are the parent's,
        # and their locks may have been held by a thread that does not exist here.
        self._open.clear()
        self._late.forget()
        self._leases.forget()

    def _settle_due(self, now: float) -> float | None:
        """Settle every tally that is due (the settler thread); the seconds until the next one
        is due, or None when nothing is left."""
        due_at = self._late.due_at()
        due = tuple(name for name, at in due_at.items() if at is not None and at <= now)
        if due:
            # An admission may have carried some of them meanwhile: send only what is left.
            carried = zip(due, self._late.take(due, everything=True), strict=True)
            left = [(name, late) for name, late in carried if late.tickets or late.counts]
            if left:
                self._send_late([name for name, _ in left], [late for _, late in left])
        waiting = [at for name, at in due_at.items() if at is not None and name not in due]
        return max(min(waiting) - now, 0.0) if waiting else None

    def _send_late(self, names: Sequence[str], late: Sequence[Late]) -> bool:
        keys = [key for name in names for key in self._resource_keys[name]]
        argv = settle_argv(
            now_override=self._now_override(),
            jitter=self._rng.uniform(-1.0, 1.0),
            configs=[self._argv[name] for name in names],
            late=late,
        )
        try:
            reply = self._settle(keys=keys, args=argv)
        except RedisError as unavailable:
            # The leases expire on their own; the window misses these successes.
            _log.warning("outcomes_not_recorded", resources=list(names), error=str(unavailable))
            return False
        self._transitions(names, transitions_of(reply, len(names)))
        return True

    def _transitions(
        self, names: Sequence[str], transitions: Sequence[str]
    ) -> tuple[tuple[str, str], ...]:
        """Each resource's breaker transition, acted on; those that happened."""
        happened = tuple((n, t) for n, t in zip(names, transitions, strict=True) if t)
        for name, transition in happened:
            self._on_transition(name, transition)
        return happened

    def flush(self) -> bool:
        """Settle every success recorded late, now (shutdown, tests); False if Redis did not
        take them."""
        names = self._late.waiting()
        return self._send_late(names, self._late.take(names, everything=True)) if names else True

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
        self._open.clear()

    def _on_transition(self, resource: str, transition: str) -> None:
        before, _, after = transition.partition(">")
        if after != "closed":
            self._leases.drop((resource,))
        log = _log.warning if after in ("open", "forced_open") else _log.info
        log("breaker_transition", resource=resource, from_state=before, to_state=after)
