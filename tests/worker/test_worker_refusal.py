"""``celery -A worker worker`` with a bad setting: it stops at once with the one line the CLI
prints for it (exit 2), never a traceback of Celery's app loader, and never starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.worker.cli_process import ROOT, cli_environment, run_cli

# Loading Celery and the settings takes about a second; a worker that started would run on.
REFUSAL_TIMEOUT_S = 60.0


def refused_worker_line(env: dict[str, str]) -> str:
    """Start a worker with ``env``; assert it exits 2 within the timeout with one line."""
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-P", "solo"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=REFUSAL_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    return line


def test_a_worker_with_an_infinite_visibility_timeout_is_refused_naming_it() -> None:
    """ALCHEMISER_VISIBILITY_TIMEOUT_S=inf (unacked messages never restored) stops the worker."""
    env = cli_environment(ALCHEMISER_VISIBILITY_TIMEOUT_S="inf")
    line = refused_worker_line(env)
    assert line == "error: invalid settings: visibility_timeout_s: Input should be a finite number"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ALCHEMISER_LOG_LEVEL", "LOUD"), ("ALCHEMISER_REDIS_URL", "redis://127.0.0.1:6379/abc")],
)
def test_the_worker_refuses_a_bad_setting_with_the_cli_line(variable: str, value: str) -> None:
    """The worker and the CLI load settings in one place and say the same thing."""
    env = cli_environment(**{variable: value})
    cli = run_cli("dlq", "list", env=env)
    assert refused_worker_line(env) == cli.stderr.strip()
    assert variable in cli.stderr
