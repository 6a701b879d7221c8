"""End-to-end throughput of a no-op ``ResilientTask`` against a plain Celery task.

``python -m bench.throughput`` starts a real ``celery -A bench.benchapp worker -Q bench`` in a
private namespace on the configured Redis (``ALCHEMISER_REDIS_URL``), then runs interleaved
rounds: in each round both tasks drain ``--tasks`` messages each, in alternating order (ABBA),
and the round's figure is the ratio resilient/plain. The machine is shared and noisy (±7 %
run to run, FIELD-NOTES), so only ratios taken in the same run are compared.

One batch: with the worker's consumer of ``bench`` cancelled, enqueue N messages (kombu's
pipelined ``Producer.batch()``), check they are all in the queue, start the consumer again and
poll the completion counter both task bodies ``INCR``. The rate is the completions counted
between the first and the last poll that saw progress, divided by the time between them, so
neither enqueueing nor the control round trip is timed.

A second, quiet figure comes from inside one process: Celery's own tracer (what a worker runs
per message, without the broker) calls each task ``TRACER_CALLS`` times with a no-op body, so the
µs ``ResilientTask`` adds per task can be read without the end-to-end noise. ``--aa`` replaces
the resilient task by the plain one (an A/A run) to show the spread of ratios noise alone gives;
``--events on`` runs the worker with Celery task events (off by default, as in the app).

``--guarded`` replaces the resilient task by ``bench.guarded_noop``: a ResilientTask whose every
run is admitted by the fleet-wide guard (``Guard.admit``, one EVALSHA) before its body and
recorded (``Guard.record``) after, as workers run it: a success is tallied and carried by the
next admission, on the resource ``bench.noop`` with a breaker, a rate limit and a concurrency
limit that never refuse (``benchapp.GUARDED_RESOURCES``, given to the worker as
``ALCHEMISER_RESOURCES``). The run checks that the resource's ``admitted`` counter grew by (at
least) the number of guarded tasks it ran, and reports any refusal. ``--round-trip`` puts
``bench.round_trip_noop`` there instead: the plain task plus one bare ``PING`` per run, the
least any per-task check on Redis can cost. ``--guarded --lease K`` gives the resource a permit
lease of K (``benchapp.guarded_resources``): one admission round trip grants K runs, which the
worker process spends without asking Redis (the resource then has a retry budget instead of a
concurrency limit, which a lease cannot have); the resource's ``admitted`` counter then counts
runs granted, at least the runs made.

Prints Markdown tables; exits 1 on an error (a worker that dies, a batch that does not drain),
never because a target is missed. Deletes every key of its namespace at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.app.trace import build_tracer
from redis import Redis

from bench.benchapp import (
    BENCH_QUEUE,
    GUARDED_RESOURCE,
    GUARDED_TASK,
    LEASE_TTL_S,
    PLAIN_TASK,
    RESILIENT_TASK,
    ROUND_TRIP_TASK,
    build_app,
    done_key,
    guarded_resources,
)
from resilience.guard.resource_tables import ResourcesTable
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from worker.fleet import WorkerProcess, start_worker, wait_until_ready
from worker.settings import Settings, load_settings

__all__ = ["BatchResult", "PoolReport", "main"]

TARGET_RATIO = 0.95
POLL_S = 0.005
# kombu's Redis consumer blocks in BRPOP for up to 1 s; a cancelled consumer's last BRPOP can
# still take one message (and requeue it), so the queue must stay empty that long.
BRPOP_SETTLE_S = 1.2
BATCH_TIMEOUT_S = 60.0
WARMUP_TASKS = 200
TRACER_CALLS = 20_000
# A guarded call makes a Redis round trip (~0.2 ms): fewer calls keep a batch under a second.
TRACER_CALLS_GUARDED = 2_000
ENQUEUE_BATCH_SIZE = 500
SCAN_COUNT = 500


class BenchError(RuntimeError):
    """The benchmark could not measure (worker died, batch did not drain, Redis failed)."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One timed drain of ``tasks`` messages of one task."""

    task: str
    tasks: int
    counted: int
    elapsed_s: float

    @property
    def rate_per_s(self) -> float:
        """Completions per second between the first and the last observed completion."""
        return self.counted / self.elapsed_s


