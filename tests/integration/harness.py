"""Integration harness: a deployment on the real Redis with real Celery worker processes."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from redis import Redis

from resilience.deadletter.store import DeadLetter
from tasks.brokers.paper import PaperBroker
from tasks.brokers.paper_keys import PaperKeys
from tasks.runtime import TradingRuntime
from worker.fleet import WorkerProcess, start_worker, wait_until_ready
from worker.settings import Settings


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until true; fail the test saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    if not condition():
        pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def publish_raw(
    app: Celery,
    body: Any,
    *,
    task: str,
    queue: str = "trading",
    **headers: Any,
) -> str:
    """Publish a Celery protocol-2 message (or anything else as its body) straight to
    ``queue``'s exchange and key, with ``headers`` added or overriding; its task id."""
    task_id = str(uuid.uuid4())
    message_headers = {
        "lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
        "group": None, "retries": 0, "eta": None, "expires": None, **headers,
    }  # fmt: skip
    with app.connection_for_write() as connection:
        connection.Producer().publish(
            body, exchange=queue, routing_key=queue, headers=message_headers,
            serializer="json", retry=True,
        )  # fmt: skip
    return task_id


def order_kwargs(
    symbol: str = "AAPL", qty: float = 1, *, ttl_s: float = 600, **extra: Any
) -> dict[str, Any]:
    """A valid ``tasks.submit_order`` payload with a fresh client_order_id."""
    kwargs: dict[str, Any] = {
        "symbol": symbol,
        "side": "buy",
        "qty": qty,
        "client_order_id": f"it-{uuid.uuid4().hex[:16]}",
        "valid_until": (datetime.now(UTC) + timedelta(seconds=ttl_s)).isoformat(),
    }
    kwargs.update(extra)
    return kwargs


@dataclass
class Deployment:
    """One namespace on the real Redis: settings, a client app, the runtime and workers."""

    settings: Settings
    env: dict[str, str]
    log_dir: Path
    app: Celery
    runtime: TradingRuntime
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def redis(self) -> Redis:
        return self.runtime.resilience.redis

    @property
    def paper(self) -> PaperBroker:
        broker = self.runtime.broker
        assert isinstance(broker, PaperBroker)
        return broker

    def start_workers(
        self, count: int = 1, *, concurrency: int = 2, pool: str = "prefork"
    ) -> list[WorkerProcess]:
        started = [
            start_worker(self.env, self.log_dir, concurrency=concurrency, pool=pool)
            for _ in range(count)
        ]
        self.workers.extend(started)
        wait_until_ready(self.app, started, timeout_s=60.0)
        return started

    def submit(self, kwargs: dict[str, Any]) -> str:
        return str(self.app.send_task("tasks.submit_order", kwargs=kwargs).id)

    def book(self, count: int, timeout_s: float = 60) -> set[str]:
        """Submit ``count`` valid orders and wait until every one is booked; their ids."""
        orders = [order_kwargs() for _ in range(count)]
        for order in orders:
            self.submit(order)
        ids = {o["client_order_id"] for o in orders}
        wait_for(lambda: ids <= self.booked(), timeout_s, f"{count} valid orders booked")
        return ids

    def booked(self) -> set[str]:
        return {o.client_order_id for o in self.paper.list_orders()}

    def accepted_counts(self) -> Counter[str]:
        """How often the exchange accepted each client_order_id (from its event log)."""
        events = self.redis.xrange(PaperKeys(self.runtime.resilience.keys).log)
        return Counter(f["client_order_id"] for _, f in events if f.get("event") == "accepted")

    def dead_by_order(self) -> dict[str, str]:
        store = self.runtime.resilience.dead_letters
        return {e.idempotency_key: e.error_type for e in store.entries() if e.idempotency_key}

    def dead_letter(self, task_id: str, timeout_s: float = 30) -> DeadLetter:
        """Wait for the dead letter of ``task_id`` and return it."""
        store = self.runtime.resilience.dead_letters
        wait_for(lambda: store.get(task_id) is not None, timeout_s, f"the dead letter {task_id}")
        entry = store.get(task_id)
        assert entry is not None
        return entry

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """Structured log lines named ``event`` from every worker of this deployment."""
        found = []
        for path in sorted(self.log_dir.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{") and f'"{event}"' in line:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # the line the worker is still writing
                        continue
                    if record.get("event") == event:
                        found.append(record)
        return found
