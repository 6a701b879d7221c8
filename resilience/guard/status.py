"""What the guards of each resource look like now, and the operator's levers on breakers.

Reads the data the guard scripts keep (resilience/guard/lua/guard_lib.lua) in one MULTI/EXEC per
call, so every figure of one answer is taken at the same moment of Redis server time (or of
an injected ``server_clock``, as :class:`resilience.guard.admission.Guard` takes). Operator actions
(force open, disable, reset) run guard_admin.lua: one audited transition each.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, cast

from redis import Redis
from redis.client import Pipeline

from resilience.errors import ConfigurationError
from resilience.guard.admission import LIBRARY
from resilience.guard.resources import PermitLeaseConfig, ResourceConfig, config_argv
from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace
from resilience.storage.scripts import register

__all__ = [
    "BreakerState",
    "BreakerStatus",
    "BudgetUsage",
    "ConcurrencyUsage",
    "GuardStatus",
    "LimitStatus",
    "RateUsage",
]

_AdminAction = Literal["force_open", "disable", "reset"]

_US = 1_000_000
# Reads queued per resource, so replies can be sliced back per resource.
_READS_PER_RESOURCE = 3
_LIMIT_READS_PER_RESOURCE = 4


class _ResourceKeys(NamedTuple):
    """The keys this module reads, named; KeySpace.resource gives them first, in this order
    (the scripts may take more after them)."""

    breaker: str
    window: str
    probes: str
    events: str
    rate: str
    leases: str
    budget: str
    stats: str


class BreakerState(enum.StrEnum):
    """The five states of a fleet-wide breaker (CONTRACT: ``breaker list``)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"  # isolated by an operator: refuses every call
    DISABLED = "disabled"  # bypassed by an operator: admits every call, records none


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """One breaker now; rates are percents over the live window (CLOSED state only)."""

    name: str
    state: BreakerState
    failure_rate: float
    slow_call_rate: float
    calls: int
    open_until: str | None  # ISO-8601 UTC, while OPEN
    generation: int
    probes_in_flight: int
    opened_count: int  # consecutive openings, which lengthen the wait in OPEN

    def to_dict(self) -> dict[str, Any]:
        """The row of ``breaker list --json``: the CONTRACT's keys first, then the rest."""
        return {
            "name": self.name,
            "state": self.state.value,
            "failure_rate": self.failure_rate,
            "calls": self.calls,
            "open_until": self.open_until,
            "slow_call_rate": self.slow_call_rate,
            "generation": self.generation,
            "probes_in_flight": self.probes_in_flight,
            "opened_count": self.opened_count,
        }


@dataclass(frozen=True, slots=True)
class RateUsage:
    """A GCRA limiter now: ``remaining`` units fit at once; the next run (``cost`` units) fits
    in ``next_allowed_in_s``."""

    rate: float
    period_s: float
    burst: int
    remaining: int
    next_allowed_in_s: float


