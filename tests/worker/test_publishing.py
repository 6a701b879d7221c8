"""Task messages carry scrubbed argument reprs (what Flower shows), and the arguments whole."""

from __future__ import annotations

import json

import pytest
import redis

from resilience.storage.keys import KeySpace
from tests.worker.test_cli import queued
from worker.application import create_app
from worker.settings import Settings

SECRET = "Zr7QpL2xVn9TkB4mWc8HsD3y"


def test_argsrepr_and_kwargsrepr_are_scrubbed_and_the_body_is_not(
    client: redis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """A known secret value anywhere and a secret-named kwarg are [Filtered] in the headers
    Flower and task events display; the task still receives its arguments unchanged."""
    # The test's own namespace: its queue and the broker's binding sets are deleted afterwards.
    settings = Settings(redis_url=redis_url, namespace=keys.namespace, alpaca_secret_key=SECRET)
    app = create_app(settings)
    try:
        app.send_task(
            "tasks.fetch_quote",
            args=[f"key {SECRET}"],
            kwargs={"symbol": "AAPL", "api_key": "hunter2-kw", "note": SECRET},
        )
        (message,) = queued(client, keys.namespace, "market_data")
    finally:
        app.close()
    headers = message["headers"]
    assert SECRET not in json.dumps(headers)
    assert "hunter2-kw" not in json.dumps(headers)
    assert headers["argsrepr"] == "('key [Filtered]',)"
    assert (
        headers["kwargsrepr"] == "{'symbol': 'AAPL', 'api_key': '[Filtered]', 'note': '[Filtered]'}"
    )
    assert message["args"] == [f"key {SECRET}"]
    assert message["kwargs"] == {"symbol": "AAPL", "api_key": "hunter2-kw", "note": SECRET}


def test_a_dead_workers_messages_are_looked_for_at_every_restore_interval(redis_url: str) -> None:
    """On the Redis broker kombu scans for messages past the visibility timeout at every
    restore interval (10 s), not at every 10th (its default throttle: up to 100 s late)."""
    app = create_app(Settings(redis_url=redis_url, namespace="unused"))
    try:
        assert app.conf.broker_transport_options["unacked_restore_throttle"] == 1
    finally:
        app.close()


@pytest.mark.parametrize(("visibility_s", "sweep_s"), [(60.0, 10.0), (3600.0, 10.0), (8.0, 2.0)])
def test_the_restore_sweep_is_at_most_a_quarter_of_the_visibility_timeout(
    redis_url: str, visibility_s: float, sweep_s: float
) -> None:
    """A dead worker's messages are back within the timeout plus one sweep: kombu's 10 s, or
    a quarter of a short timeout."""
    app = create_app(
        Settings(redis_url=redis_url, namespace="unused", visibility_timeout_s=visibility_s)
    )
    try:
        options = app.conf.broker_transport_options
        assert (options["visibility_timeout"], options["unacked_restore_interval"]) == (
            visibility_s,
            sweep_s,
        )
    finally:
        app.close()
