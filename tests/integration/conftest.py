"""Integration fixtures: the real Redis server and real Celery worker processes.

Each test gets its own namespace (queues and state keys), so tests never see each other's
messages and leave nothing behind.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resilience.storage.connection import connect
from tests.integration.harness import Deployment
from tests.namespaces import fresh_namespace
from worker.application import create_app
from worker.runtime import build_runtime
from worker.settings import Settings

# The spine's tests inject failure rates that would trip the default breakers and drain the
# retry budget, hiding the retry policy under test; they run with both off. Tests of the guard
# pass their own ALCHEMISER_RESOURCES.
SPINE_RESOURCES = json.dumps(
    {
        "broker.orders": {"breaker": False, "retry_budget": False},
        "broker.data": {"breaker": False, "retry_budget": False},
    }
)

# Settings the environment gives as JSON (pydantic-settings parses them; init kwargs are not).
JSON_SETTINGS = frozenset(
    {"ALCHEMISER_RESOURCES", "ALCHEMISER_ESCALATION", "ALCHEMISER_NOTIFICATION_LIMITS"}
)


@pytest.fixture
def deployment_factory(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    created: list[Deployment] = []

    def make(on_redis: str | None = None, **overrides: str) -> Deployment:
        """A deployment on the shared Redis, or on the private server at ``on_redis``."""
        url = on_redis or redis_url
        namespace = fresh_namespace("it")
        env = {
            "ALCHEMISER_REDIS_URL": url,
            "ALCHEMISER_NAMESPACE": namespace,
            "ALCHEMISER_LOG_LEVEL": "INFO",
            "ALCHEMISER_RESOURCES": SPINE_RESOURCES,
            **overrides,
        }
        settings = Settings(
            redis_url=url,
            namespace=namespace,
            **{
                k.removeprefix("ALCHEMISER_").lower(): json.loads(v) if k in JSON_SETTINGS else v
                for k, v in env.items()
                if k not in ("ALCHEMISER_REDIS_URL", "ALCHEMISER_NAMESPACE")
            },
        )
        log_dir = tmp_path / namespace
        log_dir.mkdir()
        deployment = Deployment(
            settings=settings,
            env=env,
            log_dir=log_dir,
            app=create_app(settings),
            runtime=build_runtime(settings),
        )
        created.append(deployment)
        return deployment

    yield make
    for deployment in created:
        for worker in deployment.workers:
            worker.stop(timeout_s=10)
        if deployment.settings.redis_url != redis_url:
            continue  # a private server: it goes away with its data
        client = connect(redis_url)
        keys = list(client.scan_iter(match=f"{deployment.settings.namespace}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def deployment(deployment_factory: Callable[..., Deployment]) -> Deployment:
    """A fresh namespace with default settings (no workers started yet)."""
    return deployment_factory()


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return shutil.which("rabbitmqctl") is not None
    except OSError:
        return False


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of the test's own, deleted afterwards (skipped without one)."""
    if not _rabbitmq_answers():
        pytest.skip("no RabbitMQ with rabbitmqctl on 127.0.0.1:5672")
    vhost = f"alchemiser-it-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)

    ctl("add_vhost", vhost)
    ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield vhost
    ctl("delete_vhost", vhost)
