"""The app and the task objects as a user's Python reaches them, each in a fresh interpreter.

``from worker import app`` must be the Celery app (a submodule named ``app`` used to shadow
it), and ``from tasks.trading import submit_order; submit_order.delay(...)`` must publish
through the configured app even when nothing built it first (it used to go to Celery's default
app: ``amqp://guest@localhost//``, queue ``celery``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
from kombu import Connection

from tests.integration.harness import Deployment, order_kwargs, wait_for
from tests.worker.test_cli import queued

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def _python(deployment: Deployment, code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter with the deployment's environment; its last stdout
    line, parsed as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, **deployment.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _default_celery_queue_depth() -> int | None:
    """Messages in queue ``celery`` of RabbitMQ's default vhost (None: no RabbitMQ, or no such
    queue), where Celery's default app would have published."""
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            pass
    except OSError:
        return None
    with Connection(DEFAULT_AMQP, connect_timeout=2) as connection:
        try:
            declared = connection.default_channel.queue_declare(queue="celery", passive=True)
        except Exception:  # 404: the queue does not exist
            return None
        return int(declared.message_count)


def test_from_worker_import_app_is_the_celery_app(deployment: Deployment) -> None:
    """``from worker import app`` and ``worker.app`` (read twice) are one Celery app, and its
    ``send_task`` books an order on a real worker."""
    deployment.start_workers()
    order = order_kwargs()
    answer = _python(
        deployment,
        f"""
        import json
        from celery import Celery
        import worker
        first, second = worker.app, worker.app
        from worker import app
        result = app.send_task("tasks.submit_order", kwargs={order!r})
        print(json.dumps({{
            "type": type(app).__name__,
            "is_celery": isinstance(app, Celery),
            "same": app is first is second,
            "task_id": result.id,
        }}))
        """,
    )
    assert answer["is_celery"] is True, answer
    assert answer["same"] is True
    wait_for(lambda: order["client_order_id"] in deployment.booked(), 30, "the order")
    assert deployment.accepted_counts()[order["client_order_id"]] == 1


def test_delay_before_any_app_publishes_through_the_configured_app(
    deployment: Deployment,
) -> None:
    """``submit_order.delay`` and ``fetch_quote.delay`` imported first thing go through the
    configured broker: the order is booked by a real worker, and Celery's default destinations
    (queue ``celery`` in the namespace, RabbitMQ's default vhost) receive nothing."""
    deployment.start_workers()
    order = order_kwargs()
    before = _default_celery_queue_depth()
    answer = _python(
        deployment,
        f"""
        import json
        from tasks.trading import fetch_quote, submit_order
        result = submit_order.delay(**{order!r})
        quote = fetch_quote.delay(symbol="AAPL")
        print(json.dumps({{
            "broker": submit_order.app.conf.broker_url,
            "queue": submit_order.app.amqp.router.route({{}}, submit_order.name)["queue"].name,
            "task_id": result.id,
        }}))
        """,
    )
    assert answer["broker"] == deployment.settings.effective_broker_url
    assert answer["queue"] == "trading"
    wait_for(lambda: order["client_order_id"] in deployment.booked(), 30, "the order")
    assert deployment.accepted_counts()[order["client_order_id"]] == 1
    namespace = deployment.settings.namespace
    assert deployment.redis.exists(f"{namespace}:celery") == 0
    assert _default_celery_queue_depth() == before


def test_without_an_application_the_task_objects_refuse() -> None:
    """With no app built and no application installed, ``.delay`` raises ConfigurationError
    naming what to do, and publishes nothing."""
    code = textwrap.dedent(
        """
        import json
        import tasks.application
        tasks.application.entry_points = lambda **_: []  # as if no application were installed
        from resilience.errors import ConfigurationError
        from tasks.trading import submit_order
        try:
            submit_order.delay(symbol="AAPL", side="buy", qty=1)
        except ConfigurationError as exc:
            print(json.dumps({"refused": str(exc)}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "ALCHEMISER_BROKER_URL": "redis://127.0.0.1:1/0"}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    refused = json.loads(result.stdout.strip().splitlines()[-1])["refused"]
    assert "pip install -e ." in refused
    assert "from worker import app" in refused


def test_delay_fixes_the_orders_identity_and_deadline_at_enqueue(deployment: Deployment) -> None:
    """``submit_order.delay`` without ``client_order_id``/``valid_until`` publishes them filled:
    ``alc-<task id>`` and now + the order TTL (300 s), so time in the queue counts; a worker
    then books the order under that id."""
    sent_at = time.time()
    answer = _python(
        deployment,
        """
        import json
        from tasks.trading import submit_order
        result = submit_order.delay(symbol="AAPL", side="buy", qty=1)
        print(json.dumps({"task_id": result.id}))
        """,
    )
    (message,) = queued(deployment.redis, deployment.settings.namespace, "trading")
    kwargs = message["kwargs"]
    assert kwargs["client_order_id"] == f"alc-{answer['task_id']}"
    deadline_s = datetime.fromisoformat(kwargs["valid_until"]).timestamp()
    assert sent_at + 300 <= deadline_s <= time.time() + 300
    deployment.start_workers()
    wait_for(lambda: kwargs["client_order_id"] in deployment.booked(), 30, "the order")
