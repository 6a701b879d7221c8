"""Every ``--json`` command prints exactly one JSON document on stdout and nothing else (log
lines go to stderr), run as a real process with no notification channel configured, against
the real Redis in a namespace of its own.

The commands are read from the Typer app, so a new ``--json`` command is covered when it is
added; one that needs arguments to succeed gets them in :data:`ARGUMENTS`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import typer.main

from resilience.deadletter.store import DeadLetterStore
from resilience.notify.alert_store import AlertStore
from resilience.notify.escalation_policy import DEFAULT_POLICY
from resilience.storage.keys import KeySpace
from tests.builders import dead_order
from tests.worker.cli_process import cli_environment, run_cli
from tests.worker.test_cli_alerts import failure
from worker.cli.main import app

Command = tuple[str, ...]

# What each command needs to succeed; "{dead}" and "{alert}" are the ids of a dead letter and
# an alert made beforehand (only for the commands that name them: they make health a warning).
ARGUMENTS: dict[Command, list[str]] = {
    ("order", "submit"): ["AAPL", "--side", "buy", "--qty", "1"],
    ("order", "cancel"): ["order-1"],
    ("dlq", "show"): ["{dead}"],
    ("dlq", "replay"): ["{dead}"],
    ("dlq", "discard"): ["{dead}"],
    ("chaos", "inject"): ["broker.submit_order", "--error", "TimeoutError"],
    ("breaker", "open"): ["broker.orders"],
    ("breaker", "close"): ["broker.orders"],
    ("breaker", "reset"): ["broker.orders"],
    ("alerts", "ack"): ["{alert}"],
    ("runbook",): ["TradingClientError"],
}


def _commands(command: Any, path: Command) -> Iterator[tuple[Command, Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, (*path, name))


def json_commands() -> list[Command]:
    """Every command of the CLI that takes ``--json``."""
    return [
        path
        for path, command in _commands(typer.main.get_command(app), ())
        if any("--json" in getattr(param, "opts", ()) for param in command.params)
    ]


def test_the_json_commands_are_found_in_the_app() -> None:
    """The enumeration sees the commands of every group (so the test below is not empty)."""
    found = set(json_commands())
    assert {("health",), ("paper", "orders"), ("order", "submit"), ("dlq", "list")} <= found
    assert {("chaos", "clock"), ("breaker", "list"), ("limits", "list"), ("alerts", "ack")} <= found
    assert ("serve",) not in found


@pytest.mark.parametrize("command", json_commands(), ids=" ".join)
def test_json_output_is_one_document_and_logs_go_to_stderr(
    command: Command, redis_url: str, client: redis.Redis, keys: KeySpace
) -> None:
    """`alchemiser COMMAND --json` exits 0 and stdout parses as one JSON document."""
    args = ARGUMENTS.get(command, [])
    ids: dict[str, str] = {}
    if "{dead}" in args:
        DeadLetterStore(client, keys).add(dead_order("dl-1"))
        ids["dead"] = "dl-1"
    if "{alert}" in args:
        alert = AlertStore(client, keys).note(failure("MarketDataError"), DEFAULT_POLICY.rules[2])
        ids["alert"] = alert.alert_id
    args = [arg.format(**ids) for arg in args]
    env = cli_environment(ALCHEMISER_NAMESPACE=keys.namespace, ALCHEMISER_REDIS_URL=redis_url)

    result = run_cli(*command, *args, "--json", env=env)

    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)  # exactly one document: any other line makes this fail
