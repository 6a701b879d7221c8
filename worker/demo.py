"""``alchemiser demo``: the main job end to end, on real workers, with injected faults.

1. Redis: the configured one if it answers, else an embedded one (worker/embedded.py).
2. Two real worker processes on a private namespace.
3. A flaky broker (503s, lost responses after the order was booked, 429s on look-ups): every
   order still lands exactly once.
4. A broker outage: the first orders exhaust their attempts and are dead-lettered with their
   history; the shared circuit breaker opens and the rest wait instead of hammering the broker.
5. The outage ends: the breaker's probes succeed and it closes, the waiting orders land, the
   transient dead letters are replayed and land exactly once; one order the account cannot
   fund and one invalid payload are dead-lettered for good.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from celery import Celery
from rich.console import Console
from rich.table import Table

from resilience.chaos import ChaosRule
from resilience.deadletter.replay import Replayer
from resilience.errors import ConfigurationError, error_class_by_name
from resilience.guard.resource_tables import ResourcesTable
from tasks.brokers.paper import PaperBroker
from tasks.brokers.paper_keys import PaperKeys
from tasks.replay import prepare_replay, replay_publisher
from tasks.runtime import TradingRuntime
from worker.application import create_app
from worker.embedded import RedisSource, redis_for_demo
from worker.fleet import WorkerProcess, start_worker, wait_until_ready
from worker.runtime import build_runtime
from worker.settings import Settings, load_settings

__all__ = ["DemoReport", "run_demo"]

# A breaker quick enough to watch: trips at 80% failures over 10 calls, waits 2 s, then 4, 8.
# Its window is short so the flaky phase's successes soon leave it and the outage is judged on
# its own failures.
DEMO_RESOURCES: dict[str, Any] = {
    "broker.orders": {
        "breaker": {
            "window_s": 4,
            "minimum_calls": 10,
            "failure_rate_threshold": 80,
            "wait_duration_in_open_s": 2,
            "wait_multiplier": 2,
            "max_wait_in_open_s": 8,
            "permitted_calls_in_half_open": 2,
            "probe_lease_s": 10,
        },
        "retry_budget": False,
    },
}
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B")
WAIT_S = 90.0
# How often the live counters are reprinted while a phase runs (when not on a terminal, where
# they update in place).
PROGRESS_EVERY_S = 2.0
OUTAGE_S = 3.0
# Enough orders in the outage that their first attempts alone reach the breaker's
# minimum_calls within its window, whatever --orders is (with 2, the breaker never opened).
OUTAGE_ORDERS_MIN = 12


@dataclass
class DemoReport:
    """What the demo measured."""

    submitted: int = 0
    accepted: int = 0
    accepted_twice: int = 0
    retried: int = 0
    recovered: int = 0
    duplicates_avoided: int = 0
    dead_by_type: Counter[str] = field(default_factory=Counter)
    replayed: int = 0
    replay_skipped: int = 0
    breaker_transitions: Counter[str] = field(default_factory=Counter)
    unaccounted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every order accounted for and none accepted twice."""
        return self.accepted_twice == 0 and not self.unaccounted


def _order(symbol: str, qty: float, ttl_s: float = 300.0) -> dict[str, Any]:
    valid_until = datetime.now(UTC) + timedelta(seconds=ttl_s)
    return {
        "symbol": symbol,
        "side": "buy",
        "qty": qty,
        "client_order_id": f"demo-{uuid.uuid4().hex[:12]}",
        "valid_until": valid_until.isoformat(),
    }


