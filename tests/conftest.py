"""Fixtures shared by the tests that talk to a real Redis.

``redis_url`` names the test Redis (``ALCHEMISER_TEST_REDIS_URL``, default the local one) and
fails the tests that need it when it does not answer: a suite that skips them would hide their
failures in CI. ``client`` is a client of it; ``keys`` is a namespace of one test's own, whose
keys are deleted afterwards. tests/integration overrides ``redis_url`` with its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from uuid import uuid4

import pytest
import redis

from resilience.connection import connect
from resilience.keys import KeySpace

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the test Redis; the tests that need it fail when it does not answer."""
    url = os.environ.get("ALCHEMISER_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    probe = connect(url)
    try:
        probe.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        pytest.fail(
            f"these tests need a Redis server at {url} ({exc}): start one with "
            '`redis-server --daemonize yes --port 6379 --save ""` '
            "or point ALCHEMISER_TEST_REDIS_URL at one",
            pytrace=False,
        )
    finally:
        probe.close()
    return url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis, closed afterwards."""
    conn = connect(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def keys(client: redis.Redis) -> Iterator[KeySpace]:
    """A namespace of its own for one test; every key under it is deleted afterwards."""
    namespace = f"test-{uuid4().hex}"
    yield KeySpace(namespace)
    stale = list(client.scan_iter(match=f"{namespace}:*", count=500))
    if stale:
        client.delete(*stale)