@dataclass(frozen=True, slots=True)
class PoolReport:
    """Every round of one pool: (plain, B) per round, in the order they ran; B is the
    resilient task, the guarded one (``guarded``) or plain again (``aa``)."""

    pool: str
    concurrency: int
    rounds: tuple[tuple[BatchResult, BatchResult, bool], ...]  # plain, B, plain_first
    aa: bool = False
    guarded: bool = False
    round_trip: bool = False
    lease: int = 0  # guarded runs: permits per lease (0: every run asks Redis)
    # Guarded runs: how many the resource admitted during this pool, and refusals by reason.
    admitted: int = 0
    refused: tuple[tuple[str, int], ...] = ()

    @property
    def ratios(self) -> list[float]:
        """resilient/plain per round."""
        return [r.rate_per_s / p.rate_per_s for p, r, _ in self.rounds]

    @property
    def median_ratio(self) -> float:
        """The figure compared with the target."""
        return statistics.median(self.ratios)


# --- the worker ------------------------------------------------------------------------------


def _destination(worker: WorkerProcess) -> list[str]:
    return [f"{worker.name}@{socket.gethostname()}"]


def _control(app: Celery, worker: WorkerProcess, command: str) -> None:
    """``add_consumer``/``cancel_consumer`` of the bench queue on our worker, waiting for it."""
    method = getattr(app.control, command)
    replies = method(BENCH_QUEUE, destination=_destination(worker), reply=True, timeout=5.0)
    if not replies:
        raise BenchError(f"{command} got no reply from {worker.name}:\n{worker.log()[-2000:]}")


# --- one batch -------------------------------------------------------------------------------


def _enqueue(app: Celery, task: Task, tasks: int) -> None:  # type: ignore[type-arg]
    """Publish ``tasks`` messages through kombu's pipelined batch."""
    with app.producer_or_acquire() as producer, producer.batch(max_size=ENQUEUE_BATCH_SIZE):
        for _ in range(tasks):
            task.apply_async(producer=producer)


def run_batch(
    app: Celery,
    worker: WorkerProcess,
    redis: Redis,
    task: Task,  # type: ignore[type-arg]
    *,
    tasks: int,
    queue_key: str,
    counter_key: str,
) -> BatchResult:
    """Enqueue ``tasks`` messages with the consumer stopped, then time their drain."""
    time.sleep(BRPOP_SETTLE_S)
    redis.delete(queue_key)
    redis.set(counter_key, 0)
    try:
        _enqueue(app, task, tasks)
    except Exception as failed:  # the pipeline has no retry: start the batch over once
        print(f"warning: batch enqueue failed ({failed!r}); enqueueing again", file=sys.stderr)
        redis.delete(queue_key)
        for _ in range(tasks):
            task.apply_async()
    queued = int(redis.llen(queue_key))
    if queued != tasks:
        raise BenchError(f"{queued} of {tasks} messages reached {queue_key}")
    _control(app, worker, "add_consumer")
    deadline = time.monotonic() + BATCH_TIMEOUT_S
    first_t: float | None = None
    first_count = 0
    last_t = 0.0
    done = 0
    while done < tasks:
        if time.monotonic() > deadline:
            raise BenchError(
                f"{task.name}: {done} of {tasks} done after {BATCH_TIMEOUT_S:g} s:\n"
                f"{worker.log()[-2000:]}"
            )
        if worker.process.poll() is not None:
            raise BenchError(f"worker {worker.name} exited:\n{worker.log()[-4000:]}")
        time.sleep(POLL_S)
        seen = int(redis.get(counter_key) or 0)
        now = time.perf_counter()
        if seen > done:
            if first_t is None:
                first_t, first_count = now, seen
            last_t, done = now, seen
    _control(app, worker, "cancel_consumer")
    if first_t is None or last_t <= first_t:
        raise BenchError(f"{task.name}: the batch finished within one poll; raise --tasks")
    return BatchResult(task.name, tasks, done - first_count, last_t - first_t)


