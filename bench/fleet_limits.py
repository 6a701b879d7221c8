"""A fleet-wide rate limit measured where it matters: at the API.

``python -m bench.fleet_limits`` starts a fake Alpaca API on loopback (tests/fakes, which logs
every request's arrival) and, in turn, two fleets of ``--workers`` real worker processes
(``celery -A bench.guardapp worker -c 1``), each draining ``--calls`` tasks that make one API
call apiece:

- Alchemiser: ``guard.limited_call``, admitted by the shared GCRA limiter of ``guard.limited``
  (``--rate`` per ``--period`` s, ``--burst``);
- Celery: ``guard.celery_limited_call`` with Celery's ``rate_limit`` set to the same rate,
  which Celery enforces per worker, so the fleet's sum is workers x rate.

For each it reports the most requests the API saw in any window of one period (half-open,
from the server's log) against the limit ``rate x period + burst``, and the utilisation: calls
over the most the limiter could admit in the run's span. Prints a Markdown table.
``--lease PERMITS:TTL_S`` gives Alchemiser's resource a permit lease: admissions are then
counted by the time of their grant, and the API may see up to the bound over one period plus
TTL_S.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.guardapp import (
    ADMITTED_AT_HEADER,
    CELERY_LIMITED_TASK,
    GUARD_QUEUE,
    LIMITED_RESOURCE,
    LIMITED_TASK,
)
from bench.guardapp import build_app as build_guard_app
from bench.throughput import cleanup
from resilience.storage.connection import connect
from tests.fakes.alpaca_api import FakeAlpacaAPI, RequestRecord
from worker.fleet import WorkerProcess, start_worker, wait_until_ready
from worker.settings import Settings

__all__ = ["RateRun", "max_in_window", "run_rate_scenario"]

Kind = Literal["alchemiser", "celery"]


def max_in_window(times: Sequence[float], window_s: float) -> int:
    """The most of ``times`` inside any half-open window ``[t, t + window_s)``.

    Sorted first: calls arrive in another order than they were admitted (and threads log
    arrivals a hair out of order), and a sliding window over unsorted times miscounts."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass(frozen=True, slots=True)
class RateRun:
    """What the API saw during one fleet's run."""

    kind: Kind
    workers: int
    calls: int
    rate: float
    period_s: float
    burst: int
    arrivals: tuple[float, ...]
    # Redis time (s) each call was admitted, from the call's X-Admitted-At-Us header; empty for
    # Celery's fleet, which has no admission. With a permit lease, the time of the grant.
    admissions: tuple[float, ...] = ()
    lease_ttl_s: float = 0.0  # the resource's permit lease (0: none)

    @property
    def limit(self) -> int:
        """The most one period may hold: rate x period + burst."""
        return math.floor(self.rate * self.period_s) + self.burst

    def limit_over(self, window_s: float) -> int:
        """The most admissions any half-open window of ``window_s`` may hold: ceil(window / T)
        + burst (equal to :attr:`limit` for one period)."""
        return math.ceil(round(window_s * self.rate / self.period_s, 9)) + self.burst

    @property
    def max_per_period(self) -> int:
        """The most calls the API saw arrive in any window of one period."""
        return max_in_window(self.arrivals, self.period_s)

    @property
    def max_admitted_per_period(self) -> int | None:
        """The most calls admitted in any window of one period (by admission time)."""
        return max_in_window(self.admissions, self.period_s) if self.admissions else None

    @property
    def delay_spread_s(self) -> float | None:
        """Spread of admission-to-arrival delays: how far arrival jitter can crowd a window.

        Arrival (monotonic) and admission (Redis time) clocks differ by a constant, which the
        spread (max - min of arrival - admission) cancels."""
        if not self.admissions:
            return None
        delays = [a - b for a, b in zip(self.arrivals, self.admissions, strict=True)]
        return max(delays) - min(delays)

    @property
    def span_s(self) -> float:
        """First to last arrival."""
        return self.arrivals[-1] - self.arrivals[0] if self.arrivals else 0.0

    @property
    def utilisation(self) -> float:
        """Calls over the most the limit admits in the run's span (1.0 = saturated), by
        admission time where known."""
        times = self.admissions or self.arrivals
        interval_s = self.period_s / self.rate
        possible = math.floor((times[-1] - times[0]) / interval_s) + self.burst + 1
        return len(times) / possible

    def row(self) -> str:
        """One Markdown table row."""
        admitted = self.max_admitted_per_period
        spread = self.delay_spread_s
        return (
            f"| {self.kind} | {self.workers} | {self.calls} | {self.rate:g}/{self.period_s:g}s"
            f" +{self.burst} | {self.limit} | {'-' if admitted is None else admitted} |"
            f" {self.max_per_period} | {'-' if spread is None else f'{spread * 1000:.0f}'} |"
            f" {self.span_s:.2f} | {len(self.arrivals) / self.span_s if self.span_s else 0:.1f} |"
            f" {self.utilisation:.3f} |"
        )