def _wait(
    condition: Callable[[], bool], timeout_s: float, tick: Callable[[], None] | None = None
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        if tick is not None:
            tick()
        time.sleep(0.2)
    return condition()


class _Demo:
    def __init__(self, settings: Settings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.app: Celery = create_app(settings)
        self.runtime: TradingRuntime = build_runtime(settings)
        broker = self.runtime.broker
        if not isinstance(broker, PaperBroker):
            raise ConfigurationError(
                "the demo trades on the paper broker: unset ALCHEMISER_TRADING_BROKER"
            )
        self.paper = broker
        self.report = DemoReport()

    def submit(self, orders: list[dict[str, Any]]) -> list[str]:
        for kwargs in orders:
            self.app.send_task("tasks.submit_order", kwargs=kwargs)
        self.report.submitted += len(orders)
        return [str(o["client_order_id"]) for o in orders]

    def booked(self) -> set[str]:
        return {o.client_order_id for o in self.paper.list_orders()}

    def dead(self) -> dict[str, str]:
        entries = self.runtime.resilience.dead_letters.entries(status="dead")
        return {e.idempotency_key: e.error_type for e in entries if e.idempotency_key}

    def counters(self) -> str:
        """The live counters: orders sent, booked, retries so far, dead-lettered."""
        totals = self.runtime.resilience.outcomes.totals()
        return (
            f"sent {self.report.submitted} · booked {len(self.booked())} · retries"
            f" {totals.get('retried', 0)} · deferred {totals.get('deferred', 0)} ·"
            f" dead-lettered {len(self.dead())}"
        )

    def wait(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Wait for ``condition`` showing the live counters: updated in place on a terminal,
        else a line every PROGRESS_EVERY_S while they change; the last counters after."""
        if self.console.is_terminal:
            with self.console.status(self.counters()) as status:
                done = _wait(condition, timeout_s, lambda: status.update(self.counters()))
        else:
            shown = ""
            next_at = time.monotonic() + PROGRESS_EVERY_S

            def tick() -> None:
                nonlocal shown, next_at
                if time.monotonic() < next_at:
                    return
                next_at = time.monotonic() + PROGRESS_EVERY_S
                line = self.counters()
                if line != shown:
                    shown = line
                    self.console.print(f"   … {line}", highlight=False)

            done = _wait(condition, timeout_s, tick)
        self.console.print(f"   {self.counters()}", highlight=False)
        return done

    def settled(self, ids: list[str]) -> bool:
        done = self.booked() | set(self.dead())
        return all(i in done for i in ids)

    def replay_transient(self) -> list[str]:
        store = self.runtime.resilience.dead_letters

        replayer = Replayer(
            store, prepare=prepare_replay(now_s=time.time), publish=replay_publisher(self.app)
        )
        replayed: list[str] = []
        for entry in store.entries(status="dead"):
            if not _transient(entry.error_type):
                continue
            result = replayer.replay(entry.id, actor="demo")
            if result.outcome == "replayed" and entry.idempotency_key:
                replayed.append(entry.idempotency_key)
            else:
                self.report.replay_skipped += 1
        self.report.replayed = len(replayed)
        return replayed

    def breaker_transitions(self) -> Counter[str]:
        events_key = self.runtime.resilience.keys.resource("broker.orders")[3]
        events = cast(
            "list[tuple[str, dict[str, str]]]", self.runtime.resilience.redis.xrange(events_key)
        )
        return Counter(f"{e['from']} -> {e['to']}" for _, e in events)

    def breaker_openings(self) -> int:
        """How often the breaker went to open (from closed or from failed probes)."""
        return sum(n for move, n in self.breaker_transitions().items() if move.endswith("-> open"))

    def accepted_twice(self) -> int:
        events = cast(
            "list[tuple[str, dict[str, str]]]",
            self.runtime.resilience.redis.xrange(PaperKeys(self.runtime.resilience.keys).log),
        )
        accepted = Counter(
            fields["client_order_id"] for _, fields in events if fields.get("event") == "accepted"
        )
        return sum(1 for n in accepted.values() if n > 1)


def _transient(error_type: str) -> bool:
    """Whether the error's policy retries it: such a dead letter only ran out of attempts."""
    try:
        return error_class_by_name(error_type).policy.retryable
    except KeyError:
        return False


def _scenario(demo: _Demo, orders: int) -> DemoReport:
    chaos = demo.runtime.chaos
    say = demo.console.print
    report = demo.report

    say(
        "[bold]1. A flaky broker[/]: 30% of submits answer 503, 20% are booked but the response"
        " is lost, 30% of look-ups answer 429"
    )
    chaos.inject(ChaosRule("broker.submit_order", "http:503", probability=0.3))
    chaos.inject(ChaosRule("broker.submit_order", "TimeoutError", probability=0.2, phase="after"))
    chaos.inject(ChaosRule("broker.get_order", "http:429", probability=0.3, retry_after_s=0.5))
    flaky = demo.submit([_order(SYMBOLS[i % len(SYMBOLS)], 1 + i % 5) for i in range(orders)])
    started = time.monotonic()
    demo.wait(lambda: demo.settled(flaky), WAIT_S)
    say(f"   {len(flaky)} orders settled in {time.monotonic() - started:.1f} s")

    say(
        "[bold]2. A broker outage[/]: every submit answers 503 until it ends; the shared"
        " breaker opens and the orders wait"
    )
    chaos.clear()
    chaos.inject(ChaosRule("broker.submit_order", "http:503", probability=1.0))
    # The flaky phase may have opened the breaker already: wait for an opening of this phase
    # (a fresh trip, or failed probes sending it back to open).
    openings_before = demo.breaker_openings()
    outage_orders = max(orders // 4, OUTAGE_ORDERS_MIN)
    outage = demo.submit([_order(SYMBOLS[i % len(SYMBOLS)], 2) for i in range(outage_orders)])
    started = time.monotonic()
    opened = demo.wait(lambda: demo.breaker_openings() > openings_before, WAIT_S)
    opened_after_s = time.monotonic() - started
    time.sleep(OUTAGE_S)  # let the outage last: the breaker keeps the orders waiting
    dead_before = len(set(outage) & set(demo.dead()))
    if opened:
        say(
            f"   breaker opened after {opened_after_s:.1f} s;"
            f" {dead_before} orders dead-lettered before it did"
        )
    else:
        say(f"   the breaker did not open within {WAIT_S:g} s; {dead_before} orders dead-lettered")
    say(
        "[bold]3. The outage ends[/]: faults cleared, the breaker's probes succeed, waiting"
        " orders land, transient dead letters are replayed; one order the account cannot fund"
        " and one invalid payload are sent too"
    )
    chaos.clear()
    replayed = demo.replay_transient()
    unfundable = demo.submit([_order("NVDA", 500_000)])
    invalid = _order("AAPL", -5)
    demo.submit([invalid])
    started = time.monotonic()
    last = outage + replayed + unfundable + [invalid["client_order_id"]]
    demo.wait(lambda: demo.settled(last), WAIT_S)
    say(f"   {len(set(last))} orders settled in {time.monotonic() - started:.1f} s")
    booked = demo.booked()
    dead = demo.dead()
    totals = demo.runtime.resilience.outcomes.totals()
    report.accepted = len(booked)
    report.accepted_twice = demo.accepted_twice()
    report.retried = totals.get("retried", 0)
    report.recovered = totals.get("recovered", 0)
    report.duplicates_avoided = totals.get("duplicate_avoided", 0)
    report.dead_by_type = Counter(dead.values())
    report.breaker_transitions = demo.breaker_transitions()
    every = flaky + outage + unfundable + [invalid["client_order_id"]]
    report.unaccounted = [i for i in every if i not in booked and i not in dead]
    return report


def _print_report(console: Console, report: DemoReport, source: RedisSource) -> None:
    table = Table(title="alchemiser demo", show_header=False)
    table.add_row("Redis", f"{source.kind}: {source.detail}")
    table.add_row("orders submitted", str(report.submitted))
    table.add_row("accepted by the broker", str(report.accepted))
    table.add_row("retries (backoff from the error policy)", str(report.retried))
    table.add_row("tasks that recovered after a retry", str(report.recovered))
    table.add_row("duplicates avoided by client_order_id look-up", str(report.duplicates_avoided))
    table.add_row("dead letters replayed after the outage", str(report.replayed))
    transitions = ", ".join(f"{t} {n}" for t, n in sorted(report.breaker_transitions.items()))
    table.add_row("circuit breaker (broker.orders) transitions", transitions or "none")
    dead = ", ".join(f"{t} {n}" for t, n in sorted(report.dead_by_type.items())) or "none"
    table.add_row("still dead-lettered (by error type)", dead)
    table.add_row("orders accepted twice (duplicates)", str(report.accepted_twice))
    table.add_row("orders unaccounted for", str(len(report.unaccounted)))
    console.print(table)
    verdict = "[green]OK[/]" if report.ok else "[red]FAILED[/]"
    console.print(
        f"{verdict}: duplicates: {report.accepted_twice}, lost: {len(report.unaccounted)}"
    )


def demo_settings(base: Settings, *, redis_url: str, broker_url: str, namespace: str) -> Settings:
    """The configured settings pointed at the demo's Redis and namespace, on the paper broker
    with the demo's tight resources."""
    # model_copy does not validate: every table goes in already validated.
    return base.model_copy(
        update={
            "redis_url": redis_url,
            "broker_url": broker_url,
            "namespace": namespace,
            "trading_broker": "paper",
            "resources": ResourcesTable.model_validate(DEMO_RESOURCES),
            # This process's own log lines would mix into the report; the workers log
            # to files at their usual level.
            "log_level": "ERROR",
        }
    )


def run_demo(*, orders: int = 40, workers: int = 2, keep: bool = False) -> int:
    """Run the demo; returns the process exit code (0 when nothing was lost or duplicated)."""
    console = Console()
    base = load_settings()
    with redis_for_demo(base.redis_url) as source:
        namespace = f"{base.namespace}-demo-{uuid.uuid4().hex[:6]}"
        broker_url = base.effective_broker_url if source.kind == "configured" else source.url
        settings = demo_settings(
            base, redis_url=source.url, broker_url=broker_url, namespace=namespace
        )
        console.print(f"Redis: [bold]{source.kind}[/] ({source.detail}); namespace {namespace}")
        env = {
            "ALCHEMISER_REDIS_URL": source.url,
            "ALCHEMISER_BROKER_URL": broker_url,
            "ALCHEMISER_NAMESPACE": namespace,
            "ALCHEMISER_TRADING_BROKER": "paper",
            "ALCHEMISER_RESOURCES": json.dumps(DEMO_RESOURCES),
        }
        log_dir = Path(tempfile.mkdtemp(prefix="alchemiser-demo-"))
        demo = _Demo(settings, console)
        fleet: list[WorkerProcess] = []
        try:
            fleet = [start_worker(env, log_dir, name=f"demo{i + 1}") for i in range(workers)]
            wait_until_ready(demo.app, fleet, timeout_s=60.0)
            console.print(f"{workers} worker processes ready (logs in {log_dir})")
            report = _scenario(demo, orders)
        finally:
            for worker in fleet:
                worker.stop()
            if not keep:
                client = demo.runtime.resilience.redis
                for key in client.scan_iter(match=f"{namespace}:*", count=1000):
                    client.delete(key)
        _print_report(console, report, source)
        return 0 if report.ok else 1
