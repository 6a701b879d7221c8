"""README's "Your own resilient task" runs as written, on a real worker: a non-trading app built
only from ``resilience``'s public names retries by its error class's policy and dead-letters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from resilience.deadletter.store import DeadLetterStore
from resilience.storage.keys import KeySpace
from tests.integration.harness import wait_for
from tests.worker.cli_process import cli_environment, run_cli

ROOT = Path(__file__).resolve().parents[1]
README_URL = "redis://localhost:6379/0"


def readme_example() -> str:
    """The Python block under README's "## Your own resilient task"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own resilient task", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    return str(blocks[0])


def test_the_example_is_short_and_uses_only_the_public_api() -> None:
    """At most 20 lines of code, importing from ``resilience`` itself, nothing deeper."""
    code = [line for line in readme_example().splitlines() if line.strip()]
    assert len(code) <= 20
    imports = [line for line in code if line.startswith(("from resilience", "import resilience"))]
    assert imports and all(line.startswith("from resilience import") for line in imports)


@pytest.fixture
def mailer(tmp_path: Path, redis_url: str, keys: KeySpace) -> Iterator[Celery]:
    """The example as ``mailer.py`` on the test Redis, in the test's namespace (its broker keys
    too), with a real ``celery -A mailer worker`` consuming it; the app, imported here."""
    source = readme_example()
    assert README_URL in source and 'namespace="mailer"' in source
    source = source.replace(README_URL, redis_url)
    source = source.replace('namespace="mailer"', f'namespace="{keys.namespace}"')
    source += f'\napp.conf.broker_transport_options = {{"global_keyprefix": "{keys.namespace}:"}}\n'
    (tmp_path / "mailer.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mailer", "worker", "-P", "solo", "-c", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import mailer as module  # noqa: PLC0415 - written by this fixture

        yield module.app
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mailer", None)
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_the_example_retries_by_its_policy_then_dead_letters(
    mailer: Celery, client: redis.Redis, keys: KeySpace, redis_url: str
) -> None:
    """``send.delay`` runs 4 times (``max_attempts=4``), each retry waiting a full-jitter share
    of 0.5, 1 and 2 s, then one dead letter of class MailServerBusy holding every attempt;
    ``alchemiser dlq list`` in the app's namespace shows it."""
    mailer.tasks["mailer.send"].delay("ops@example.com")
    store = DeadLetterStore(client, keys)
    wait_for(lambda: store.count() == 1, 30, "the dead letter")

    (entry,) = store.entries()
    assert (entry.task, entry.error_type) == ("mailer.send", "MailServerBusy")
    assert "ops@example.com: 421 try again later" in entry.message
    assert [a["attempt"] for a in entry.attempts] == [1, 2, 3, 4]
    assert [a["action"] for a in entry.attempts] == ["retry", "retry", "retry", "dead_letter"]
    waits = [a["countdown_s"] for a in entry.attempts[:3]]
    assert all(0 <= wait <= cap for wait, cap in zip(waits, (0.5, 1.0, 2.0), strict=True))

    listed = run_cli(
        "dlq",
        "list",
        "--json",
        env=cli_environment(ALCHEMISER_REDIS_URL=redis_url, ALCHEMISER_NAMESPACE=keys.namespace),
    )
    assert listed.returncode == 0, listed.stderr
    assert [row["id"] for row in json.loads(listed.stdout)] == [entry.id]
