"""Numeric arguments of the ``alchemiser`` CLI out of their bounds: one line on stderr naming
the option and its bound, exit 2, nothing stored or queued; never an OverflowError."""

from __future__ import annotations

import json

import pytest
import redis

from resilience.storage.keys import KeySpace
from tests.worker.cli_process import cli_environment, run_cli
from tests.worker.test_cli import queued

SUBMIT = ("order", "submit", "AAPL", "--side", "buy", "--qty", "1")
INJECT = ("chaos", "inject", "broker.get_quote", "--error", "none")

# (arguments, the one line's text after "error: ")
OUT_OF_BOUNDS = [
    (
        (*SUBMIT, "--ttl", "1e12"),
        "--ttl must be a finite number of seconds > 0 and <= 604800, got 1e+12",
    ),
    ((*SUBMIT, "--ttl", "nan"), "--ttl must be a finite number of seconds > 0 and <= 604800"),
    (
        ("dlq", "replay", "--all", "--dry-run", "--ttl", "1e12"),
        "--ttl must be a finite number of seconds > 0 and <= 604800, got 1e+12",
    ),
    (
        (*INJECT, "--duration", "1e12"),
        "--duration must be a finite number of seconds > 0 and <= 604800, got 1e+12",
    ),
    (
        (*INJECT, "--retry-after", "1e300"),
        "--retry-after must be a finite number of seconds >= 0 and <= 86400, got 1e+300",
    ),
    (
        (*INJECT, "--count", "100000000000000000000000"),
        "--count must be a whole number from 1 to 1000000, got 100000000000000000000000",
    ),
    (
        (*INJECT, "--latency-ms", "99999999999999"),
        "--latency-ms must be a whole number from 0 to 600000, got 99999999999999",
    ),
    (
        ("chaos", "clock", "1e308"),
        "the clock shift would be +1e+308 s; it stays within +-3.1536e+07 s (a year) either way",
    ),
    (
        ("chaos", "clock", "--", "-31536001"),
        "the clock shift would be -3.1536e+07 s; it stays within +-3.1536e+07 s (a year) "
        "either way",
    ),
]


@pytest.mark.parametrize(("args", "says"), OUT_OF_BOUNDS)
def test_a_numeric_argument_out_of_bounds_is_one_line_and_exit_2(
    redis_url: str, client: redis.Redis, keys: KeySpace, args: tuple[str, ...], says: str
) -> None:
    """The line names the option and its bound; no order queued, no rule, no clock shift."""
    env = cli_environment(ALCHEMISER_REDIS_URL=redis_url, ALCHEMISER_NAMESPACE=keys.namespace)
    result = run_cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {says}")
    assert queued(client, keys.namespace, "trading") == []
    assert json.loads(run_cli("chaos", "list", "--json", env=env).stdout) == []
    shift = run_cli("chaos", "clock", "--json", env=env)
    assert json.loads(shift.stdout) == {"clock_shift_s": 0.0}


def test_arguments_at_their_bounds_are_accepted(
    redis_url: str, client: redis.Redis, keys: KeySpace
) -> None:
    """A week's --ttl queues the order; a year's clock shift is in force."""
    env = cli_environment(ALCHEMISER_REDIS_URL=redis_url, ALCHEMISER_NAMESPACE=keys.namespace)
    assert run_cli(*SUBMIT, "--ttl", "604800", "--json", env=env).returncode == 0
    assert len(queued(client, keys.namespace, "trading")) == 1
    result = run_cli("chaos", "clock", "31536000", "--json", env=env)
    assert json.loads(result.stdout) == {"clock_shift_s": 31536000.0}, result.stderr
