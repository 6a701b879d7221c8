"""In-process latency of what a failing task computes: classify the exception, then decide.

``python -m bench.decision`` times ``trading_classifier().classify(exc)`` followed by
``decide(error, attempt, ...)`` (the two steps ``ResilientTask`` takes on every failure, without
its Redis writes and the retry publish) for a round-robin mix of foreign exceptions: a
``TimeoutError``, an HTTP 429 with ``Retry-After``, an HTTP 503 whose status and headers sit on a
``response`` (as requests/httpx carry them), a ``ConnectionResetError`` and a ``ValueError``.

Each sample is one classify + decide pair timed with ``time.perf_counter_ns``; the garbage
collector stays on, as in a worker. Prints p50, p99 and p99.9 in µs per exception and overall
as a Markdown table; exits 1 only on an error, never because the target is missed.
"""

from __future__ import annotations

import argparse
import errno
import gc
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from resilience.policy.resolver import Action, decide
from tasks.classification import trading_classifier

__all__ = ["Case", "cases", "main", "percentile"]

TARGET_P99_US = 50.0
MAX_COUNTDOWN_S = 1800.0
ATTEMPTS = (1, 2, 3)


class FakeHTTPError(Exception):
    """An HTTP client error with the status and headers on the exception (alpaca-py style)."""

    def __init__(self, status_code: int, headers: dict[str, str], body: str) -> None:
        super().__init__(f"{status_code} {body}")
        self.status_code = status_code
        self.headers = headers
        self.body = body


@dataclass(frozen=True, slots=True)
class FakeResponse:
    """The ``response`` a requests/httpx error carries."""

    status_code: int
    headers: dict[str, str]
    text: str


class FakeResponseError(Exception):
    """An HTTP client error whose status lives on ``.response`` (requests/httpx style)."""

    def __init__(self, response: FakeResponse) -> None:
        super().__init__(f"{response.status_code} Server Error")
        self.response = response


@dataclass(frozen=True, slots=True)
class Case:
    """One exception of the mix and the error class it must classify as."""

    label: str
    exc: BaseException
    expected: str


def cases() -> list[Case]:
    """The mix, in round-robin order."""
    return [
        Case("TimeoutError", TimeoutError("read timed out"), "TradingClientError"),
        Case(
            "HTTP 429 + Retry-After",
            FakeHTTPError(429, {"Retry-After": "2"}, '{"message": "too many requests"}'),
            "RateLimitError",
        ),
        Case(
            "HTTP 503 (on .response)",
            FakeResponseError(
                FakeResponse(503, {"Content-Type": "text/html"}, "Service Unavailable")
            ),
            "TradingClientError",
        ),
        Case(
            "ConnectionResetError",
            ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
            "TradingClientError",
        ),
        Case("ValueError", ValueError("qty must be positive"), "ValidationError"),
    ]


def percentile(sorted_ns: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, min(len(sorted_ns), round(fraction * len(sorted_ns) + 0.5)))
    return float(sorted_ns[rank - 1])


def _check(mix: list[Case]) -> None:
    """Fail loudly if the mix does not exercise the paths it claims to (a bench of nothing)."""
    classifier = trading_classifier()
    rng = random.Random(0)
    for case in mix:
        error = classifier.classify(case.exc)
        if error.error_type != case.expected:
            raise RuntimeError(
                f"{case.label} classified as {error.error_type}, not {case.expected}"
            )
        decision = decide(error, 1, now_s=time.time(), max_countdown_s=MAX_COUNTDOWN_S, rng=rng)
        if case.expected == "ValidationError" and decision.action is not Action.DEAD_LETTER:
            raise RuntimeError(f"{case.label}: expected a dead letter, got {decision}")


def measure(mix: list[Case], iterations: int, warmup: int) -> dict[str, list[int]]:
    """Samples in ns per case label, ``iterations`` in all after ``warmup`` untimed ones."""
    classifier = trading_classifier()
    classify: Callable[..., Any] = classifier.classify
    rng = random.Random(42)
    clock_ns = time.perf_counter_ns
    now = time.time
    samples: dict[str, list[int]] = {case.label: [] for case in mix}
    buckets = [samples[case.label] for case in mix]
    excs = [case.exc for case in mix]
    count = len(mix)
    for i in range(warmup):
        error = classify(excs[i % count])
        decide(error, ATTEMPTS[i % 3], now_s=now(), max_countdown_s=MAX_COUNTDOWN_S, rng=rng)
    for i in range(iterations):
        slot = i % count
        exc = excs[slot]
        attempt = ATTEMPTS[(i // count) % 3]
        start = clock_ns()
        error = classify(exc)
        decide(error, attempt, now_s=now(), max_countdown_s=MAX_COUNTDOWN_S, rng=rng)
        buckets[slot].append(clock_ns() - start)
    return samples


def timer_floor_ns(iterations: int = 100_000) -> float:
    """Median cost of two back-to-back ``perf_counter_ns`` calls (included in every sample)."""
    clock_ns = time.perf_counter_ns
    floor: list[int] = []
    for _ in range(iterations):
        start = clock_ns()
        floor.append(clock_ns() - start)
    return statistics.median(floor)


def render(samples: dict[str, list[int]], floor_ns: float, iterations: int, warmup: int) -> str:
    """The Markdown table: p50/p99/p99.9/max in µs per case and overall."""
    rows = [*samples.items(), ("**all**", [s for v in samples.values() for s in v])]
    lines = [
        "## Decision latency: classify + decide, in process",
        "",
        f"Python {platform.python_version()}, {platform.machine()}; "
        f"{iterations:,} samples after {warmup:,} warm-up; GC on; "
        f"timer floor {floor_ns:.0f} ns (included in every sample)",
        "",
        "| exception | samples | p50 µs | p99 µs | p99.9 µs | max µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    overall_p99 = 0.0
    for label, values in rows:
        ordered = sorted(values)
        p50, p99, p999 = (percentile(ordered, f) / 1000 for f in (0.50, 0.99, 0.999))
        lines.append(
            f"| {label} | {len(ordered):,} | {p50:.1f} | {p99:.1f} | {p999:.1f} "
            f"| {ordered[-1] / 1000:.0f} |"
        )
        overall_p99 = p99
    verdict = "meets" if overall_p99 < TARGET_P99_US else "MISSES"
    lines += ["", f"Overall p99 {overall_p99:.1f} µs {verdict} the target < {TARGET_P99_US:g} µs."]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.decision", description=__doc__)
    parser.add_argument("--iterations", type=int, default=200_000, help="timed samples (200000)")
    parser.add_argument("--warmup", type=int, default=20_000, help="untimed first calls (20000)")
    args = parser.parse_args(argv)
    if args.iterations < 1000 or args.warmup < 0:
        parser.error("--iterations must be at least 1000 and --warmup not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it measured, 1 when it could not."""
    args = _parse(argv)
    mix = cases()
    try:
        _check(mix)
        gc.collect()
        floor_ns = timer_floor_ns()
        samples = measure(mix, args.iterations, args.warmup)
    except Exception as failed:
        print(f"error: {type(failed).__name__}: {failed}", file=sys.stderr)
        return 1
    print(render(samples, floor_ns, args.iterations, args.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
