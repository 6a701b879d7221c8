"""What ``dlq list --json`` and ``dlq show --json`` print of a dead letter: the CONTRACT's
names, the idempotency key as the trading app calls it (``client_order_id``)."""

from __future__ import annotations

import json
from dataclasses import asdict

from tests.builders import dead_order
from worker.cli.dlq import _row, _whole

CONTRACT_ROW_KEYS = [
    "id",
    "task",
    "error_type",
    "message",
    "attempts",
    "dead_at",
    "status",
    "client_order_id",
]


def test_a_row_has_exactly_the_contract_keys() -> None:
    """The ``dlq list --json`` row: the CONTRACT keys, attempts counted, the key as
    ``client_order_id``."""
    entry = dead_order()
    row = _row(entry)
    assert list(row) == CONTRACT_ROW_KEYS
    assert row == {
        "id": "dl-1",
        "task": "tasks.submit_order",
        "error_type": entry.error_type,
        "message": entry.message,
        "attempts": len(entry.attempts),
        "dead_at": entry.dead_at,
        "status": "dead",
        "client_order_id": "alc-1",
    }
    json.dumps(row)


def test_a_task_without_an_idempotency_key_has_a_null_client_order_id() -> None:
    """A task that is not an order has ``client_order_id`` null in its row."""
    assert (
        _row(dead_order(task="tasks.fetch_quote", idempotency_key=None))["client_order_id"] is None
    )


def test_show_prints_every_field_with_the_key_in_its_place() -> None:
    """``dlq show --json``: every field of the entry, ``client_order_id`` where the key is."""
    entry = dead_order()
    whole = _whole(entry)
    names = list(asdict(entry))
    assert list(whole) == [
        "client_order_id" if name == "idempotency_key" else name for name in names
    ]
    assert whole["client_order_id"] == "alc-1"
