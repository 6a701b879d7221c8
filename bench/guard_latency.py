"""Per-check latency of Alchemiser's guard against pybreaker and ``limits``, on one Redis.

``python -m bench.guard_latency`` times, in one process against the configured Redis
(``ALCHEMISER_REDIS_URL``, default ``redis://127.0.0.1:6379/0``), what one check costs:

- Alchemiser's breaker: ``Guard.admit`` + ``Guard.record(OK)`` on a resource with only a
  breaker (closed), i.e. what a guarded call pays, and ``Guard.admit`` alone;
- pybreaker 1.4 with ``CircuitRedisStorage``: ``breaker.call(noop)`` on a closed breaker (on a
  client without ``decode_responses``, which pybreaker's storage cannot read);
- Alchemiser's rate limiter (GCRA): admit + record on a resource with only a rate limit set
  high enough never to refuse, and admit alone;
- ``limits``: ``MovingWindowRateLimiter.hit`` and, for reference, ``FixedWindowRateLimiter.hit``
  on ``limits.storage.RedisStorage``;
- Alchemiser with breaker + rate limit + concurrency limit on one resource (what the throughput
  benchmark's guarded task declares): admit + record;
- ``EVALSHA`` of a script that does nothing, with ``limits``' payload (1 key, 4 args) and with
  an admit's (8 keys and 26 args: the resource's whole configuration), the transport floor of
  each;
- a ``PING``, the unit every figure is also given in.

Each case warms up, then the cases run interleaved: every round runs ``--iterations`` checks of
each case, in an order that rotates and reverses from round to round, so drift in a shared
machine hits every case alike. One ``time.perf_counter_ns`` sample per check.

A separate counting phase (before the timing, on clients whose connections count what they
send) gives each case's round trips and commands per check, and ``INFO commandstats`` deltas
over the same checks give the server's side: calls and the µs Redis spent per check (median of
five chunks). Other clients' commands of the same name count too, so on a shared Redis the
server-side figures are upper bounds; the table says when that happened.

Every key lives under a private prefix (``guardbench-<random>:``) and is deleted at the end.
Prints Markdown; exits 1 when it could not measure (Redis unreachable, a check refused).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from importlib.util import find_spec
from typing import Any, ClassVar

import pybreaker
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from redis import ConnectionPool, Redis
from redis.backoff import ExponentialBackoff
from redis.connection import Connection
from redis.retry import Retry

from resilience.guard.admission import Guard, Outcome
from resilience.guard.resources import (
    BreakerConfig,
    ConcurrencyConfig,
    RateLimitConfig,
    ResourceConfig,
    config_argv,
)
from resilience.storage.keys import KeySpace

__all__ = ["Case", "CaseResult", "main"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SOCKET_TIMEOUT_S = 1.0  # what resilience.storage.connection.connect gives every Alchemiser client
SCAN_COUNT = 500
COUNT_CHUNKS = 5
# "Never refuses": one unit per µs with a burst of 1000 (Alchemiser), a million per second
# (limits). The checks run at a few thousand per second.
RATE_PER_S = 1_000_000
BURST = 1000

BREAKER = "bench.breaker"
RATE = "bench.rate"
ALL_THREE = "bench.all"


class BenchError(RuntimeError):
    """The benchmark could not measure (Redis failed, a check was refused)."""


# --- counting what a client sends -----------------------------------------------------------


class Tally:
    """Round trips (packets sent) and commands by name, across every counting connection."""

    round_trips: ClassVar[int] = 0
    commands: ClassVar[Counter[str]] = Counter()

    @classmethod
    def reset(cls) -> None:
        """Start counting from zero."""
        cls.round_trips = 0
        cls.commands = Counter()

    @classmethod
    def add(cls, names: Iterable[object]) -> None:
        """Count one round trip carrying the commands ``names``."""
        cls.round_trips += 1
        for name in names:
            text = name.decode() if isinstance(name, bytes) else str(name)
            cls.commands[text.split(" ", 1)[0].upper()] += 1


class CountingConnection(Connection):
    """A redis-py connection that tallies each send: one command sent alone is one round trip,
    and so is a whole pipeline (its commands go out packed together). Every send, the client's
    and the guard's own (resilience.storage.direct_script), ends in ``send_packed_command``."""

    # redis-py leaves it untyped.
    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, (str, bytes)) else command
        data = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        Tally.add(_COMMAND_NAME.findall(data))
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


# The name that opens each RESP command: *<argc> CRLF $<len> CRLF <NAME> CRLF.
_COMMAND_NAME = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.2, base=0.02), 2)


