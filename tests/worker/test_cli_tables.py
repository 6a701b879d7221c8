"""The tables of ``dlq list``, ``alerts list``, ``breaker list`` and ``limits list``: their headers
are the field names of the same command's ``--json`` (dotted for nested fields), and ids are
never broken, even in an 80-column terminal. Real Redis, one namespace and config per test."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import redis

from resilience.deadletter.store import DeadLetterStore
from resilience.guard.admission import Guard
from resilience.notify.alert_store import AlertStore
from resilience.notify.escalation_policy import DEFAULT_POLICY
from resilience.storage.keys import KeySpace
from tests.worker.test_cli import as_json, order_letter, run, store
from tests.worker.test_cli_alerts import failure
from tests.worker.test_cli_breaker import guard, ns

__all__ = ["guard", "ns", "store"]  # the fixtures, shared with the modules they come from

ROOT = Path(__file__).resolve().parents[2]
DEAD_ID = "3f2a9c1b-0d4e-4c6a-9b1f-7e8d2c5a0b91"  # a Celery task id, as workers dead-letter it
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def headers(table: str) -> list[str]:
    """The column headers of the one table in ``table`` (pieces of a folded header joined)."""
    rows = [line.strip().strip("┃").split("┃") for line in table.splitlines() if "┃" in line]
    return ["".join(row[i].strip() for row in rows) for i in range(len(rows[0]))]


def has_path(document: dict[str, Any], path: str) -> bool:
    """Whether the dotted ``path`` names a field of ``document``."""
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def in_terminal(*args: str, columns: int = 80) -> list[str]:
    """The lines `python -m worker.cli.main ARGS` prints in a terminal ``columns`` wide (a
    pseudo-terminal, as an operator's), without escape codes."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    with subprocess.Popen(
        [sys.executable, "-m", "worker.cli.main", *args],
        cwd=ROOT,
        env=env,
        stdout=follower,
        stderr=subprocess.PIPE,
    ) as process:
        os.close(follower)
        output = b""
        while select.select([leader], [], [], 60)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    return ANSI.sub("", output.decode()).replace("\r\n", "\n").splitlines()


def open_alert(client: redis.Redis, ns: str) -> str:
    """Open one alert, as the escalation task opens it; its id."""
    return (
        AlertStore(client, KeySpace(ns))
        .note(failure("MarketDataError"), DEFAULT_POLICY.rules[2])
        .alert_id
    )


def test_dlq_list_headers_are_its_json_fields(store: DeadLetterStore) -> None:
    """`dlq list`: error_type and dead_at as in JSON, not 'error' and 'dead at'."""
    store.add(order_letter(DEAD_ID))
    [row] = as_json(run("dlq", "list", "--json"))
    names = headers(run("dlq", "list").stdout)
    assert names == [
        "id",
        "task",
        "error_type",
        "attempts",
        "dead_at",
        "status",
        "client_order_id",
        "message",
    ]
    assert all(has_path(row, name) for name in names)


def test_alerts_list_headers_are_its_json_fields(client: redis.Redis, ns: str) -> None:
    """`alerts list`: count, level and opened_at as in JSON, not 'failures' and 'level told'."""
    open_alert(client, ns)
    [row] = as_json(run("alerts", "list", "--json"))
    names = headers(run("alerts", "list").stdout)
    assert names == ["id", "group", "severity", "status", "count", "level", "rule", "opened_at"]
    assert all(has_path(row, name) for name in names)


def test_breaker_list_headers_are_its_json_fields(guard: Guard) -> None:
    """`breaker list`: failure_rate, slow_call_rate, open_until, probes_in_flight and
    opened_count as in JSON."""
    rows = as_json(run("breaker", "list", "--json"))
    names = headers(run("breaker", "list").stdout)
    assert names == [
        "name",
        "state",
        "failure_rate",
        "slow_call_rate",
        "calls",
        "open_until",
        "probes_in_flight",
        "opened_count",
    ]
    assert all(has_path(row, name) for row in rows for name in names)


def test_limits_list_headers_are_its_json_fields(guard: Guard) -> None:
    """`limits list`: every header is a field (nested ones dotted) of some JSON row."""
    rows = as_json(run("limits", "list", "--json"))
    names = headers(run("limits", "list").stdout)
    assert names == [
        "name",
        "rate_limit",
        "rate_limit.remaining",
        "rate_limit.next_allowed_in_s",
        "concurrency",
        "retry_budget",
        "permit_lease",
        "admitted",
        "refused",
        "without_redis",
    ]
    assert all(any(has_path(row, name) for row in rows) for name in names)


def test_ids_stay_whole_in_an_80_column_terminal(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """In an 80-column terminal the dead letter's 36-character id and the alert's id each stand
    on one line of their table, and the tables still fit in 80 columns."""
    store.add(order_letter(DEAD_ID, message="broker timed out after 10 s on every attempt"))
    alert_id = open_alert(client, ns)
    for args, whole_id in ((("dlq", "list"), DEAD_ID), (("alerts", "list"), alert_id)):
        lines = in_terminal(*args)
        assert any(whole_id in line for line in lines), "\n".join(lines)
        assert max(len(line) for line in lines) <= 80, "\n".join(lines)