def run_pool(
    settings: Settings,
    app: Celery,
    redis: Redis,
    log_dir: Path,
    *,
    pool: str,
    concurrency: int,
    rounds: int,
    tasks: int,
    aa: bool = False,
    guarded: bool = False,
    round_trip: bool = False,
    events: bool = False,
    lease: int = 0,
) -> PoolReport:
    """Start a worker with ``pool``, warm it up, run the interleaved rounds, stop it.

    With ``aa`` the plain task runs in both slots (the noise floor of the ratio); with
    ``guarded`` the guarded task takes the resilient task's slot (its resource leasing ``lease``
    permits at a time, when given).
    """
    env = {
        "ALCHEMISER_NAMESPACE": settings.namespace,
        "ALCHEMISER_LOG_LEVEL": "WARNING",
        "ALCHEMISER_TASK_EVENTS": "true" if events else "false",
    }
    if guarded:
        env["ALCHEMISER_RESOURCES"] = json.dumps(guarded_resources(lease))
    worker = start_worker(
        env,
        log_dir,
        pool=pool,
        concurrency=concurrency,
        queues=BENCH_QUEUE,
        name=f"bench{uuid.uuid4().hex[:8]}",
        app="bench.benchapp",
    )
    plain = app.tasks[PLAIN_TASK]
    resilient = plain if aa else app.tasks[_b_task(guarded=guarded, round_trip=round_trip)]
    stats_key = KeySpace(settings.namespace).resource(GUARDED_RESOURCE)[7]
    stats_before = _admission_stats(redis, stats_key)
    keys = {
        "queue_key": f"{app.conf.broker_transport_options['global_keyprefix']}{BENCH_QUEUE}",
        "counter_key": done_key(settings.namespace),
    }
    try:
        wait_until_ready(app, [worker], timeout_s=60.0)
        _control(app, worker, "cancel_consumer")
        for task in (plain, resilient):  # imports, runtime and connections in every child
            run_batch(app, worker, redis, task, tasks=WARMUP_TASKS, **keys)
        results: list[tuple[BatchResult, BatchResult, bool]] = []
        for number in range(rounds):
            plain_first = number % 2 == 0
            order = (plain, resilient) if plain_first else (resilient, plain)
            first, second = (run_batch(app, worker, redis, t, tasks=tasks, **keys) for t in order)
            pair = (first, second) if plain_first else (second, first)
            results.append((*pair, plain_first))
    finally:
        worker.stop()
    if not guarded:
        return PoolReport(pool, concurrency, tuple(results), aa, round_trip=round_trip)
    stats = _admission_stats(redis, stats_key)
    admitted = stats.get("admitted", 0) - stats_before.get("admitted", 0)
    expected = WARMUP_TASKS + rounds * tasks
    if admitted < expected:
        raise BenchError(
            f"{GUARDED_RESOURCE} admitted {admitted} runs of the {expected} guarded tasks the"
            f" worker ran: the guard is not admitting every run ({stats_key}: {stats})"
        )
    refused = tuple(
        (field, count - stats_before.get(field, 0))
        for field, count in sorted(stats.items())
        if field.startswith("refused") and count > stats_before.get(field, 0)
    )
    return PoolReport(
        pool,
        concurrency,
        tuple(results),
        guarded=True,
        lease=lease,
        admitted=admitted,
        refused=refused,
    )


def _b_task(*, guarded: bool, round_trip: bool) -> str:
    """The task in the B slot (besides plain again, for ``--aa``)."""
    return GUARDED_TASK if guarded else ROUND_TRIP_TASK if round_trip else RESILIENT_TASK


