"""Tests of ``resilience.runtime``: the runtime any Celery app builds for its ResilientTasks."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
import redis
from celery import Celery

from resilience import (
    AlchemiserError,
    BreakerConfig,
    LazyRuntime,
    ResilientTask,
    ResourceConfig,
    build_resilience_runtime,
    install_runtime,
)
from resilience.deadletter.store import DeadLetterStore
from resilience.storage.keys import KeySpace
from resilience.task import RUNTIME_SETTING
from tests.forking import run_forked


def test_lazy_runtime_builds_once_per_process_across_threads() -> None:
    """Eight threads asking at once get one build; the built object is returned each time."""
    builds: list[object] = []
    gate = threading.Barrier(8)

    def build() -> object:
        builds.append(object())
        return builds[-1]

    lazy = LazyRuntime(build)
    assert lazy.built() is None
    seen: list[object] = []

    def ask() -> None:
        gate.wait()
        seen.append(lazy())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert seen == builds * 8
    assert lazy.built() is builds[0]


def test_a_forked_child_builds_its_own() -> None:
    """A prefork child never uses the runtime (and sockets) its parent built."""
    builds: list[int] = []
    lazy = LazyRuntime(lambda: builds.append(len(builds)) or len(builds))
    assert lazy() == 1

    def child() -> int:
        if lazy.built() is not None:
            return 3  # the parent's runtime leaked into the child
        return 0 if lazy() == 2 and lazy() == 2 else 4

    assert run_forked(child) == 0
    assert lazy() == 1


def test_without_resources_there_is_no_guard(redis_url: str, keys: KeySpace) -> None:
    """The defaults: no guard, no escalation task, the app's namespace for every key."""
    runtime = build_resilience_runtime(redis_url, keys.namespace)
    assert runtime.guard is None
    assert runtime.escalation_task is None
    assert runtime.keys.namespace == keys.namespace
    assert runtime.redis.ping()


def test_resources_build_a_guard_over_them(redis_url: str, keys: KeySpace) -> None:
    """``resources`` become the guard's (an entry that protects nothing is left out)."""
    smtp = ResourceConfig(name="mail.smtp", breaker=BreakerConfig())
    runtime = build_resilience_runtime(redis_url, keys.namespace, resources={"mail.smtp": smtp})
    assert runtime.guard is not None
    assert set(runtime.guard.resources) == {"mail.smtp"}


class RefusedError(AlchemiserError):
    """Never retried (the base policy) and escalated (policy.escalate)."""


@pytest.mark.parametrize(
    ("escalation_task", "sent"), [(None, []), ("plain.escalate", ["plain.escalate"])]
)
def test_a_dead_letter_is_escalated_only_to_a_named_task(
    redis_url: str,
    client: redis.Redis,
    keys: KeySpace,
    escalation_task: str | None,
    sent: list[str],
) -> None:
    """A dead letter whose class escalates is stored either way; it is sent to the escalation
    task the runtime names, and with ``None`` (the default) nothing is published to a queue
    nobody reads."""
    app = Celery("plain", broker="memory://", set_as_current=False)
    install_runtime(
        app,
        LazyRuntime(
            lambda: build_resilience_runtime(
                redis_url, keys.namespace, escalation_task=escalation_task
            )
        ),
    )
    assert callable(app.conf[RUNTIME_SETTING])

    @app.task(base=ResilientTask, name="plain.refuse", bind=True, shared=False)
    def refuse(self: ResilientTask) -> None:
        raise RefusedError("no")

    assert RefusedError.policy.escalate
    with mock.patch.object(app, "send_task") as send_task:
        refuse.apply(throw=False)
    assert [call.args[0] for call in send_task.call_args_list] == sent
    (entry,) = DeadLetterStore(client, keys).entries()
    assert (entry.task, entry.error_type) == ("plain.refuse", "RefusedError")
