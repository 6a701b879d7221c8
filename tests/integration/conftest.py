"""Integration fixtures: the real Redis server and real Celery worker processes.

Each test gets its own namespace (queues and state keys), so tests never see each other's
messages and leave nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resilience.connection import connect
from tests.integration.harness import Deployment
from worker.app import create_app
from worker.runtime import build_runtime
from worker.settings import Settings


@pytest.fixture
def deployment_factory(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    created: list[Deployment] = []

    def make(**overrides: str) -> Deployment:
        namespace = f"it-{uuid.uuid4().hex[:10]}"
        env = {
            "ALCHEMISER_REDIS_URL": redis_url,
            "ALCHEMISER_NAMESPACE": namespace,
            "ALCHEMISER_LOG_LEVEL": "INFO",
            **overrides,
        }
        settings = Settings(
            redis_url=redis_url,
            namespace=namespace,
            **{k.removeprefix("ALCHEMISER_").lower(): v for k, v in overrides.items()},
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
        client = connect(redis_url)
        keys = list(client.scan_iter(match=f"{deployment.settings.namespace}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def deployment(deployment_factory: Callable[..., Deployment]) -> Deployment:
    """A fresh namespace with default settings (no workers started yet)."""
    return deployment_factory()