def _admission_stats(redis: Redis, key: str) -> dict[str, int]:
    """The guarded resource's counters: ``admitted`` and ``refused:<reason>``."""
    return {str(f): int(v) for f, v in redis.hgetall(key).items()}


# --- in process: Celery's tracer only ------------------------------------------------------


def _no_op() -> None:
    return None


def _request(task_id: str, name: str) -> dict[str, Any]:
    """The request a worker hands the tracer for a first delivery from the bench queue."""
    return {
        "id": task_id,
        "task": name,
        "headers": {},
        "delivery_info": {
            "exchange": "",
            "routing_key": BENCH_QUEUE,
            "priority": 0,
            "redelivered": False,
        },
        "hostname": "bench@localhost",
        "is_eager": False,
    }


def measure_tracer(
    settings: Settings, *, rounds: int, calls: int, b_task: str = RESILIENT_TASK
) -> list[tuple[float, float]]:
    """(plain, ``b_task``) µs per task through ``build_tracer`` with a no-op body, per round.

    The guarded task admits on the settings' Redis, so its figure includes that round trip (its
    success rides on the next one).
    """
    app = build_app(settings, count=_no_op)
    try:
        tracers = {
            name: build_tracer(name, app.tasks[name], app=app, eager=False, propagate=True)
            for name in (PLAIN_TASK, b_task)
        }

        def batch(name: str, size: int) -> float:
            tracer = tracers[name]
            requests = [_request(str(uuid.uuid4()), name) for _ in range(size)]
            start = time.perf_counter_ns()
            for request in requests:
                tracer(request["id"], [], {}, request)
            return (time.perf_counter_ns() - start) / size / 1000

        for name in tracers:  # imports, the runtime, caches
            batch(name, calls // 10)
        results: list[tuple[float, float]] = []
        for number in range(rounds):
            if number % 2 == 0:
                plain_us = batch(PLAIN_TASK, calls)
                resilient_us = batch(b_task, calls)
            else:
                resilient_us = batch(b_task, calls)
                plain_us = batch(PLAIN_TASK, calls)
            results.append((plain_us, resilient_us))
        return results
    finally:
        app.close()


def render_tracer(
    results: list[tuple[float, float]], calls: int, *, b_name: str = "resilient"
) -> str:
    """The Markdown table of the in-process measurement."""
    lines = [
        f"### In process: Celery's tracer, no-op body, {calls:,} calls per batch",
        "",
        f"| round | plain µs/task | {b_name} µs/task | added µs/task |",
        "|---:|---:|---:|---:|",
    ]
    for number, (plain_us, resilient_us) in enumerate(results, 1):
        lines.append(
            f"| {number} | {plain_us:.2f} | {resilient_us:.2f} | {resilient_us - plain_us:+.2f} |"
        )
    lines += [
        f"| median | {statistics.median(p for p, _ in results):.2f} "
        f"| {statistics.median(r for _, r in results):.2f} "
        f"| **{_added_us(results):+.2f}** |",
        "",
    ]
    return "\n".join(lines)


def _added_us(results: list[tuple[float, float]]) -> float:
    return statistics.median(r - p for p, r in results)


# --- reporting -------------------------------------------------------------------------------


def machine(redis: Redis) -> str:
    """One line naming what the figures were measured on."""
    server = redis.info("server")
    parser = "hiredis" if find_spec("hiredis") else "no hiredis"
    return (
        f"nproc {os.cpu_count()}, redis-server {server.get('redis_version')}, "
        f"Python {platform.python_version()}, celery {version('celery')}, "
        f"kombu {version('kombu')}, redis-py {version('redis')} ({parser})"
    )


def render(report: PoolReport, tasks: int) -> str:
    """The Markdown table of one pool."""
    b_name = (
        "plain (B)"
        if report.aa
        else "guarded"
        if report.guarded
        else "round trip"
        if report.round_trip
        else "resilient"
    )
    a_name = "plain (A)" if report.aa else "plain"
    title = (
        " (A/A control: plain vs plain)"
        if report.aa
        else f" (guarded, permit lease of {report.lease}: one admission per {report.lease} runs)"
        if report.guarded and report.lease
        else " (guarded: admit + record per task)"
        if report.guarded
        else " (round trip: plain + one PING per task)"
        if report.round_trip
        else ""
    )
    lines = [
        f"### `-P {report.pool} -c {report.concurrency}`, {tasks} tasks per batch{title}",
        "",
        f"| round | order | {a_name} tasks/s | {b_name} tasks/s | {b_name}/{a_name} |",
        "|---:|---|---:|---:|---:|",
    ]
    for number, (plain, resilient, plain_first) in enumerate(report.rounds, 1):
        order = f"{a_name}, {b_name}" if plain_first else f"{b_name}, {a_name}"
        lines.append(
            f"| {number} | {order} | {plain.rate_per_s:,.0f} | {resilient.rate_per_s:,.0f} "
            f"| {resilient.rate_per_s / plain.rate_per_s:.3f} |"
        )
    plain_median = statistics.median(p.rate_per_s for p, _, _ in report.rounds)
    resilient_median = statistics.median(r.rate_per_s for _, r, _ in report.rounds)
    spread = f"range {min(report.ratios):.3f}-{max(report.ratios):.3f}"
    if report.aa:
        summary = f"A/A median ratio {report.median_ratio:.3f} ({spread}): noise alone."
    else:
        verdict = "meets" if report.median_ratio >= TARGET_RATIO else "MISSES"
        summary = (
            f"Median ratio {report.median_ratio:.3f} {verdict} the target >= {TARGET_RATIO}"
            f" ({spread})."
        )
    lines += [
        f"| median | | {plain_median:,.0f} | {resilient_median:,.0f} "
        f"| **{report.median_ratio:.3f}** |",
        "",
        summary,
        "",
    ]
    if report.guarded:
        refused = ", ".join(f"{f} {n}" for f, n in report.refused) or "none refused"
        lines += [
            f"Admission check: `{GUARDED_RESOURCE}` admitted {report.admitted:,} runs for"
            f" {WARMUP_TASKS + len(report.rounds) * tasks:,} guarded tasks run"
            f" ({WARMUP_TASKS} warm-up + {len(report.rounds)} x {tasks});"
            f" {refused}.",
            "",
        ]
    return "\n".join(lines)


def cleanup(redis: Redis, namespace: str) -> int:
    """Delete every key under ``<namespace>:``; how many went."""
    deleted = 0
    batch: list[str] = []
    for key in redis.scan_iter(match=f"{namespace}:*", count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            deleted += int(redis.delete(*batch))
            batch.clear()
    if batch:
        deleted += int(redis.delete(*batch))
    return deleted


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per batch (2000)")
    parser.add_argument(
        "--rounds", type=int, default=6, help="rounds per pool; even keeps ABBA balanced (6)"
    )
    parser.add_argument(
        "--pools",
        default="prefork,solo",
        help="comma-separated pools; prefork runs with -c 2, solo with -c 1 (prefork,solo)",
    )
    parser.add_argument(
        "--aa", action="store_true", help="A/A control: plain against plain (noise floor)"
    )
    parser.add_argument(
        "--guarded",
        action="store_true",
        help="compare the guarded task (admit + record per run) with plain, instead of the"
        " resilient one",
    )
    parser.add_argument(
        "--lease",
        type=int,
        default=0,
        metavar="K",
        help=f"with --guarded: the resource leases K admissions per round trip to each worker"
        f" process, spent within {LEASE_TTL_S} s (off)",
    )
    parser.add_argument(
        "--round-trip",
        action="store_true",
        help="compare plain + one PING per run with plain: the floor of any per-task Redis check",
    )
    parser.add_argument(
        "--events",
        choices=("on", "off"),
        default="off",
        help="Celery task events in the worker (ALCHEMISER_TASK_EVENTS; off by default)",
    )
    args = parser.parse_args(argv)
    if args.tasks < 10 or args.rounds < 1:
        parser.error("--tasks must be at least 10 and --rounds at least 1")
    if args.aa + args.guarded + args.round_trip > 1:
        parser.error("--aa, --guarded and --round-trip are different runs; choose one")
    if args.lease and (not args.guarded or args.lease < 2):
        parser.error("--lease K needs --guarded and K >= 2")
    args.pools = [p.strip() for p in args.pools.split(",") if p.strip()]
    unknown = set(args.pools) - {"prefork", "solo"}
    if unknown:
        parser.error(f"unknown pool(s) {', '.join(sorted(unknown))}; use prefork and/or solo")
    return args


def run_settings(base: Settings, args: argparse.Namespace) -> Settings:
    """The configured settings on a fresh namespace, with the guarded resource when guarded."""
    update: dict[str, Any] = {
        "namespace": f"bench-{uuid.uuid4().hex[:10]}",
        "log_level": "WARNING",
        "task_events": args.events == "on",
    }
    if args.guarded:
        # model_copy does not validate: the table goes in as the model it would have become.
        update["resources"] = ResourcesTable.model_validate(
            {**base.resources.root, **guarded_resources(args.lease)}
        )
    return base.model_copy(update=update)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it measured, 1 when it could not."""
    args = _parse(argv)
    settings = run_settings(load_settings(), args)
    namespace = settings.namespace
    b_name, b_class, b_subject = (
        (
            "guarded",
            f"guarded ResilientTask, permit lease of {args.lease},",
            "the guarded ResilientTask (leasing)",
        )
        if args.guarded and args.lease
        else ("guarded", "guarded ResilientTask", "the guarded ResilientTask")
        if args.guarded
        else ("round trip", "plain task + one PING", "one PING")
        if args.round_trip
        else ("resilient", "ResilientTask", "ResilientTask")
    )
    tracer_calls = TRACER_CALLS_GUARDED if args.guarded or args.round_trip else TRACER_CALLS
    app = build_app(settings)
    redis = connect(settings.redis_url, socket_timeout_s=5.0)
    started = time.monotonic()
    try:
        print(f"## Throughput: no-op {b_class} vs plain Celery task\n")
        print(f"{machine(redis)}; task events {args.events}; namespace `{namespace}`\n")
        tracer = measure_tracer(
            settings,
            rounds=args.rounds,
            calls=tracer_calls,
            b_task=_b_task(guarded=args.guarded, round_trip=args.round_trip),
        )
        print(render_tracer(tracer, tracer_calls, b_name=b_name), flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-") as log_dir:
            for pool in args.pools:
                concurrency = 2 if pool == "prefork" else 1
                report = run_pool(
                    settings,
                    app,
                    redis,
                    Path(log_dir),
                    pool=pool,
                    concurrency=concurrency,
                    rounds=args.rounds,
                    tasks=args.tasks,
                    aa=args.aa,
                    guarded=args.guarded,
                    round_trip=args.round_trip,
                    events=args.events == "on",
                    lease=args.lease,
                )
                print(render(report, args.tasks), flush=True)
                plain_us = 1e6 / statistics.median(p.rate_per_s for p, _, _ in report.rounds)
                print(
                    f"In process, {b_subject} adds {_added_us(tracer):+.2f} µs per task:"
                    f" {_added_us(tracer) / plain_us:+.2%} of the {plain_us:,.0f} µs a plain"
                    f" task takes end to end under `-P {pool}` here.\n",
                    flush=True,
                )
        print(f"Total run time {time.monotonic() - started:.0f} s.")
        return 0
    except BenchError as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    except Exception as failed:  # Redis down, bad settings: say so without a traceback
        print(f"error: {type(failed).__name__}: {failed}", file=sys.stderr)
        return 1
    finally:
        try:
            cleanup(redis, namespace)
        except Exception as failed:
            print(f"warning: could not delete {namespace}:* keys: {failed!r}", file=sys.stderr)
        app.close()


if __name__ == "__main__":
    sys.exit(main())