@dataclass(frozen=True, slots=True)
class ConcurrencyUsage:
    """Unexpired leases against the fleet-wide limit."""

    limit: int
    in_use: int


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """Retry budget tokens now, time refill included."""

    capacity: float
    tokens: float


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """The limits of one resource now; a part is ``None`` when that protection is off."""

    name: str
    rate_limit: RateUsage | None
    concurrency: ConcurrencyUsage | None
    retry_budget: BudgetUsage | None
    # Runs admitted in batches to each worker process (None: every run asks Redis).
    permit_lease: PermitLeaseConfig | None = None
    # Admissions decided in Redis since the resource was first used: runs admitted (with a
    # permit lease: runs granted, whether spent or expired unused), and runs refused by reason
    # (refusals a worker answered from its local OPEN cache are not here).
    admitted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    # Decisions workers took by fail mode while Redis was unreachable (admitted / refused),
    # added once Redis answered again.
    without_redis: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The row of ``limits list --json``."""
        return asdict(self)


class GuardStatus:
    """Read-only view of every configured resource's guards, plus the breaker overrides."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        resources: Mapping[str, ResourceConfig],
        *,
        server_clock: Clock | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self._resources = dict(resources)
        self._server_clock = server_clock
        self._admin = register(client, "resilience.guard", "guard_admin", library=LIBRARY)

    def breakers(self) -> list[BreakerStatus]:
        """Every configured breaker, by name."""
        configs = [r for _, r in sorted(self._resources.items()) if r.breaker is not None]
        return self._breaker_statuses(configs)

    def breaker(self, name: str) -> BreakerStatus:
        """One breaker; :class:`ConfigurationError` for a name without one."""
        [status] = self._breaker_statuses([self._with_breaker(name)])
        return status

    def limits(self) -> list[LimitStatus]:
        """Every resource with a rate limit, concurrency limit, retry budget or permit lease, by
        name."""
        configs = [
            r
            for _, r in sorted(self._resources.items())
            if r.rate_limit or r.concurrency or r.retry_budget or r.permit_lease
        ]
        now_us, replies = self._snapshot(lambda pipe: self._queue_limits(pipe, configs))
        return [
            _limit_status(config, now_us, reads)
            for config, reads in zip(
                configs, _per_resource(replies, _LIMIT_READS_PER_RESOURCE), strict=True
            )
        ]

    def events(self, name: str, count: int = 20) -> list[dict[str, Any]]:
        """The breaker's last ``count`` transitions, newest last."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        events_key = self._resource_keys(self._with_breaker(name).name).events
        entries = cast(
            "list[tuple[str, dict[str, str]]]", self._client.xrevrange(events_key, count=count)
        )
        return [_event(entry_id, fields) for entry_id, fields in reversed(entries)]

    def force_open(self, name: str) -> str:
        """Isolate the resource: its breaker refuses every call until reset."""
        return self._act(name, "force_open")

    def disable(self, name: str) -> str:
        """Bypass the breaker: every call admitted, none recorded, until reset."""
        return self._act(name, "disable")

    def reset(self, name: str) -> str:
        """Back to CLOSED with a fresh window and no memory of earlier openings."""
        return self._act(name, "reset")

    def _act(self, name: str, action: _AdminAction) -> str:
        """Run one operator action; the transition ``"from>to"``, ``""`` if already there."""
        config = self._with_breaker(name)
        args: list[str | int | float] = [self._now_override(), action, *config_argv(config)]
        return str(self._admin(keys=list(self._keys.resource(name)), args=args))

    def _with_breaker(self, name: str) -> ResourceConfig:
        breakers = sorted(n for n, r in self._resources.items() if r.breaker is not None)
        known = ", ".join(breakers) or "none"
        config = self._resources.get(name)
        if config is None:
            raise ConfigurationError(f"no resource named {name!r}; breakers: {known}")
        if config.breaker is None:
            raise ConfigurationError(
                f"resource {name!r} has no breaker (configure "
                f'[resources."{name}".breaker] to give it one); breakers: {known}'
            )
        return config

    def _resource_keys(self, name: str) -> _ResourceKeys:
        return _ResourceKeys(*self._keys.resource(name)[: len(_ResourceKeys._fields)])

    def _now_override(self) -> str:
        # The scripts read Redis TIME when the override is empty (guard_lib.lua).
        if self._server_clock is None:
            return ""
        return str(int(self._server_clock.now_s() * _US))

    def _snapshot(self, queue: Callable[[Pipeline], None]) -> tuple[int, list[Any]]:
        """Now (µs) and the replies of the reads ``queue`` adds, in one MULTI/EXEC so every
        reply describes the same moment."""
        with self._client.pipeline(transaction=True) as pipe:
            pipe.time()
            queue(pipe)
            (seconds, micros), *replies = pipe.execute()
        override = self._now_override()
        return (int(override) if override else seconds * _US + micros), replies

    def _breaker_statuses(self, configs: Sequence[ResourceConfig]) -> list[BreakerStatus]:
        now_us, replies = self._snapshot(lambda pipe: self._queue_breakers(pipe, configs))
        return [
            _breaker_status(config, now_us, *reads)
            for config, reads in zip(configs, _per_resource(replies), strict=True)
        ]

    def _queue_breakers(self, pipe: Pipeline, configs: Sequence[ResourceConfig]) -> None:
        for config in configs:
            keys = self._resource_keys(config.name)
            pipe.hgetall(keys.breaker)
            pipe.hgetall(keys.window)
            pipe.zrange(keys.probes, 0, -1, withscores=True)

    def _queue_limits(self, pipe: Pipeline, configs: Sequence[ResourceConfig]) -> None:
        for config in configs:
            keys = self._resource_keys(config.name)
            pipe.get(keys.rate)
            pipe.zrange(keys.leases, 0, -1, withscores=True)
            pipe.hmget(keys.budget, ["tokens", "at"])
            pipe.hgetall(keys.stats)


def _per_resource(replies: Sequence[Any], step: int = _READS_PER_RESOURCE) -> list[Sequence[Any]]:
    """The replies cut back into each resource's reads."""
    return [replies[i : i + step] for i in range(0, len(replies), step)]