TABLE_HEADER = (
    "| fleet | worker processes | calls | limit | max allowed per period"
    " | max admitted per period | max arrived per period | arrival jitter (ms)"
    " | span (s) | calls/s | utilisation |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def run_rate_scenario(
    kind: Kind,
    *,
    redis_url: str,
    api_url: str,
    log: Callable[[], list[RequestRecord]],
    calls: int = 2000,
    workers: int = 4,
    rate: float = 100.0,
    period_s: float = 1.0,
    burst: int = 5,
    log_dir: Path | None = None,
    timeout_s: float = 180.0,
    lease: tuple[int, float] | None = None,
) -> RateRun:
    """Run one fleet against the API; ``log`` reads the API's request log, which must be empty
    at the start. ``lease``: (permits, ttl_s) of a permit lease on the limited resource."""
    namespace = f"bench-limits-{uuid.uuid4().hex[:8]}"
    limited: dict[str, object] = {
        "rate_limit": {"rate": rate, "period_s": period_s, "burst": burst}
    }
    if lease is not None:
        limited["permit_lease"] = {"permits": lease[0], "ttl_s": lease[1]}
    resources = {LIMITED_RESOURCE: limited}
    env = {
        "ALCHEMISER_REDIS_URL": redis_url,
        "ALCHEMISER_NAMESPACE": namespace,
        "ALCHEMISER_RESOURCES": json.dumps(resources),
        "ALCHEMISER_LOG_LEVEL": "WARNING",
        "GUARD_CELERY_RATE_LIMIT": f"{rate * period_s:g}/{_celery_unit(period_s)}",
    }
    settings = Settings(redis_url=redis_url, namespace=namespace, resources=resources)
    app = build_guard_app(settings)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="alchemiser-limits-"))
    fleet: list[WorkerProcess] = []
    try:
        fleet = [
            start_worker(
                env,
                log_dir,
                concurrency=1,
                queues=GUARD_QUEUE,
                app="bench.guardapp",
                name=f"{kind}{i}",
            )
            for i in range(workers)
        ]
        wait_until_ready(app, fleet, timeout_s=60.0)
        task = LIMITED_TASK if kind == "alchemiser" else CELERY_LIMITED_TASK
        with app.producer_or_acquire() as producer:
            for _ in range(calls):
                app.send_task(task, args=(api_url,), producer=producer)
        deadline = time.monotonic() + timeout_s
        while len(records := log()) < calls:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: only {len(records)} of {calls} calls arrived")
            time.sleep(0.1)
        admitted = [r.headers.get(ADMITTED_AT_HEADER.lower()) for r in records]
        return RateRun(
            kind,
            workers,
            calls,
            rate,
            period_s,
            burst,
            arrivals=tuple(r.monotonic_s for r in records),
            admissions=(tuple(int(a) / 1_000_000 for a in admitted if a) if all(admitted) else ()),
            lease_ttl_s=lease[1] if lease is not None else 0.0,
        )
    finally:
        for worker in fleet:
            worker.stop()
        cleanup(connect(redis_url), namespace)


def _celery_unit(period_s: float) -> str:
    units = {1.0: "s", 60.0: "m", 3600.0: "h"}
    if period_s not in units:
        raise ValueError("Celery's rate_limit takes a period of 1 s, 60 s or 3600 s")
    return units[period_s]


def main(argv: list[str] | None = None) -> None:
    """Run both fleets against one fake API and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--period", type=float, default=1.0)
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument(
        "--lease",
        metavar="PERMITS:TTL_S",
        help="Alchemiser's fleet leases PERMITS admissions per round trip, spent within TTL_S",
    )
    options = parser.parse_args(argv)
    lease = None
    if options.lease:
        permits, _, ttl_s = options.lease.partition(":")
        lease = (int(permits), float(ttl_s))
    runs: list[RateRun] = []
    with FakeAlpacaAPI(enforce_rate_limit=False) as api:
        for kind in ("alchemiser", "celery"):
            api.clear_log()
            runs.append(
                run_rate_scenario(
                    kind,
                    redis_url=options.redis_url,
                    api_url=api.url,
                    log=lambda: api.requests,
                    calls=options.calls,
                    workers=options.workers,
                    rate=options.rate,
                    period_s=options.period,
                    burst=options.burst,
                    lease=lease if kind == "alchemiser" else None,
                )
            )
    print(TABLE_HEADER)
    for run in runs:
        print(run.row())
    if lease is not None:
        ours = runs[0]
        spread = ours.delay_spread_s or 0.0
        print(
            f"\nLeased ({lease[0]} permits, {lease[1]:g} s): {len(set(ours.admissions))} grants"
            f" for {ours.calls} calls; the loosened bound over one period is"
            f" {ours.limit_over(ours.period_s + lease[1])}, over one period plus the arrival"
            f" spread {ours.limit_over(ours.period_s + spread)}."
        )


if __name__ == "__main__":
    main()
