"""``alchemiser alerts list`` and ``alerts ack`` against a real Redis, one namespace per test;
the alerts are opened by the real AlertStore, as the escalation task opens them."""

from __future__ import annotations

import pytest
import redis

from resilience.notify.alert_store import AlertStore
from resilience.notify.escalation_policy import DEFAULT_POLICY
from resilience.policy.context import ErrorNotificationData
from resilience.storage.keys import KeySpace
from tests.worker.test_cli import DOWN_URL, as_json, ns, queued, run

__all__ = ["ns"]  # the fixture, shared with test_cli

CONTRACT_KEYS = {"id", "group", "severity", "status", "count", "level", "rule", "opened_at"}


def failure(error_type: str, severity: str = "high") -> ErrorNotificationData:
    return {
        "severity": severity,
        "priority": "P2",
        "title": f"{error_type} in trading: submit_order",
        "error_type": error_type,
        "error_id": "err-1",
        "message": "failed",
        "component": "trading",
        "operation": "submit_order",
        "task_name": "tasks.submit_order",
        "occurred_at": "2026-11-29T03:00:00+00:00",
    }


def test_list_shows_open_alerts_and_ack_stops_their_escalation(
    client: redis.Redis, ns: str
) -> None:
    """Two open alerts are listed (JSON: one document with the contract's keys); ack of one
    makes it acknowledged; the table names both."""
    store = AlertStore(client, KeySpace(ns))
    high = DEFAULT_POLICY.rules[2]
    first = store.note(failure("MarketDataError"), high)
    store.note(failure("MarketDataError"), high)
    second = store.note(failure("DatabaseError", "critical"), DEFAULT_POLICY.rules[0])

    listed = as_json(run("alerts", "list", "--json"))
    assert [set(doc) for doc in listed] == [CONTRACT_KEYS, CONTRACT_KEYS]
    by_id = {doc["id"]: doc for doc in listed}
    assert (by_id[first.alert_id]["count"], by_id[first.alert_id]["status"]) == (2, "firing")
    assert by_id[second.alert_id]["severity"] == "critical"

    acked = run("alerts", "ack", first.alert_id)
    assert acked.exit_code == 0, acked.output
    assert f"acknowledged {first.alert_id}" in acked.stdout
    assert as_json(run("alerts", "ack", first.alert_id, "--json")) == {
        "id": first.alert_id,
        "status": "acknowledged",
    }
    statuses = {doc["id"]: doc["status"] for doc in as_json(run("alerts", "list", "--json"))}
    assert statuses == {first.alert_id: "acknowledged", second.alert_id: "firing"}

    table = run("alerts", "list")
    assert table.exit_code == 0
    assert "MarketDataError:trading" in table.stdout and "DatabaseError:trading" in table.stdout


def test_ack_of_an_unknown_alert_fails_with_a_message(ns: str) -> None:
    """An id no open alert has: exit 1, the reason on stderr, nothing on stdout."""
    result = run("alerts", "ack", "no-such-alert")
    assert result.exit_code == 1
    assert "no open alert 'no-such-alert'" in result.stderr
    assert result.stdout == ""


def test_no_open_alerts(ns: str) -> None:
    """Nothing open: an empty JSON list, and the table says so."""
    assert as_json(run("alerts", "list", "--json")) == []
    assert "no open alerts" in run("alerts", "list").stdout


def test_redis_down_is_one_line_and_exit_1(ns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis unreachable: exit 1 with one line on stderr, as every command."""
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", DOWN_URL)
    result = run("alerts", "list")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1


def test_ack_asks_the_workers_to_tell_pagerduty(client: redis.Redis, ns: str) -> None:
    """A successful ack publishes one tasks.escalate step, `acknowledged`, on the escalation
    queue (the workers tell the receivers that track incidents); an unknown id publishes
    nothing."""
    store = AlertStore(client, KeySpace(ns))
    noted = store.note(failure("DatabaseError", "critical"), DEFAULT_POLICY.rules[0])
    assert run("alerts", "ack", "no-such-alert").exit_code != 0
    assert queued(client, ns, "escalation") == []
    assert run("alerts", "ack", noted.alert_id).exit_code == 0
    (message,) = queued(client, ns, "escalation")
    assert message["headers"]["task"] == "tasks.escalate"
    assert message["kwargs"] == {"acknowledged": {"alert_id": noted.alert_id}}


def test_ack_with_the_broker_down_still_acknowledges_and_says_pagerduty_was_not_told(
    client: redis.Redis, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AlertStore(client, KeySpace(ns))
    noted = store.note(failure("DatabaseError", "critical"), DEFAULT_POLICY.rules[0])
    monkeypatch.setenv("ALCHEMISER_BROKER_URL", DOWN_URL)
    result = run("alerts", "ack", noted.alert_id)
    assert result.exit_code == 0, result.output
    assert f"acknowledged {noted.alert_id}" in result.stdout
    assert "PagerDuty was not told: run this again once the broker answers" in result.stderr
    assert [a.status for a in store.open_alerts()] == ["acknowledged"]
