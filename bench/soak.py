"""Soak: 1,000 orders through malformed messages, Redis restarts and worker kills.

``python -m bench.soak`` starts a private ``redis-server`` with AOF on (``appendfsync always``:
what Redis acknowledged survives its kill -9) and ``--workers`` real ``celery -A worker``
workers (``-P prefork -c 2``) in a fresh namespace on it, the default resources (breakers,
retry budgets) on, and ``--latency-ms`` injected after each booking so that a kill lands
between an order's booking and its acknowledgement. A sender thread publishes ``--orders``
valid ``tasks.submit_order`` messages at ``--rate`` a second, retrying a publish while Redis is
down. Interleaved, spread evenly over the orders:

- ``--malformed`` malformed messages, three kinds in turn: a JSON body that is not
  ``[args, kwargs, embed]``; a raw LPUSH onto the ``trading`` list of text that is no kombu
  envelope; a valid order with a ``timelimit`` header of strings (which must never be booked);
- ``--restarts`` Redis kill -9s, each started again ``DOWN_S`` s later on the same data;
- ``--worker-kills`` kill -9s of a whole worker (its process group), each followed at once by a
  replacement worker: the killed worker's unacknowledged orders come back once they are older
  than the visibility timeout (``--visibility-timeout``).

Then it waits until every order is booked or dead-lettered and every malformed message
quarantined, and reports from the paper exchange's event log and the dead-letter store: orders
booked exactly once, booked twice, dead-lettered (by error type), lost; malformed messages
quarantined; worker exits it did not cause (a process that ended, or "Unrecoverable error" in a
log); for each fault, the orders in flight (queued or unacknowledged) as it struck and the time
until they were all acknowledged and every order sent before it was booked or dead-lettered.
Exits 0 when every order was booked exactly once or dead-lettered, none twice, every malformed
message was quarantined and no worker exited unexpectedly; 1 otherwise (or when it could not
run). ``--json`` prints one JSON document on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from resilience.chaos import ChaosRule
from tasks.brokers.paper_keys import PaperKeys
from tests.integration.harness import EMBED, Deployment, order_kwargs, publish_raw
from tests.redis_process import RedisProcess, redis_process
from worker.application import create_app
from worker.fleet import WorkerProcess, start_worker, wait_until_ready
from worker.runtime import build_runtime
from worker.settings import Settings

__all__ = ["main"]

DOWN_S = 3.0  # how long Redis stays dead at each restart
ORDER_TTL_S = 3600.0  # no order expires while it waits out a fault
CONCURRENCY = 2
MALFORMED_KINDS = ("dict-body", "raw-item", "timelimit")
UNRECOVERABLE = "Unrecoverable error"
MALFORMED = "MalformedMessageError"  # the quarantine's error type
SAMPLE_S = 0.1  # how often the orders in flight are sampled
LOST_LISTED = 20  # lost orders traced in the report
# Retries and deferrals come back within seconds, so a run settles soon after its last fault.
MAX_COUNTDOWN_S = 4.0

RETRY_S = 10.0  # how long the soak's own Redis calls retry

FaultKind = Literal["redis-restart", "worker-kill"]
T = TypeVar("T")


def _retry(call: Callable[[], T]) -> T:
    """``call()``, again for up to RETRY_S while Redis fails: after a restart, a pooled
    connection the kill broke fails once more than the client's own retries absorb."""
    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            return call()
        except (RedisError, OSError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Fault:
    """One Redis restart or worker kill, and how the fleet came back from it."""

    kind: FaultKind
    after_order: int  # sent orders when it struck
    at: float  # wall clock (s) of the kill
    back_s: float | None = None  # until every live worker answered a ping again
    in_flight: int = 0  # orders queued or unacknowledged when it struck
    drained_at: float | None = None  # wall clock when the last of those was acknowledged
    settle_s: float | None = None  # until those were acknowledged and every order sent
    # before it booked or dead-lettered (None: never)
    # Of those in flight, the ones still queued or unacknowledged at the last sample, and where.
    undrained: dict[str, str] = field(default_factory=dict)


@dataclass
class Malformed:
    """One malformed message the soak published."""

    kind: str
    published_at: float
    task_id: str | None  # the dict body and the timelimit header carry an id; a raw item none
    raw: str | None  # a raw item's text, by which its quarantine entry is found
    client_order_id: str | None  # the timelimit message's order, which must never be booked
    quarantined_at: float | None = None


class _Sender(threading.Thread):
    """Publishes the orders at a steady rate; while Redis is down it retries the same one."""

    def __init__(self, deployment: Deployment, orders: int, rate: float) -> None:
        super().__init__(name="soak-sender", daemon=True)
        self.deployment = deployment
        self.orders = orders
        self.interval_s = 1 / rate
        # (client_order_id, task id, wall clock of the publish); appended by this thread only.
        self.sent: list[tuple[str, str, float]] = []
        self.publish_failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        tag = uuid.uuid4().hex[:8]
        for i in range(self.orders):
            order = order_kwargs(ttl_s=ORDER_TTL_S, client_order_id=f"soak-{tag}-{i:05d}")
            while True:
                if self.stopping.is_set():
                    return
                try:
                    task_id = self.deployment.submit(order)
                    break
                except (OperationalError, RedisError, OSError):
                    self.publish_failures += 1
                    time.sleep(0.2)
            self.sent.append((order["client_order_id"], task_id, time.time()))
            if self.stopping.wait(self.interval_s):
                return


class _InFlight(threading.Thread):
    """Samples, every SAMPLE_S, the orders' messages still queued or unacknowledged: notes
    when the last of those in flight at a fault is acknowledged, and where each message was
    last seen (what is known of an order that is lost)."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(name="soak-in-flight", daemon=True)
        self.redis = deployment.redis
        # kombu's keys under the broker's global key prefix (the namespace).
        prefix = deployment.runtime.resilience.keys.broker_prefix
        self.unacked_key, self.queue_key = f"{prefix}unacked", f"{prefix}trading"
        self.index_key = f"{prefix}unacked_index"
        self.watched: list[tuple[Fault, set[str]]] = []
        self.last_seen: dict[str, tuple[float, str]] = {}  # task id -> (wall clock, where)
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def task_ids(self) -> dict[str, str]:
        """The submit_order messages on the queue ("queued") or delivered and not acknowledged
        ("unacked"), by task id."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(self.queue_key, 0, -1)
        pipe.hvals(self.unacked_key)
        queued, unacked = pipe.execute()
        found: dict[str, str] = {}
        for where, raws in (("queued", queued), ("unacked", unacked)):
            for raw in raws:
                headers = _loads(raw, unacked=where == "unacked")
                if headers.get("task") == "tasks.submit_order" and "id" in headers:
                    found[str(headers["id"])] = where
        return found

    def held(self) -> list[dict[str, Any]]:
        """The messages still unacknowledged: task id, delivery tag, seconds since its lease
        was renewed (what a message stuck in a worker looks like)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.unacked_key)
        pipe.zrange(self.index_key, 0, -1, withscores=True)
        records, leases = pipe.execute()
        renewed = dict(leases)
        now = time.time()
        return [
            {
                "task_id": _loads(raw, unacked=True).get("id"),
                "tag": tag,
                "lease_age_s": None if tag not in renewed else round(now - renewed[tag], 1),
            }
            for tag, raw in records.items()
        ]

    def watch(self, fault: Fault, orders: set[str]) -> None:
        """Note which of ``orders`` (task ids) are in flight as ``fault`` strikes."""
        in_flight = self.task_ids().keys() & orders
        fault.in_flight = len(in_flight)
        with self.lock:
            self.watched.append((fault, in_flight))

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        """Note where each message is now, and which faults' messages have all drained."""
        try:
            current = self.task_ids()
        except (RedisError, OSError):  # Redis is down: the next sample after it is back
            return
        now = time.time()
        with self.lock:
            for task_id, where in current.items():
                self.last_seen[task_id] = (now, where)
            for fault, in_flight in self.watched:
                fault.undrained = {t: current[t] for t in in_flight & current.keys()}
                if fault.drained_at is None and not fault.undrained:
                    fault.drained_at = now


def _loads(raw: str, *, unacked: bool) -> dict[str, Any]:
    """A kombu message's headers (an unacked entry is [message, exchange, routing key]); {}
    for an item that is no message (the soak's raw items)."""
    try:
        message = json.loads(raw)
        if unacked:
            message = message[0]
        headers = message.get("headers")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return {}
    return headers if isinstance(headers, dict) else {}


def _schedule(orders: int, restarts: int, kills: int) -> list[tuple[int, FaultKind]]:
    """Faults at even steps of the orders; kills spread among the restarts."""
    kinds: list[tuple[float, FaultKind]] = [
        ((i + 0.5) / restarts, "redis-restart") for i in range(restarts)
    ] + [((i + 0.5) / kills, "worker-kill") for i in range(kills)]
    ordered = [kind for _, kind in sorted(kinds, key=lambda k: k[0])]
    return [(orders * (j + 1) // (len(ordered) + 1), kind) for j, kind in enumerate(ordered)]


class Soak:
    """One soak run: the deployment on the private Redis, its workers, and what happened."""

    def __init__(self, args: argparse.Namespace, server: RedisProcess, log_dir: Path) -> None:
        self.args = args
        self.server = server
        settings = Settings(
            redis_url=server.url,
            namespace=f"bench-soak-{uuid.uuid4().hex[:8]}",
            log_level="INFO",
            visibility_timeout_s=args.visibility_timeout,
            max_countdown_s=MAX_COUNTDOWN_S,
        )
        env = {
            "ALCHEMISER_REDIS_URL": settings.redis_url,
            "ALCHEMISER_NAMESPACE": settings.namespace,
            "ALCHEMISER_LOG_LEVEL": settings.log_level,
            "ALCHEMISER_VISIBILITY_TIMEOUT_S": repr(settings.visibility_timeout_s),
            "ALCHEMISER_MAX_COUNTDOWN_S": repr(settings.max_countdown_s),
        }
        self.deployment = Deployment(
            settings=settings,
            env=env,
            log_dir=log_dir,
            app=create_app(settings),
            runtime=build_runtime(settings),
        )
        self.killed: set[str] = set()
        self.faults: list[Fault] = []
        self.malformed: list[Malformed] = []
        self.sender = _Sender(self.deployment, args.orders, args.rate)
        self.in_flight = _InFlight(self.deployment)

    @property
    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.deployment.workers if w.name not in self.killed]

    def run(self) -> None:
        """Start the fleet, send the orders with the faults interleaved, wait until settled."""
        args, deployment = self.args, self.deployment
        deployment.runtime.chaos.inject(
            ChaosRule("broker.submit_order", "none", latency_ms=args.latency_ms, phase="after")
        )
        self._start_workers(args.workers)
        _log(f"{args.workers} workers ready in {deployment.settings.namespace}")
        faults = _schedule(args.orders, args.restarts, args.worker_kills)
        malformed_at = [
            args.orders * (i + 1) // (args.malformed + 1) for i in range(args.malformed)
        ]
        events = sorted(
            [(at, "malformed", i) for i, at in enumerate(malformed_at)]
            + [(at, kind, i) for i, (at, kind) in enumerate(faults)]
        )
        self.sender.start()
        self.in_flight.start()
        for at, kind, i in events:
            self._wait_for_sent(at)
            if kind == "malformed":
                self._publish_malformed(MALFORMED_KINDS[i % len(MALFORMED_KINDS)], i)
            elif kind == "redis-restart":
                self._restart_redis()
            else:
                self._kill_a_worker()
        self.sender.join()
        _log(f"{len(self.sender.sent)} orders sent; waiting until every one is settled")
        self._wait_until_settled()

    def _start_workers(self, count: int) -> None:
        """Start ``count`` workers and wait until they answer; Celery logs at INFO, so each
        message a worker received is in its log."""
        deployment = self.deployment
        started = [
            start_worker(
                deployment.env, deployment.log_dir, concurrency=CONCURRENCY, loglevel="INFO"
            )
            for _ in range(count)
        ]
        deployment.workers.extend(started)
        wait_until_ready(deployment.app, started, timeout_s=60.0)

    def _wait_for_sent(self, count: int) -> None:
        while len(self.sender.sent) < count and self.sender.is_alive():
            time.sleep(0.02)

    def _publish_malformed(self, kind: str, index: int) -> None:
        deployment = self.deployment
        task_id = raw = client_order_id = None
        published_at = time.time()
        if kind == "dict-body":
            task_id = publish_raw(deployment.app, {"soak": index}, task="tasks.submit_order")
        elif kind == "raw-item":
            raw = f"not json {index}"
            _retry(lambda: deployment.redis.lpush(self.in_flight.queue_key, raw))
        else:
            order = order_kwargs(ttl_s=ORDER_TTL_S)
            client_order_id = order["client_order_id"]
            task_id = publish_raw(
                deployment.app, [[], order, EMBED], task="tasks.submit_order", timelimit=["a", "b"]
            )
        self.malformed.append(Malformed(kind, published_at, task_id, raw, client_order_id))

    def _strike(self, kind: FaultKind) -> Fault:
        """A fault about to strike, with the orders in flight noted."""
        fault = Fault(kind, len(self.sender.sent), time.time())
        orders = {task_id for _, task_id, _ in self.sender.sent}
        _retry(lambda: self.in_flight.watch(fault, orders))
        self.faults.append(fault)
        return fault

    def _restart_redis(self) -> None:
        fault = self._strike("redis-restart")
        _log(f"Redis kill -9 after {fault.after_order} orders; restart in {DOWN_S:g} s")
        self.server.restart_after(DOWN_S)
        fault.back_s = self._workers_answer(fault.at)

    def _kill_a_worker(self) -> None:
        victim = self.live_workers[0]  # the oldest: it has run longest
        fault = self._strike("worker-kill")
        _log(f"worker {victim.name} kill -9 after {fault.after_order} orders; starting another")
        self.killed.add(victim.name)
        victim.kill()
        try:
            self._start_workers(1)
        except RuntimeError as failed:  # reported with the worker exits at the end
            _log(f"the replacement worker did not start: {failed}")
            return
        fault.back_s = time.time() - fault.at

    def _workers_answer(self, since: float) -> float | None:
        try:
            wait_until_ready(self.deployment.app, self.live_workers, timeout_s=60.0)
        except RuntimeError as failed:  # reported with the worker exits at the end
            _log(f"workers did not answer after the restart: {failed}")
            return None
        return time.time() - since

    def _wait_until_settled(self) -> None:
        """Until every order is booked or dead-lettered, none is still in flight (a message
        left unacknowledged would come back), and every malformed message is quarantined."""
        sent = {coid for coid, _, _ in self.sender.sent}
        task_ids = {task_id for _, task_id, _ in self.sender.sent}
        deadline = time.monotonic() + self.args.settle_timeout
        next_report = 0.0
        while time.monotonic() < deadline:
            try:
                in_flight = len(self.in_flight.task_ids().keys() & task_ids)
            except (RedisError, OSError):
                in_flight = -1
            unsettled = len(sent - self._settled_at().keys())
            self._note_quarantines()
            waiting = sum(m.quarantined_at is None for m in self.malformed)
            if not (unsettled or in_flight or waiting):
                return
            if time.monotonic() >= next_report:
                _log(
                    f"{unsettled} orders unsettled, {in_flight} in flight, {waiting} malformed"
                    " not quarantined"
                )
                next_report = time.monotonic() + 5
            time.sleep(0.5)
        _log(f"gave up waiting after {self.args.settle_timeout:g} s")

    def accepted(self) -> tuple[Counter[str], dict[str, float]]:
        """Acceptances per client_order_id at the exchange, and the first one's time (the
        event log's stream id is Redis's clock in ms)."""
        events = cast(
            "list[tuple[str, dict[str, str]]]",
            self.deployment.redis.xrange(PaperKeys(self.deployment.runtime.resilience.keys).log),
        )
        counts: Counter[str] = Counter()
        first: dict[str, float] = {}
        for event_id, fields in events:
            if fields.get("event") == "accepted":
                coid = fields["client_order_id"]
                counts[coid] += 1
                first.setdefault(coid, int(event_id.split("-")[0]) / 1000)
        return counts, first

    def dead_letters(self) -> dict[str, tuple[str, float]]:
        """Dead-lettered orders: client_order_id -> (error type, when)."""
        return {
            e.idempotency_key: (e.error_type, datetime.fromisoformat(e.dead_at).timestamp())
            for e in self.deployment.runtime.resilience.dead_letters.entries()
            if e.idempotency_key
        }

    def _settled_at(self) -> dict[str, float]:
        """When each order was first booked or dead-lettered."""
        try:
            _, booked = self.accepted()
            dead = self.dead_letters()
        except (RedisError, OSError):
            return {}
        settled = {coid: at for coid, (_, at) in dead.items()}
        for coid, at in booked.items():
            settled[coid] = min(at, settled.get(coid, at))
        return settled

    def _note_quarantines(self) -> None:
        store = self.deployment.runtime.resilience.dead_letters
        try:
            entries = store.entries(error_type=MALFORMED)
        except (RedisError, OSError):
            return
        by_id = {e.id: e for e in entries}
        by_raw = {e.extra.get("raw_body"): e for e in entries}
        for message in self.malformed:
            entry = by_id.get(message.task_id or "") or by_raw.get(message.raw)
            if entry is not None and message.quarantined_at is None:
                message.quarantined_at = datetime.fromisoformat(entry.dead_at).timestamp()

    def report(self, started_at: float) -> dict[str, Any]:
        """Every figure of the run, from Redis and the workers' processes and logs."""
        self.in_flight.stopping.set()
        self.in_flight.join()
        # The settle wait saw nothing in flight, maybe after the thread's last sample.
        self.in_flight.sample()
        sent = {coid: at for coid, _, at in self.sender.sent}
        counts, _ = self.accepted()
        dead = self.dead_letters()
        settled = self._settled_at()
        self._note_quarantines()
        booked_once = [c for c in sent if counts[c] == 1]
        dead_only = [c for c in sent if c in dead and counts[c] == 0]
        lost = [c for c in sent if counts[c] == 0 and c not in dead]
        task_of = {coid: task_id for coid, task_id, _ in self.sender.sent}
        for fault in self.faults:
            before = [settled.get(c) for c, at in sent.items() if at <= fault.at]
            if fault.drained_at is not None and None not in before:
                last = max([fault.drained_at, *(at for at in before if at is not None)])
                fault.settle_s = last - fault.at
        latencies = [settled[c] - at for c, at in sent.items() if c in settled]
        quarantine_s = [
            m.quarantined_at - m.published_at
            for m in self.malformed
            if m.quarantined_at is not None
        ]
        malformed_total = len(
            self.deployment.runtime.resilience.dead_letters.entries(error_type=MALFORMED)
        )
        workers = [
            {
                "name": w.name,
                "killed_by_soak": w.name in self.killed,
                "exit_code": w.process.poll(),
                "unrecoverable_error": UNRECOVERABLE in w.log(),
            }
            for w in self.deployment.workers
        ]
        unexpected = [
            w["name"]
            for w in workers
            if w["unrecoverable_error"] or (not w["killed_by_soak"] and w["exit_code"] is not None)
        ]
        report: dict[str, Any] = {
            "date": datetime.fromtimestamp(started_at, UTC).isoformat(timespec="seconds"),
            "options": vars(self.args),
            "namespace": self.deployment.settings.namespace,
            "log_dir": str(self.deployment.log_dir),
            "sent": len(sent),
            "booked_once": len(booked_once),
            "booked_twice": sum(counts[c] > 1 for c in sent),
            "booked_and_dead_lettered": sum(counts[c] > 0 and c in dead for c in sent),
            "dead_lettered": len(dead_only),
            "dead_lettered_by_type": dict(Counter(dead[c][0] for c in dead_only)),
            "lost": len(lost),
            "lost_orders": [
                self._trace(c, task_of[c], sent[c], started_at) for c in lost[:LOST_LISTED]
            ],
            "publish_retries": self.sender.publish_failures,
            "duplicates_avoided": self.deployment.runtime.resilience.outcomes.totals().get(
                "duplicate_avoided", 0
            ),
            "malformed_sent": dict(Counter(m.kind for m in self.malformed)),
            "quarantined": sum(m.quarantined_at is not None for m in self.malformed),
            "quarantined_other": malformed_total - len(quarantine_s),
            "malformed_orders_booked": sum(
                counts[m.client_order_id] > 0 for m in self.malformed if m.client_order_id
            ),
            "quarantine_s": _summary(quarantine_s),
            "order_settle_s": _summary(latencies),
            "faults": [_fault_figures(f, started_at) for f in self.faults],
            "held_at_end": self.in_flight.held(),
            "workers": workers,
            "unexpected_worker_exits": unexpected,
            "wall_s": time.time() - started_at,
        }
        report["ok"] = (
            report["booked_once"] + report["dead_lettered"] == report["sent"] == self.args.orders
            and report["booked_twice"] == 0
            and report["quarantined"] == len(self.malformed)
            and report["malformed_orders_booked"] == 0
            and not unexpected
        )
        return report

    def _trace(
        self, client_order_id: str, task_id: str, sent_at: float, started_at: float
    ) -> dict[str, Any]:
        """What is known of a lost order: when it was sent, where its message was last seen
        (times from the run's start)."""
        seen_at, where = self.in_flight.last_seen.get(task_id, (None, "never seen"))
        return {
            "client_order_id": client_order_id,
            "task_id": task_id,
            "sent_at": sent_at - started_at,
            "last_seen_in": where,
            "last_seen_at": None if seen_at is None else seen_at - started_at,
        }

    def close(self) -> None:
        for thread in (self.sender, self.in_flight):
            thread.stopping.set()
            if thread.is_alive():
                thread.join(timeout=30)
        for worker in self.deployment.workers:
            worker.stop(timeout_s=10)
        self.deployment.app.close()


def _fault_figures(fault: Fault, started_at: float) -> dict[str, Any]:
    """A fault's figures with its times relative: ``at`` to the run's start, ``drained_s``
    (until its in-flight orders were all acknowledged) to the fault."""
    figures = asdict(fault)
    drained_at = figures.pop("drained_at")
    figures["at"] = fault.at - started_at
    figures["drained_s"] = None if drained_at is None else drained_at - fault.at
    return figures


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "-"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def _markdown(report: dict[str, Any]) -> str:
    options = report["options"]
    lines = [
        "## Soak: orders through malformed messages, Redis restarts and worker kills\n",
        f"{report['date']}: {options['orders']} orders at {options['rate']:g}/s, "
        f"{options['workers']} workers (-P prefork -c {CONCURRENCY}), {options['latency_ms']} ms "
        f"after each booking, visibility timeout {options['visibility_timeout']:g} s, "
        f"namespace `{report['namespace']}`\n",
        "| measure | value |",
        "|---|---:|",
    ]
    rows: list[tuple[str, object]] = [
        ("orders sent", report["sent"]),
        ("booked exactly once", report["booked_once"]),
        ("booked twice or more", report["booked_twice"]),
        ("dead-lettered", report["dead_lettered"]),
        ("dead-lettered by type", _counts(report["dead_lettered_by_type"])),
        ("booked and dead-lettered", report["booked_and_dead_lettered"]),
        ("lost", report["lost"]),
        ("duplicates avoided (redelivered, found booked)", report["duplicates_avoided"]),
        ("publishes retried while Redis was down", report["publish_retries"]),
        ("malformed messages sent", _counts(report["malformed_sent"])),
        ("malformed messages quarantined", report["quarantined"]),
        ("other quarantine entries", report["quarantined_other"]),
        ("malformed messages' orders booked", report["malformed_orders_booked"]),
        ("unexpected worker exits", ", ".join(report["unexpected_worker_exits"]) or "none"),
        ("wall time s", f"{report['wall_s']:.0f}"),
    ]
    for name in ("order_settle_s", "quarantine_s"):
        summary = report[name]
        label = "send to settle" if name == "order_settle_s" else "publish to quarantine"
        for stat in ("median", "p99", "max"):
            rows.append((f"{label} {stat} s", _seconds(summary[stat])))
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += [
        "\n| fault | after order | at s | workers back s | orders in flight"
        " | in flight acked after s | settled after s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {f['kind']} | {f['after_order']} | {f['at']:.1f} | {_seconds(f['back_s'])} |"
        f" {f['in_flight']} | {_seconds(f['drained_s'])} | {_seconds(f['settle_s'])} |"
        for f in report["faults"]
    ]
    if report["lost_orders"]:
        lines += [
            "\n| lost order | task id | sent at s | last seen in | last seen at s |",
            "|---|---|---:|---|---:|",
        ]
        lines += [
            f"| {o['client_order_id']} | {o['task_id']} | {o['sent_at']:.2f} |"
            f" {o['last_seen_in']} | {_seconds(o['last_seen_at'])} |"
            for o in report["lost_orders"]
        ]
    verdict = "holds" if report["ok"] else "FAILS"
    lines.append(
        f"\nBooked exactly once + dead-lettered = sent, none twice, every malformed message "
        f"quarantined, no unexpected worker exit: {verdict}. Worker logs: {report['log_dir']}"
    )
    return "\n".join(lines)


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value

    return parse


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--orders", type=_positive(int), default=1000, help="valid orders (1000)")
    parser.add_argument("--restarts", type=int, default=3, help="Redis kill -9 + restart (3)")
    parser.add_argument("--malformed", type=int, default=30, help="malformed messages (30)")
    parser.add_argument("--worker-kills", type=int, default=1, help="worker kill -9s (1)")
    parser.add_argument(
        "--visibility-timeout",
        type=_positive(float),
        default=10.0,
        help="ALCHEMISER_VISIBILITY_TIMEOUT_S of the workers (10)",
    )
    parser.add_argument("--rate", type=_positive(float), default=8.0, help="orders a second (8)")
    parser.add_argument("--workers", type=_positive(int), default=2, help="workers (2)")
    parser.add_argument(
        "--latency-ms", type=int, default=300, help="injected after each booking (300)"
    )
    parser.add_argument(
        "--settle-timeout", type=_positive(float), default=120.0, help="s to wait at the end"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    if min(args.restarts, args.malformed, args.worker_kills, args.latency_ms) < 0:
        parser.error("counts and latency cannot be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; 0 when the invariants held, 1 when not or when it could not run."""
    args = _parse(argv)
    started_at = time.time()
    log_dir = Path(tempfile.mkdtemp(prefix="alchemiser-soak-"))
    with redis_process(appendonly=True) as server:
        soak = Soak(args, server, log_dir)
        try:
            soak.run()
            report = _retry(lambda: soak.report(started_at))
        except (RuntimeError, RedisError, OSError) as failed:
            _log(f"error: {failed}")
            return 1
        finally:
            soak.close()
        if not report["ok"]:
            # The AOF is every write the run made, in order: the evidence of a lost order.
            shutil.copytree(server.workdir, log_dir / "redis", dirs_exist_ok=True)
            _log(f"Redis's data (its AOF) copied to {log_dir / 'redis'}")
    print(json.dumps(report, indent=2) if args.json else _markdown(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
