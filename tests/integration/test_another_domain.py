"""``resilience`` runs another domain's Celery app unchanged: a mail app (tests/apps/mailer.py)
that imports nothing of ``tasks`` or ``worker`` gets the error hierarchy's policies, dead
letters and a fleet-wide breaker, on a real worker and the real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

from resilience.deadletter.store import DeadLetterStore
from resilience.guard.admission import Guard
from resilience.guard.status import BreakerState, GuardStatus
from resilience.observability.outcomes import OutcomeCounter
from resilience.storage.keys import KeySpace
from tests.fakes.http_receiver import HttpReceiver, Reply
from tests.integration.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]


def mailer_environment(redis_url: str, namespace: str, api_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "MAILER_REDIS_URL": redis_url,
        "MAILER_NAMESPACE": namespace,
        "MAILER_API_URL": api_url,
    }


def test_the_app_imports_nothing_of_the_trading_application(redis_url: str, keys: KeySpace) -> None:
    """In a fresh interpreter, loading the mail app (and every module its worker loads for its
    tasks) leaves ``tasks`` and ``worker`` unimported."""
    probe = (
        "import sys, tests.apps.mailer as m; m.app.loader.import_default_modules();"
        " print(sorted({n.split('.')[0] for n in sys.modules} & {'tasks', 'worker'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=mailer_environment(redis_url, keys.namespace, "http://127.0.0.1:9"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def mail_api() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def mailer(redis_url: str, keys: KeySpace, mail_api: HttpReceiver) -> Iterator[ModuleType]:
    """A real ``celery -A tests.apps.mailer worker`` on the test Redis; the app's module,
    imported here with the same settings."""
    env = mailer_environment(redis_url, keys.namespace, mail_api.url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.apps.mailer", "worker", "-P", "solo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {
        name: os.environ.get(name)
        for name in ("MAILER_REDIS_URL", "MAILER_NAMESPACE", "MAILER_API_URL")
    }
    os.environ.update({name: env[name] for name in saved})
    try:
        import tests.apps.mailer as module  # noqa: PLC0415 - reads the environment set above

        yield module
    finally:
        sys.modules.pop("tests.apps.mailer", None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_a_refusal_is_dead_lettered_and_failures_open_the_breaker_fleet_wide(
    mailer: ModuleType, mail_api: HttpReceiver, client: redis.Redis, keys: KeySpace
) -> None:
    """A 400 is a ValidationError (the generic family of a refusal): dead-lettered on its first
    run. 503s are RemoteServiceErrors: retried, counted by the breaker of ``mail.api``, which
    opens for the whole fleet: any process asking for ``mail.api`` is refused."""
    send = mailer.app.tasks["mailer.send"]
    mail_api.default = Reply(status=400, body=b"bad address")
    send.delay("nobody@")
    store = DeadLetterStore(client, keys)
    wait_for(lambda: store.count() == 1, 30, "the refused mail's dead letter")
    (refused,) = store.entries()
    assert (refused.task, refused.error_type, len(refused.attempts)) == (
        "mailer.send",
        "ValidationError",
        1,
    )

    mail_api.default = Reply(status=503, body=b"try later")
    for n in range(3):
        send.delay(f"user{n}@example.com")
    guard = GuardStatus(client, keys, {"mail.api": mailer.MAIL_API})
    wait_for(
        lambda: guard.breaker("mail.api").state is BreakerState.OPEN, 30, "the breaker to open"
    )
    # Another process (this test) asking for the resource is refused by the same breaker.
    other = Guard(client, keys, {"mail.api": mailer.MAIL_API})
    admission = other.admit(("mail.api",), ticket="another-process")
    assert not admission.admitted and admission.reason.startswith("breaker")
    # It opened after at least minimum_calls failures, before every attempt of the three
    # mails (4 each) reached the API.
    failed_calls = len(mail_api.requests) - 1
    assert 3 <= failed_calls < 3 * 4
    assert OutcomeCounter(client, keys).totals().get("retried:mailer.send", 0) >= 1
    assert [e.error_type for e in store.entries()] == ["ValidationError"]
