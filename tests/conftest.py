"""Fixtures shared by the tests: a real Redis, and a fake Alpaca API on loopback.

``redis_url`` names the test Redis: ``ALCHEMISER_TEST_REDIS_URL`` (default the local one) when
it answers, else a private ``redis-server`` from PATH started for the session. Without either
the tests that need Redis fail (a suite that skipped them would hide their failures in CI).
``client`` is a client of it; ``keys`` is a namespace of one test's own, whose keys are deleted
afterwards. ``fake_alpaca`` is a started :class:`~tests.fakes.alpaca_api.FakeAlpacaAPI`;
``smtp``, ``slack``, ``hook`` and ``sentry`` are local receivers for the notification channels
and Sentry's envelopes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
import redis

from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from tests.fakes.alpaca_api import FakeAlpacaAPI
from tests.fakes.http_receiver import HttpReceiver
from tests.fakes.sentry_receiver import SentryReceiver
from tests.fakes.smtp_server import SmtpServer
from tests.namespaces import RUN_ID, fresh_namespace
from worker.embedded import private_redis_server, redis_answers

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of the test Redis (see the module docstring)."""
    url = os.environ.get("ALCHEMISER_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    if redis_answers(url):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            f"these tests need a Redis server: none answers at {url} and there is no "
            "redis-server on PATH to start one (install Redis, or point "
            "ALCHEMISER_TEST_REDIS_URL at a server)",
            pytrace=False,
        )
    with private_redis_server(binary) as private:
        yield private.url


@pytest.fixture(scope="session", autouse=True)
def no_key_left_without_expiry(redis_url: str) -> Iterator[None]:
    """After the run: no key of this run's namespaces is left in Redis without an expiry."""
    yield
    conn = connect(redis_url)
    try:
        left = sorted(
            key for key in conn.scan_iter(match=f"*-{RUN_ID}-*", count=1000) if conn.ttl(key) == -1
        )
    finally:
        conn.close()
    assert not left, f"{len(left)} keys left without expiry, e.g. {left[:10]}"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis, closed afterwards."""
    conn = connect(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def keys(client: redis.Redis) -> Iterator[KeySpace]:
    """A namespace of its own for one test; every key under it is deleted afterwards."""
    namespace = fresh_namespace("test")
    yield KeySpace(namespace)
    stale = list(client.scan_iter(match=f"{namespace}:*", count=500))
    if stale:
        client.delete(*stale)


@pytest.fixture
def fake_alpaca() -> Iterator[FakeAlpacaAPI]:
    """A fake Alpaca API on a free loopback port; stopped, its threads joined, afterwards."""
    with FakeAlpacaAPI() as api:
        yield api


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A started plain SMTP server on a free loopback port; stopped afterwards."""
    with SmtpServer() as started:
        yield started


@pytest.fixture
def slack() -> Iterator[HttpReceiver]:
    """A local Slack incoming webhook."""
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    """A local generic webhook."""
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def sentry() -> Iterator[SentryReceiver]:
    """A local Sentry ingest endpoint."""
    with SentryReceiver() as receiver:
        yield receiver