def redis_client(url: str, *, decode: bool, counting: bool = False) -> Redis:
    """A client with Alchemiser's timeouts and retry policy; ``counting`` tallies its sends."""
    pool = ConnectionPool.from_url(
        url,
        decode_responses=decode,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        retry=_retry(),
        health_check_interval=30,
        **({"connection_class": CountingConnection} if counting else {}),
    )
    return Redis(connection_pool=pool)


# --- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One kind of check: ``check()`` runs one and says whether it was admitted; ``finish()``
    sends what it left for later (successes recorded late), before the keys are deleted."""

    name: str
    check: Callable[[], bool]
    finish: Callable[[], object] = field(default=lambda: None)


@dataclass(slots=True)
class CaseResult:
    """Samples (ns) and counts of one case."""

    name: str
    samples_ns: list[int] = field(default_factory=list)
    refused: int = 0
    round_trips: float = 0.0
    commands: dict[str, float] = field(default_factory=dict)
    server_calls: float = 0.0
    server_us: float = 0.0

    def quantile_us(self, q: float) -> float:
        """Nearest-rank quantile in µs."""
        ordered = sorted(self.samples_ns)
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1] / 1000

    @property
    def median_us(self) -> float:
        """The median in µs."""
        return statistics.median(self.samples_ns) / 1000


def _resources() -> dict[str, ResourceConfig]:
    rate = RateLimitConfig(rate=RATE_PER_S, period_s=1.0, burst=BURST)
    return {
        BREAKER: ResourceConfig(name=BREAKER, breaker=BreakerConfig()),
        RATE: ResourceConfig(name=RATE, rate_limit=rate),
        ALL_THREE: ResourceConfig(
            name=ALL_THREE,
            breaker=BreakerConfig(minimum_calls=1000),
            rate_limit=rate,
            concurrency=ConcurrencyConfig(limit=1000),
        ),
    }


def build_cases(url: str, prefix: str, *, counting: bool) -> list[Case]:
    """Every case on its own clients (counting ones for the counting phase)."""
    decoded = redis_client(url, decode=True, counting=counting)
    raw = redis_client(url, decode=False, counting=counting)
    guard = Guard(decoded, KeySpace(prefix), _resources())
    # As workers run it: a success's record rides on the next admission.
    late = Guard(decoded, KeySpace(prefix), _resources(), record_successes_late=True)
    tickets = (f"t{n}" for n in itertools.count())

    def admit_record(names: tuple[str, ...], on: Guard = guard) -> Callable[[], bool]:
        def check() -> bool:
            admission = on.admit(names, next(tickets))
            on.record(admission, Outcome.OK, duration_s=0.0)
            return admission.admitted

        return check

    def admit_only(names: tuple[str, ...]) -> Callable[[], bool]:
        def check() -> bool:
            return guard.admit(names, next(tickets)).admitted

        return check

    # pybreaker keeps its state as <namespace>:pybreaker:<field>.
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, raw, namespace=prefix)
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60, state_storage=storage)

    def pybreaker_call() -> bool:
        breaker.call(lambda: None)
        return True

    limits_storage = RedisStorage(
        url, connection_pool=raw.connection_pool, key_prefix=f"{prefix}:limits"
    )
    item = RateLimitItemPerSecond(RATE_PER_S)
    moving = MovingWindowRateLimiter(limits_storage)
    fixed = FixedWindowRateLimiter(limits_storage)

    def ping() -> bool:
        return bool(decoded.ping())

    # The transport alone: a script that does nothing, called with limits' payload (1 key,
    # 4 args) and with an admit's (8 keys, 3 + 23 args: the resource's whole configuration).
    nothing = decoded.register_script("return 1")
    admit_keys = list(KeySpace(prefix).resource(BREAKER))
    admit_args = ["", "t", 1, 0, *config_argv(_resources()[BREAKER]), "", 0]

    def floor_small() -> bool:
        return bool(nothing(keys=[f"{prefix}:floor"], args=[1.5, 1_000_000, 1, 1]))

    def floor_admit_sized() -> bool:
        return bool(nothing(keys=admit_keys, args=admit_args))

    return [
        Case("PING (baseline)", ping),
        Case("Alchemiser breaker: admit + record", admit_record((BREAKER,))),
        Case("Alchemiser breaker: admit", admit_only((BREAKER,))),
        Case("pybreaker + CircuitRedisStorage: call", pybreaker_call),
        Case("Alchemiser rate limit: admit + record", admit_record((RATE,))),
        Case("Alchemiser rate limit: admit", admit_only((RATE,))),
        Case("limits moving window: hit", lambda: moving.hit(item, "moving")),
        Case("limits fixed window: hit", lambda: fixed.hit(item, "fixed")),
        Case("Alchemiser breaker + rate + concurrency: admit + record", admit_record((ALL_THREE,))),
        Case(
            "Alchemiser breaker + rate + concurrency: admit + late record (as workers run)",
            admit_record((ALL_THREE,), late),
            finish=late.flush,
        ),
        Case("EVALSHA `return 1`, 1 key + 4 args (limits' payload)", floor_small),
        Case(
            f"EVALSHA `return 1`, {len(admit_keys)} keys + {len(admit_args)} args"
            " (an admit's payload)",
            floor_admit_sized,
        ),
    ]


# --- measuring ------------------------------------------------------------------------------


def _server_stats(client: Redis) -> dict[str, tuple[int, int]]:
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_").split("|", 1)[0].upper(): (int(s["calls"]), int(s["usec"]))
        for name, s in stats.items()
    }


def count_round_trips(
    url: str, cases: Sequence[Case], results: dict[str, CaseResult], n: int
) -> None:
    """Per case: round trips and commands sent per check (client side), and the calls and
    Redis µs per check of those commands (``INFO commandstats`` deltas).

    The ``n`` checks run in ``COUNT_CHUNKS`` chunks and the server figures are the chunks'
    medians, so one chunk in which Redis was descheduled, or other clients sent the same
    commands, does not set the figure.
    """
    observer = redis_client(url, decode=True)
    chunk = max(1, n // COUNT_CHUNKS)
    try:
        for case in cases:
            for _ in range(20):  # connection handshake, script loading
                case.check()
            Tally.reset()
            calls: list[float] = []
            usecs: list[float] = []
            for _ in range(COUNT_CHUNKS):
                before = _server_stats(observer)
                sent_before = Counter(Tally.commands)
                for _ in range(chunk):
                    case.check()
                after = _server_stats(observer)
                # Only the commands the client sent: a script's own calls are counted (and
                # timed) inside its EVALSHA as well as under their own names.
                delta = [
                    (after[c][0] - before.get(c, (0, 0))[0], after[c][1] - before.get(c, (0, 0))[1])
                    for c in Tally.commands - sent_before
                    if c in after
                ]
                calls.append(sum(d for d, _ in delta) / chunk)
                usecs.append(sum(u for _, u in delta) / chunk)
            total = chunk * COUNT_CHUNKS
            result = results[case.name]
            result.round_trips = Tally.round_trips / total
            result.commands = {name: count / total for name, count in Tally.commands.items()}
            result.server_calls = statistics.median(calls)
            result.server_us = statistics.median(usecs)
    finally:
        observer.close()


def _run(case: Case, result: CaseResult, n: int) -> None:
    clock = time.perf_counter_ns
    check = case.check
    samples = result.samples_ns
    refused = 0
    for _ in range(n):
        start = clock()
        admitted = check()
        samples.append(clock() - start)
        if not admitted:
            refused += 1
    result.refused += refused


def measure(
    cases: Sequence[Case],
    results: dict[str, CaseResult],
    *,
    rounds: int,
    iterations: int,
    warmup: int,
) -> None:
    """Warm every case up, then ``rounds`` interleaved rounds of ``iterations`` checks each."""
    for case in cases:
        for _ in range(warmup):
            case.check()
    for number in range(rounds):
        shift = number % len(cases)
        order = [*cases[shift:], *cases[:shift]]
        if number % 2:
            order.reverse()
        for case in order:
            _run(case, results[case.name], iterations)


# --- reporting ------------------------------------------------------------------------------


def machine(client: Redis) -> str:
    """One line naming what the figures were measured on."""
    server = client.info("server")
    parser = "hiredis" if find_spec("hiredis") else "no hiredis"
    return (
        f"nproc {os.cpu_count()}, redis-server {server.get('redis_version')}, "
        f"Python {platform.python_version()}, redis-py {version('redis')} ({parser}), "
        f"pybreaker {version('pybreaker')}, limits {version('limits')}"
    )


def _commands(result: CaseResult) -> str:
    return ", ".join(
        f"{name} {count:g}"
        for name, count in sorted(result.commands.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def render(results: Sequence[CaseResult], *, rounds: int, iterations: int, counted: int) -> str:
    """The two Markdown tables: latency, then what each check sends to Redis."""
    ping = results[0]
    ping_us = ping.median_us
    lines = [
        f"### Latency per check: {rounds} interleaved rounds x {iterations:,} checks per case",
        "",
        "| check | checks | median µs | p90 µs | p99 µs | median in PINGs | round trips |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {len(r.samples_ns):,} | {r.median_us:.1f} | {r.quantile_us(0.90):.1f}"
            f" | {r.quantile_us(0.99):.1f} | {r.median_us / ping_us:.2f} | {r.round_trips:g} |"
        )
    lines += [
        "",
        f"### What one check sends to Redis ({counted:,} checks per case, counted apart)",
        "",
        "| check | round trips | commands sent (per check) | server calls | Redis µs |",
        "|---|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.round_trips:g} | {_commands(r)} | {r.server_calls:.2f}"
            f" | {r.server_us:.1f} |"
        )
    foreign = [r.name for r in results if r.server_calls > sum(r.commands.values()) + 0.005]
    lines += [
        "",
        "Round trips and commands are counted on the client; server calls and Redis µs (time"
        " Redis spent executing them, scripts' inner commands included) are `INFO commandstats`"
        " deltas of the same commands, so other clients' commands of the same names count too:"
        " the server columns are upper bounds on a shared Redis.",
        "",
    ]
    if foreign:
        lines += [
            f"Other clients' commands fell into {len(foreign)} of these windows (server calls"
            " above the commands sent); for clean server figures run it against a Redis of its"
            " own (`ALCHEMISER_REDIS_URL`).",
            "",
        ]
    return "\n".join(lines)


def cleanup(client: Redis, prefix: str) -> int:
    """Delete every key under ``<prefix>:``; how many went."""
    deleted = 0
    batch: list[str] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            deleted += int(client.delete(*batch))
            batch.clear()
    if batch:
        deleted += int(client.delete(*batch))
    return deleted


def _check_admitted(client: Redis, prefix: str, results: Sequence[CaseResult]) -> None:
    refused = {r.name: r.refused for r in results if r.refused}
    if refused:
        raise BenchError(f"checks were refused (the figures would time refusals): {refused}")
    keys = KeySpace(prefix)
    for name in (BREAKER, RATE, ALL_THREE):
        stats = {str(f): str(v) for f, v in client.hgetall(keys.resource(name)[7]).items()}
        if int(stats.get("admitted", 0)) == 0 or any(f.startswith("refused") for f in stats):
            raise BenchError(f"{name}: unexpected admission counters {stats}")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.guard_latency", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (10)")
    parser.add_argument(
        "--iterations", type=int, default=600, help="checks per case per round (600)"
    )
    parser.add_argument("--warmup", type=int, default=500, help="untimed checks per case (500)")
    parser.add_argument(
        "--count", type=int, default=1000, help="checks per case in the counting phase (1000)"
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.iterations, args.count) < 1 or args.warmup < 0:
        parser.error("--rounds, --iterations and --count must be at least 1, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it measured, 1 when it could not."""
    args = _parse(argv)
    url = os.environ.get("ALCHEMISER_REDIS_URL", DEFAULT_REDIS_URL)
    prefix = f"guardbench-{uuid.uuid4().hex[:10]}"
    admin = redis_client(url, decode=True)
    started = time.monotonic()
    built: list[Case] = []
    try:
        print("## Guard latency: Alchemiser vs pybreaker and limits, per check\n")
        print(f"{machine(admin)}; GC on; prefix `{prefix}`\n", flush=True)
        counting_cases = build_cases(url, prefix, counting=True)
        built.extend(counting_cases)
        results = {case.name: CaseResult(case.name) for case in counting_cases}
        count_round_trips(url, counting_cases, results, args.count)
        cases = build_cases(url, prefix, counting=False)
        built.extend(cases)
        measure(cases, results, rounds=args.rounds, iterations=args.iterations, warmup=args.warmup)
        ordered = [results[case.name] for case in cases]
        _check_admitted(admin, prefix, ordered)
        print(render(ordered, rounds=args.rounds, iterations=args.iterations, counted=args.count))
        print(f"Total run time {time.monotonic() - started:.0f} s.")
        return 0
    except BenchError as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    except Exception as failed:  # Redis down, a library's surprise: say so without a traceback
        print(f"error: {type(failed).__name__}: {failed}", file=sys.stderr)
        return 1
    finally:
        for case in built:
            case.finish()
        try:
            cleanup(admin, prefix)
        except Exception as failed:
            print(f"warning: could not delete {prefix}:* keys: {failed!r}", file=sys.stderr)
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
