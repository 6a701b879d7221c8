"""What protects each named resource (e.g. ``mail.smtp``): breaker, rate limit, concurrency
limit and retry budget, and whether admissions may be leased to a worker in batches, as frozen
configuration. The application names its resources and their defaults.

A config file's tables override any field per resource (``[resources."mail.smtp".rate_limit]``,
:mod:`resilience.guard.resource_tables`); a section set to ``false`` turns that protection off.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

from resilience.errors import ConfigurationError

__all__ = [
    "BreakerConfig",
    "ConcurrencyConfig",
    "FailMode",
    "PermitLeaseConfig",
    "RateLimitConfig",
    "ResourceConfig",
    "RetryBudgetConfig",
    "config_argv",
]

FailMode = Literal["open", "closed"]

# Bound on the per-second buckets a breaker keeps (and scans when its window slides).
MAX_WINDOW_S = 3600


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(message)


def _integers(config: object, *names: str) -> None:
    """TOML gives true and 2.5 as happily as 2: refuse anything but a whole number."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{name} must be a whole number, not {value!r}")


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Resilience4j's time-based breaker, shared by every worker.

    It trips when, over the last ``window_s`` seconds, at least ``minimum_calls`` were recorded
    and the failure rate (or the rate of calls slower than ``slow_call_duration_s``) reaches
    its threshold (percent). It stays OPEN for ``wait_duration_in_open_s``, multiplied by
    ``wait_multiplier`` for each consecutive opening (up to ``max_wait_in_open_s``) and by a
    random factor within ``1 ± wait_jitter``; then ``permitted_calls_in_half_open`` probes are
    let through fleet-wide, each holding a lease that expires after ``probe_lease_s``.
    """

    window_s: int = 60
    minimum_calls: int = 20
    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    slow_call_duration_s: float = 10.0
    wait_duration_in_open_s: float = 30.0
    wait_multiplier: float = 1.0
    max_wait_in_open_s: float = 300.0
    wait_jitter: float = 0.1
    permitted_calls_in_half_open: int = 3
    probe_lease_s: float = 30.0

    def __post_init__(self) -> None:
        _integers(self, "window_s", "minimum_calls", "permitted_calls_in_half_open")
        _require(1 <= self.window_s <= MAX_WINDOW_S, f"window_s must be 1..{MAX_WINDOW_S}")
        _require(self.minimum_calls >= 1, "minimum_calls must be at least 1")
        _require(
            0 < self.failure_rate_threshold <= 100, "failure_rate_threshold must be in (0, 100]"
        )
        _require(
            0 <= self.slow_call_rate_threshold <= 100,
            "slow_call_rate_threshold must be in [0, 100] (0 turns slow-call tripping off)",
        )
        _require(self.slow_call_duration_s > 0, "slow_call_duration_s must be positive")
        _require(self.wait_duration_in_open_s > 0, "wait_duration_in_open_s must be positive")
        _require(self.wait_multiplier >= 1, "wait_multiplier must be at least 1")
        _require(
            self.max_wait_in_open_s >= self.wait_duration_in_open_s,
            "max_wait_in_open_s must be at least wait_duration_in_open_s",
        )
        _require(0 <= self.wait_jitter < 1, "wait_jitter must be in [0, 1)")
        _require(
            self.permitted_calls_in_half_open >= 1, "permitted_calls_in_half_open must be >= 1"
        )
        _require(self.probe_lease_s > 0, "probe_lease_s must be positive")


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """GCRA: ``rate`` admissions per ``period_s`` on average, ``burst`` more at once.

    In any interval of t seconds at most ``floor(t / T) + burst + 1`` are admitted, where
    T = period_s / rate. ``cost`` is what one task run takes (a run making several calls).
    """

    rate: float
    period_s: float = 1.0
    burst: int = 0
    cost: int = 1

    def __post_init__(self) -> None:
        _integers(self, "burst", "cost")
        _require(math.isfinite(self.rate) and self.rate > 0, "rate must be positive")
        _require(math.isfinite(self.period_s) and self.period_s > 0, "period_s must be positive")
        _require(self.burst >= 0, "burst must be >= 0")
        _require(1 <= self.cost <= self.burst + 1, "cost must be between 1 and burst + 1")
        _require(self.interval_us >= 1, "rate / period_s is finer than one microsecond")

    @property
    def interval_us(self) -> int:
        """T, the emission interval, in integer microseconds (GCRA's unit)."""
        return int(self.period_s / self.rate * 1_000_000)

    def max_in(self, interval_s: float) -> int:
        """The most admissions any interval of ``interval_s`` seconds can hold."""
        return math.floor(interval_s * 1_000_000 / self.interval_us) + self.burst + 1


@dataclass(frozen=True, slots=True)
class ConcurrencyConfig:
    """At most ``limit`` runs at once fleet-wide; a lease held longer than ``lease_s`` (its
    worker died) is reclaimed."""

    limit: int
    lease_s: float = 60.0

    def __post_init__(self) -> None:
        _integers(self, "limit")
        _require(self.limit >= 1, "limit must be at least 1")
        _require(self.lease_s > 0, "lease_s must be positive")


@dataclass(frozen=True, slots=True)
class PermitLeaseConfig:
    """Admissions leased to a worker process in batches (opt-in, off by default).

    One admission round trip takes up to ``permits`` admissions at once (the rate limiter
    charged for all of them, the breaker CLOSED); the process spends them on its next runs
    without asking Redis, for at most ``ttl_s`` after it asked. How many it asks for starts at
    one and doubles while each batch is spent and the next asked for within ``ttl_s``, and falls
    to what was spent when some expire, so a process that runs rarely asks for one at a time.

    What that costs in guarantees: in any interval of t seconds at most
    ``floor((t + ttl_s) / T) + burst + 1`` runs reach the API (instead of
    ``floor(t / T) + burst + 1``); after the breaker opens, a process may still run what it
    holds, at most ``permits - 1`` runs within ``ttl_s``; leftovers expire unused (the limiter
    counted them). A failure or a server's Retry-After drops the process's lease, half-open
    probes are never leased, and a resource with a concurrency limit cannot lease (every run
    must hold a slot). Meant for cheap, frequent calls (quotes), not orders.
    """

    permits: int = 10
    ttl_s: float = 0.25

    def __post_init__(self) -> None:
        _integers(self, "permits")
        _require(self.permits >= 2, "permits must be at least 2 (1 is no lease)")
        _require(
            math.isfinite(self.ttl_s) and 0 < self.ttl_s <= 60, "ttl_s must be in (0, 60] seconds"
        )


@dataclass(frozen=True, slots=True)
class RetryBudgetConfig:
    """The AWS SDK's retry quota, shared: a retry spends ``retry_cost`` tokens
    (``timeout_cost`` after a timeout), a success returns ``success_refill``, and tokens also
    refill at ``refill_per_s``; with too few tokens the failure is not retried."""

    capacity: float = 500.0
    retry_cost: float = 5.0
    timeout_cost: float = 10.0
    success_refill: float = 1.0
    refill_per_s: float = 0.5

    def __post_init__(self) -> None:
        _require(self.capacity > 0, "capacity must be positive")
        _require(
            0 < self.retry_cost <= self.capacity and 0 < self.timeout_cost <= self.capacity,
            "retry_cost and timeout_cost must be positive and at most capacity",
        )
        _require(self.success_refill >= 0, "success_refill must be >= 0")
        _require(self.refill_per_s >= 0, "refill_per_s must be >= 0")


@dataclass(frozen=True, slots=True)
class ResourceConfig:
    """Everything that guards one named resource; any part may be absent."""

    name: str
    breaker: BreakerConfig | None = None
    rate_limit: RateLimitConfig | None = None
    concurrency: ConcurrencyConfig | None = None
    retry_budget: RetryBudgetConfig | None = None
    permit_lease: PermitLeaseConfig | None = None
    # What admission does when Redis cannot be asked: let the call through, or defer it.
    fail_mode: FailMode = "open"
    fail_closed_retry_s: float = 5.0

    def __post_init__(self) -> None:
        _require(
            bool(self.name) and not any(c in self.name for c in " {}"),
            f"resource name must be non-empty without spaces or braces: {self.name!r}",
        )
        _require(self.fail_mode in ("open", "closed"), "fail_mode must be 'open' or 'closed'")
        _require(self.fail_closed_retry_s > 0, "fail_closed_retry_s must be positive")
        _require(
            self.permit_lease is None or self.concurrency is None,
            "permit_lease cannot be combined with concurrency: a leased run does not ask "
            "Redis, so the fleet could not count it against the limit",
        )


def config_argv(resource: ResourceConfig) -> list[str | int | float]:
    """The resource's configuration as the guard scripts read it (guard_lib.lua): its name and
    its numbers in one JSON array (Lua's cjson decodes it several times faster than it can
    parse the numbers one by one)."""
    b, r, c, g = resource.breaker, resource.rate_limit, resource.concurrency, resource.retry_budget
    numbers: list[int | float] = [
        *(
            (
                1,
                b.window_s,
                b.minimum_calls,
                b.failure_rate_threshold,
                b.slow_call_rate_threshold,
                _us(b.slow_call_duration_s),
                _us(b.wait_duration_in_open_s),
                b.wait_multiplier,
                _us(b.max_wait_in_open_s),
                b.permitted_calls_in_half_open,
                _us(b.probe_lease_s),
            )
            if b
            else (0, 1, 1, 100, 0, 0, 0, 1, 0, 1, 0)
        ),
        *((1, r.interval_us, r.burst, r.cost) if r else (0, 1, 0, 1)),
        *((1, c.limit, _us(c.lease_s)) if c else (0, 0, 0)),
        *((1, g.capacity, g.refill_per_s) if g else (0, 0, 0)),
        b.wait_jitter if b else 0,
    ]
    return [resource.name, json.dumps(numbers, separators=(",", ":"))]


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)
