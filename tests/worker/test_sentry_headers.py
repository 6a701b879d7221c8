"""Task messages published with Sentry's Celery integration active keep the trace but not the
DSN's public key: the baggage header is stored in Redis with every queued task (issue 13)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
import sentry_sdk
from pydantic import SecretStr

from resilience.scrub import Scrubber
from resilience.storage.keys import KeySpace
from tests.fakes.sentry_receiver import SentryReceiver
from worker.application import create_app
from worker.publishing import without_public_key
from worker.sentry import SentryReporter, sentry_options
from worker.settings import Settings

PUBLIC_KEY = "f3a1c0ffee5ca1ab1e0dd5eed5a1ad00"


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    """A local Sentry ingest endpoint."""
    with SentryReceiver() as served:
        yield served


def test_a_published_task_carries_no_sentry_public_key(
    client: redis.Redis, redis_url: str, keys: KeySpace, receiver: SentryReceiver
) -> None:
    """With sentry-sdk and its Celery integration initialised, the raw message queued in Redis
    holds the trace (sentry-trace, baggage's trace id) but never the DSN's public key."""
    settings = Settings(
        redis_url=redis_url,
        namespace=keys.namespace,
        sentry_dsn=SecretStr(receiver.dsn(key=PUBLIC_KEY)),
    )
    app = create_app(settings)
    options = sentry_options(settings, SentryReporter(Scrubber()))
    # Only the Celery integration (the worker's): others (redis) would outlive the test.
    options.update(default_integrations=False, auto_enabling_integrations=False)
    sentry_sdk.init(**options)
    try:
        with sentry_sdk.isolation_scope():
            app.send_task("tasks.fetch_quote", kwargs={"symbol": "AAPL"})
        raw = client.lrange(f"{keys.broker_prefix}market_data", 0, -1)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        app.close()
    (message,) = [json.loads(item) for item in raw]
    headers = message["headers"]
    assert "sentry-trace" in headers  # the integration was active: traces still propagate
    assert "sentry-trace_id=" in headers["baggage"]
    assert PUBLIC_KEY not in json.dumps(message)


@pytest.mark.parametrize(
    ("baggage", "expected"),
    [
        (
            "sentry-trace_id=abc,sentry-public_key=k1,sentry-environment=prod",
            "sentry-trace_id=abc,sentry-environment=prod",
        ),
        ("sentry-public_key=k1", ""),
        ("other=1, sentry-public_key = k1 ,sentry-release=r", "other=1,sentry-release=r"),
        ("sentry-trace_id=abc", "sentry-trace_id=abc"),
    ],
)
def test_baggage_loses_only_its_public_key_member(baggage: str, expected: str) -> None:
    """Every other baggage member stays, in order."""
    headers = {"baggage": baggage, "headers": {"baggage": baggage, "x": 1}, "id": "t"}
    stripped = without_public_key(headers)
    assert stripped == {"baggage": expected, "headers": {"baggage": expected, "x": 1}, "id": "t"}
    assert headers["baggage"] == baggage  # the caller's headers are not changed
