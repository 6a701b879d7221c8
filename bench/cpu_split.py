"""Where the CPU goes per task: the worker's main process, its pool children, and Redis.

``python -m bench.cpu_split`` starts one ``-P prefork -c 2`` worker as ``bench.throughput``
does (private namespace, the guarded resource configured) and drains batches of the plain, the
resilient, the round-trip (plain + one PING) and the guarded no-op task in turn, ``--rounds``
times. Around each batch it reads
the CPU time (user + system, ``/proc/<pid>/stat``) of the worker's main process (the consumer:
it fetches, dispatches and acknowledges every message), of its pool children and of the
redis-server process; divided by the batch size, that is what one task costs each of them, in
µs. The throughput ratio says how much slower a task is; this says who pays for it.

Linux only, and the Redis must be a redis-server on this machine (its pid comes from
``INFO server``). CPU time is counted in clock ticks (10 ms), so a batch of 3,000 tasks reads
to about 3 µs per task. Exits 1 when it could not measure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.benchapp import (
    BENCH_QUEUE,
    GUARDED_TASK,
    LEASE_TTL_S,
    PLAIN_TASK,
    RESILIENT_TASK,
    ROUND_TRIP_TASK,
    build_app,
    done_key,
    guarded_resources,
)
from bench.throughput import BenchError, _control, cleanup, machine, run_batch
from resilience.storage.connection import connect
from worker.fleet import start_worker, wait_until_ready
from worker.settings import load_settings

__all__ = ["CpuSplit", "main"]

TASKS = (PLAIN_TASK, RESILIENT_TASK, ROUND_TRIP_TASK, GUARDED_TASK)
WARMUP_TASKS = 200
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSplit:
    """One batch: its rate and the CPU µs per task of each party."""

    task: str
    rate_per_s: float
    main_us: float
    children_us: float
    redis_us: float

    @property
    def total_us(self) -> float:
        """All three together."""
        return self.main_us + self.children_us + self.redis_us


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    found: list[int] = []
    for thread in Path(f"/proc/{pid}/task").iterdir():
        path = thread / "children"
        if path.exists():
            found.extend(int(child) for child in path.read_text().split())
    return found


def _parties(main_pid: int, redis_pid: int) -> dict[str, list[int]]:
    return {"main": [main_pid], "children": children(main_pid), "redis": [redis_pid]}


def _cpu(parties: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_s(pid) for pid in pids) for name, pids in parties.items()}


def render(splits: Sequence[CpuSplit], rounds: int, tasks: int, pool: str = "prefork") -> str:
    """Median per task over the rounds, in µs."""
    options = "prefork -c 2" if pool == "prefork" else "solo -c 1"
    lines = [
        f"### CPU per task, `-P {options}`: median of {rounds} rounds x {tasks:,} tasks\n",
        "| task | tasks/s | worker main µs | pool children µs | Redis µs | total µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in TASKS:
        mine = [s for s in splits if s.task == name]
        cells = [
            statistics.median(s.rate_per_s for s in mine),
            statistics.median(s.main_us for s in mine),
            statistics.median(s.children_us for s in mine),
            statistics.median(s.redis_us for s in mine),
            statistics.median(s.total_us for s in mine),
        ]
        lines.append(f"| `{name}` | " + " | ".join(f"{c:,.0f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Measure; 0 when it measured, 1 when it could not."""
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_split", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="batches of each task (3)")
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per batch (3000)")
    parser.add_argument(
        "--pool",
        choices=("prefork", "solo"),
        default="prefork",
        help="prefork -c 2, or solo -c 1 (the task runs in the main process) (prefork)",
    )
    parser.add_argument(
        "--lease",
        type=int,
        default=0,
        metavar="K",
        help=f"the guarded resource leases K admissions per round trip, within {LEASE_TTL_S} s",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.tasks < 100:
        parser.error("--rounds must be at least 1 and --tasks at least 100")
    if args.lease == 1 or args.lease < 0:
        parser.error("--lease K needs K >= 2")
    settings = load_settings().model_copy(update={"namespace": f"bench-{uuid.uuid4().hex[:10]}"})
    app = build_app(settings)
    redis = connect(settings.redis_url, socket_timeout_s=5.0)
    started = time.monotonic()
    worker = None
    try:
        redis_pid = int(redis.info("server")["process_id"])
        if not Path(f"/proc/{redis_pid}/stat").exists():
            raise BenchError(f"redis-server pid {redis_pid} is not on this machine")
        print("## CPU split: who pays for a task\n")
        print(f"{machine(redis)}; namespace `{settings.namespace}`\n", flush=True)
        env = {
            "ALCHEMISER_NAMESPACE": settings.namespace,
            "ALCHEMISER_LOG_LEVEL": "WARNING",
            "ALCHEMISER_TASK_EVENTS": "false",
            "ALCHEMISER_RESOURCES": json.dumps(guarded_resources(args.lease)),
        }
        worker = start_worker(
            env,
            Path(tempfile.mkdtemp(prefix="cpu-split-")),
            pool=args.pool,
            concurrency=2 if args.pool == "prefork" else 1,
            queues=BENCH_QUEUE,
            name=f"bench{uuid.uuid4().hex[:8]}",
            app="bench.benchapp",
        )
        keys = {
            "queue_key": f"{app.conf.broker_transport_options['global_keyprefix']}{BENCH_QUEUE}",
            "counter_key": done_key(settings.namespace),
        }
        wait_until_ready(app, [worker], timeout_s=60.0)
        _control(app, worker, "cancel_consumer")
        for name in TASKS:
            run_batch(app, worker, redis, app.tasks[name], tasks=WARMUP_TASKS, **keys)
        parties = _parties(worker.process.pid, redis_pid)
        splits: list[CpuSplit] = []
        for _ in range(args.rounds):
            for name in TASKS:
                before = _cpu(parties)
                batch = run_batch(app, worker, redis, app.tasks[name], tasks=args.tasks, **keys)
                after = _cpu(parties)
                per_task = {p: (after[p] - before[p]) / args.tasks * 1e6 for p in parties}
                splits.append(
                    CpuSplit(
                        name,
                        batch.rate_per_s,
                        per_task["main"],
                        per_task["children"],
                        per_task["redis"],
                    )
                )
        print(render(splits, args.rounds, args.tasks, args.pool))
        print(f"Total run time {time.monotonic() - started:.0f} s.")
        return 0
    except (BenchError, OSError) as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    finally:
        if worker is not None:
            worker.stop()
        cleanup(redis, settings.namespace)
        app.close()


if __name__ == "__main__":
    sys.exit(main())
