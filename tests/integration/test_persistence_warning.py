"""A worker says at start when the Redis holding its state would lose it on a restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from resilience.storage.persistence import persistence_of
from tests.namespaces import fresh_namespace
from worker.application import create_app
from worker.embedded import private_redis_server
from worker.fleet import start_worker, wait_until_ready
from worker.settings import Settings

pytestmark = pytest.mark.integration


def test_persistence_is_read_from_the_server() -> None:
    """Neither AOF nor RDB: not durable; AOF on, or a save rule: durable."""
    binary = shutil.which("redis-server")
    assert binary is not None
    with private_redis_server(binary) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert persistence_of(client).durable is False
        client.config_set("save", "900 1")
        assert persistence_of(client).durable is True
        client.config_set("save", "")
        client.config_set("appendonly", "yes")
        assert persistence_of(client).durable is True
        client.config_set("appendonly", "no")  # in-memory again: a quick stop
        client.close()


def test_a_worker_warns_at_start_only_without_persistence(tmp_path: Path) -> None:
    """On an in-memory Redis the worker logs redis_without_persistence once; with AOF on, a
    worker started next logs nothing of the kind."""
    binary = shutil.which("redis-server")
    assert binary is not None
    with private_redis_server(binary) as server:
        namespace = fresh_namespace("it-persist")
        env = {"ALCHEMISER_REDIS_URL": server.url, "ALCHEMISER_NAMESPACE": namespace}
        app = create_app(Settings(redis_url=server.url, namespace=namespace))
        for durable in (False, True):
            if durable:
                redis.Redis.from_url(server.url).config_set("appendonly", "yes")
            worker = start_worker(env, tmp_path, concurrency=1)
            try:
                wait_until_ready(app, [worker], timeout_s=60)
                assert worker.log().count('"redis_without_persistence"') == (0 if durable else 1)
            finally:
                worker.stop(timeout_s=10)
        redis.Redis.from_url(server.url).config_set("appendonly", "no")  # a quick stop