def _breaker_status(
    config: ResourceConfig,
    now_us: int,
    breaker: Mapping[str, str],
    window: Mapping[str, str],
    probes: Sequence[tuple[str, float]],
) -> BreakerStatus:
    assert config.breaker is not None  # only resources with a breaker get here
    state = BreakerState(breaker.get("state", BreakerState.CLOSED))
    open_until_us = int(breaker.get("open_until", 0))
    if state is BreakerState.OPEN and now_us >= open_until_us:
        # The wait is over; the next admission moves it to HALF_OPEN and takes a probe.
        state = BreakerState.HALF_OPEN
    calls, fails, slow = _live_window(window, now_us // _US, config.breaker.window_s)
    return BreakerStatus(
        name=config.name,
        state=state,
        failure_rate=_percent(fails, calls),
        slow_call_rate=_percent(slow, calls),
        calls=calls,
        open_until=_iso(open_until_us) if state is BreakerState.OPEN else None,
        generation=int(breaker.get("gen", 0)),
        probes_in_flight=_unexpired(probes, now_us),
        opened_count=int(breaker.get("opens", 0)),
    )


def _live_window(window: Mapping[str, str], now_s: int, window_s: int) -> tuple[int, int, int]:
    """Calls, failures and slow calls in the seconds (now_s - window_s, now_s].

    The stored totals slide only when a call is recorded, so they may still count seconds
    that have left the window; the buckets are summed instead. Bucket i holds the latest
    second s <= head with s % window_s == i.
    """
    if "head" not in window:
        return 0, 0, 0
    head = int(window["head"])
    calls = fails = slow = 0
    for i in range(window_s):
        second = head - (head - i) % window_s
        if now_s - window_s < second <= now_s:
            calls += int(window.get(f"c{i}", 0))
            fails += int(window.get(f"f{i}", 0))
            slow += int(window.get(f"s{i}", 0))
    return calls, fails, slow


def _limit_status(config: ResourceConfig, now_us: int, reads: Sequence[Any]) -> LimitStatus:
    """``reads``: the rate key's TAT, the leases, the budget's tokens and time, the stats."""
    tat, leases, budget, stats = reads
    rate = concurrency = retry_budget = None
    if (r := config.rate_limit) is not None:
        # GCRA (guard_lib.lua gcra_check): units fit while TAT - now <= (burst + 1) * T.
        backlog_us = max(int(tat or now_us), now_us) - now_us
        room_us = r.interval_us * (r.burst + 1) - backlog_us
        rate = RateUsage(
            rate=r.rate,
            period_s=r.period_s,
            burst=r.burst,
            remaining=max(room_us // r.interval_us, 0),
            next_allowed_in_s=max(r.interval_us * r.cost - room_us, 0) / _US,
        )
    if (c := config.concurrency) is not None:
        concurrency = ConcurrencyUsage(limit=c.limit, in_use=_unexpired(leases, now_us))
    if (g := config.retry_budget) is not None:
        # guard_lib.lua budget_tokens: refill since the last write, capped at capacity.
        tokens, at_us = budget
        stored = float(tokens) if tokens is not None else g.capacity
        elapsed_us = max(now_us - int(at_us or now_us), 0)
        retry_budget = BudgetUsage(
            capacity=g.capacity,
            tokens=min(g.capacity, stored + elapsed_us * g.refill_per_s / _US),
        )
    refused = {
        field_name.removeprefix("refused:"): int(count)
        for field_name, count in sorted(stats.items())
        if field_name.startswith("refused:")
    }
    return LimitStatus(
        config.name,
        rate,
        concurrency,
        retry_budget,
        permit_lease=config.permit_lease,
        admitted=int(stats.get("admitted", 0)),
        refused=refused,
        without_redis={
            name.removeprefix("without_redis:"): int(count)
            for name, count in sorted(stats.items())
            if name.startswith("without_redis:")
        },
    )


def _event(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    rate = fields.get("rate", "")
    return {
        "id": entry_id,
        "from": fields["from"],
        "to": fields["to"],
        "at": _iso(int(fields["at_us"])),
        "generation": int(fields["gen"]),
        "reason": fields["reason"],
        "rate": float(rate) if rate else None,
    }


def _unexpired(leases: Sequence[tuple[str, float]], now_us: int) -> int:
    # The scripts reclaim leases scored <= now; those still stored are not in use.
    return sum(1 for _, expires_us in leases if expires_us > now_us)


def _percent(part: int, whole: int) -> float:
    return part * 100 / whole if whole else 0.0


def _iso(epoch_us: int) -> str:
    # Integer arithmetic: a float of epoch microseconds would lose the last digits.
    at = datetime.fromtimestamp(epoch_us // _US, UTC) + timedelta(microseconds=epoch_us % _US)
    return at.isoformat(timespec="milliseconds")
