"""The ``alchemiser`` CLI against a real Redis, one namespace per test; no Celery worker."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from typer.testing import CliRunner, Result

from resilience.deadletter.store import DeadLetter, DeadLetterStore
from resilience.storage.clock import SystemClock
from resilience.storage.keys import KeySpace
from resilience.task import HEADER
from tasks.brokers.paper import PaperBroker
from tasks.payloads import OrderRequest
from tests.builders import dead_order
from tests.namespaces import fresh_namespace
from worker.cli.dlq import _row, _whole
from worker.cli.main import app

DOWN_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
def ns(keys: KeySpace, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's own namespace (its keys are deleted afterwards), made the CLI's by env."""
    monkeypatch.setenv("ALCHEMISER_NAMESPACE", keys.namespace)
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", redis_url)
    for name in ("ALCHEMISER_BROKER_URL", "ALCHEMISER_CONFIG", "ALCHEMISER_TRADING_BROKER"):
        monkeypatch.delenv(name, raising=False)
    return keys.namespace


@pytest.fixture
def store(client: redis.Redis, ns: str) -> DeadLetterStore:
    """The dead-letter store of the test namespace."""
    return DeadLetterStore(client, KeySpace(ns))


def run(*args: str) -> Result:
    """Invoke the CLI in-process."""
    return CliRunner().invoke(app, list(args))


def as_json(result: Result, *, exit_code: int = 0) -> Any:
    """stdout parsed as exactly one JSON document (fails on anything else), after the command
    exited with ``exit_code`` (1: some IDs were skipped)."""
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def queued(client: redis.Redis, ns: str, queue: str) -> list[dict[str, Any]]:
    """Messages the Redis broker holds for ``queue``, oldest first, decoded."""
    messages = []
    for raw in reversed(client.lrange(f"{ns}:{queue}", 0, -1)):
        message = json.loads(raw)
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        messages.append({"headers": message["headers"], "args": args, "kwargs": kwargs})
    return messages


def all_queued(client: redis.Redis, ns: str) -> int:
    """How many messages wait on any of the three queues."""
    return sum(client.llen(f"{ns}:{q}") for q in ("trading", "market_data", "escalation"))


def order_letter(entry_id: str = "dl-order", **changes: Any) -> DeadLetter:
    """A dead ``tasks.submit_order`` with a valid payload."""
    kwargs = {
        "symbol": "AAPL",
        "side": "buy",
        "qty": 5.0,
        "type": "market",
        "client_order_id": "alc-fixed-1",
        "valid_until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }
    entry = dead_order(
        entry_id,
        kwargs=kwargs,
        idempotency_key="alc-fixed-1",
        message="broker timed out",
        reason="retries exhausted",
        attempts=[{"attempt": 1, "error": "TimeoutError"}, {"attempt": 2, "error": "TimeoutError"}],
    )
    return replace(entry, **changes)


def quote_letter(entry_id: str = "dl-quote") -> DeadLetter:
    """A dead ``tasks.fetch_quote`` (routed to ``market_data``)."""
    return order_letter(
        entry_id,
        task="tasks.fetch_quote",
        queue="market_data",
        kwargs={"symbol": "MSFT"},
        idempotency_key=None,
        error_type="MarketDataError",
    )


def test_command_tree_matches_the_contract() -> None:
    """The CONTRACT's command groups and commands are registered (demo is not run)."""
    top = run("--help")
    assert top.exit_code == 0
    for name in ("order", "paper", "dlq", "chaos", "demo"):
        assert name in top.stdout
    for group, commands in {
        "order": ("submit", "cancel"),
        "paper": ("orders",),
        "dlq": ("list", "show", "replay", "discard"),
        "chaos": ("inject", "clear", "list", "clock"),
    }.items():
        listing = run(group, "--help")
        assert listing.exit_code == 0
        assert all(command in listing.stdout for command in commands)


# order submit / cancel


def test_submit_publishes_validated_kwargs_with_derived_identity(
    client: redis.Redis, ns: str
) -> None:
    """`order submit --json` publishes validated kwargs with a derived id and default deadline."""
    before = datetime.now(UTC)
    doc = as_json(run("order", "submit", "AAPL", "--side", "buy", "--qty", "10", "--json"))
    assert set(doc) == {"task_id", "client_order_id"}
    assert re.fullmatch(r"alc-[0-9a-f]{32}", doc["client_order_id"])
    [message] = queued(client, ns, "trading")
    assert message["headers"]["task"] == "tasks.submit_order"
    assert message["headers"]["id"] == doc["task_id"]
    kwargs = message["kwargs"]
    assert kwargs["client_order_id"] == doc["client_order_id"]
    assert {k: kwargs[k] for k in ("symbol", "side", "qty", "type", "limit_price")} == {
        "symbol": "AAPL",
        "side": "buy",
        "qty": 10.0,
        "type": "market",
        "limit_price": None,
    }
    valid_until = datetime.fromisoformat(kwargs["valid_until"])
    assert valid_until.utcoffset() == timedelta(0)
    expected = before + timedelta(seconds=300)  # the default order_ttl_s
    assert abs((valid_until - expected).total_seconds()) < 30


def test_submit_limit_order_keeps_given_id_and_ttl(client: redis.Redis, ns: str) -> None:
    """A given client_order_id and --ttl are used as given for a limit order."""
    before = datetime.now(UTC)
    args = ["order", "submit", "BRK.B", "--side", "sell", "--qty", "2", "--type", "limit"]
    args += ["--limit-price", "412.5", "--client-order-id", "my-id-7", "--ttl", "60", "--json"]
    doc = as_json(run(*args))
    assert doc["client_order_id"] == "my-id-7"
    [message] = queued(client, ns, "trading")
    kwargs = message["kwargs"]
    assert (kwargs["type"], kwargs["limit_price"], kwargs["client_order_id"]) == (
        "limit",
        412.5,
        "my-id-7",
    )
    delta = datetime.fromisoformat(kwargs["valid_until"]) - before
    assert 55 < delta.total_seconds() < 90


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--side", "buy", "--qty", "-5"], "qty"),
        (["--side", "buy", "--qty", "1", "--type", "limit", "--limit-price", "nan"], "limit_price"),
        (["--side", "short", "--qty", "1"], "side"),
        (["--side", "buy", "--qty", "1", "--ttl", "0"], "--ttl"),
    ],
)
def test_submit_refuses_invalid_orders_and_publishes_nothing(
    client: redis.Redis, ns: str, extra: list[str], problem: str
) -> None:
    """An invalid order exits 2 with a message naming the problem, and nothing is published."""
    result = run("order", "submit", "AAPL", *extra, "--json")
    assert result.exit_code == 2
    assert problem in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert all_queued(client, ns) == 0


def test_cancel_publishes_cancel_order(client: redis.Redis, ns: str) -> None:
    """`order cancel` publishes tasks.cancel_order with the order id."""
    doc = as_json(run("order", "cancel", "ord-123", "--json"))
    [message] = queued(client, ns, "trading")
    assert message["headers"]["task"] == "tasks.cancel_order"
    assert message["headers"]["id"] == doc["task_id"]
    assert message["kwargs"] == {"order_id": "ord-123"}


# paper


def test_paper_orders_lists_the_paper_brokers_orders(client: redis.Redis, ns: str) -> None:
    """`paper orders --json` lists every booked order with the contract's keys."""
    broker = PaperBroker(client, KeySpace(ns), clock=SystemClock())
    deadline = datetime.now(UTC) + timedelta(minutes=5)
    broker.submit_order(
        OrderRequest(symbol="AAPL", side="buy", qty=3, client_order_id="p-1", valid_until=deadline)
    )
    rows = as_json(run("paper", "orders", "--json"))
    assert rows == [
        {"client_order_id": "p-1", "symbol": "AAPL", "side": "buy", "qty": 3.0, "status": "filled"}
    ]
    human = run("paper", "orders")
    assert human.exit_code == 0
    assert "p-1" in human.stdout


# dlq list / show


def test_dlq_list_rows_are_summaries_and_filters_apply(ns: str, store: DeadLetterStore) -> None:
    """`dlq list --json` rows are exactly the summaries; --error, --task and --status filter."""
    order = order_letter()
    store.add(order)
    store.add(quote_letter())
    rows = as_json(run("dlq", "list", "--json"))
    assert {row["id"] for row in rows} == {"dl-order", "dl-quote"}
    assert all(set(row) == set(_row(order)) for row in rows)
    assert next(r for r in rows if r["id"] == "dl-order") == _row(order)
    by_error = as_json(run("dlq", "list", "--json", "--error", "MarketDataError"))
    assert [r["id"] for r in by_error] == ["dl-quote"]
    by_task = as_json(run("dlq", "list", "--json", "--task", "tasks.submit_order"))
    assert [r["id"] for r in by_task] == ["dl-order"]
    assert as_json(run("dlq", "list", "--json", "--status", "replayed")) == []


def test_dlq_list_human_table_names_entries(ns: str, store: DeadLetterStore) -> None:
    """Without --json, `dlq list` prints a table with the entries."""
    store.add(order_letter(message="[bold]not markup[/bold]"))
    result = run("dlq", "list")
    assert result.exit_code == 0
    assert "dl-order" in result.stdout
    assert "[bold]not" in result.stdout


def test_dlq_show_prints_the_whole_entry(ns: str, store: DeadLetterStore) -> None:
    """`dlq show --json` prints the whole entry; an unknown id exits 1 with a message."""
    entry = order_letter()
    store.add(entry)
    shown = as_json(run("dlq", "show", "dl-order", "--json"))
    assert shown == _whole(entry)
    assert shown["client_order_id"] == entry.idempotency_key == "alc-fixed-1"
    human = run("dlq", "show", "dl-order")
    assert human.exit_code == 0
    assert "TimeoutError" in human.stdout
    missing = run("dlq", "show", "nope", "--json")
    assert missing.exit_code == 1
    assert "nope" in missing.stderr
    assert missing.stdout == ""


# dlq replay


def test_replay_republishes_order_with_same_id_and_replay_header(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """A replayed order lands on `trading` with its client_order_id and the replay_of header."""
    store.add(order_letter())
    doc = as_json(run("dlq", "replay", "dl-order", "--json"))
    assert set(doc) == {"replayed", "skipped"}
    assert doc["skipped"] == []
    [row] = doc["replayed"]
    assert (row["id"], row["reason"]) == ("dl-order", "")
    [message] = queued(client, ns, "trading")
    assert message["headers"]["id"] == row["task_id"]
    assert message["headers"]["task"] == "tasks.submit_order"
    assert message["headers"][HEADER] == {"replay_of": "dl-order"}
    assert message["kwargs"]["client_order_id"] == "alc-fixed-1"
    replayed = store.get("dl-order")
    assert replayed is not None
    assert replayed.status == "replayed"


def test_replay_routes_each_task_to_its_queue(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """A replayed fetch_quote goes to `market_data`, not `trading`."""
    store.add(quote_letter())
    doc = as_json(run("dlq", "replay", "dl-quote", "--json"))
    assert [r["id"] for r in doc["replayed"]] == ["dl-quote"]
    [message] = queued(client, ns, "market_data")
    assert message["kwargs"] == {"symbol": "MSFT"}
    assert client.llen(f"{ns}:trading") == 0


def test_replay_refuses_unregistered_tasks_and_invalid_payloads(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """Unregistered task names and payloads that no longer validate are skipped with reasons."""
    store.add(order_letter("dl-alien", task="tasks.unknown"))
    bad = order_letter("dl-bad")
    store.add(replace(bad, kwargs={**bad.kwargs, "qty": -1}))
    doc = as_json(run("dlq", "replay", "dl-alien", "dl-bad", "missing", "--json"), exit_code=1)
    assert doc["replayed"] == []
    reasons = {row["id"]: row["reason"] for row in doc["skipped"]}
    assert "not a registered trading task" in reasons["dl-alien"]
    assert "no longer validates" in reasons["dl-bad"]
    assert "no such dead letter" in reasons["missing"]
    assert all(row["task_id"] is None for row in doc["skipped"])
    assert all_queued(client, ns) == 0
    assert {e.status for e in store.entries()} == {"dead"}


def test_replay_dry_run_publishes_nothing_and_changes_nothing(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """`--dry-run` reports what would be replayed but publishes nothing and keeps the status."""
    store.add(order_letter())
    doc = as_json(run("dlq", "replay", "dl-order", "--dry-run", "--json"))
    assert doc["dry_run"] is True
    assert [r["id"] for r in doc["replayed"]] == ["dl-order"]
    assert doc["replayed"][0]["task_id"] is None
    assert all_queued(client, ns) == 0
    entry = store.get("dl-order")
    assert entry is not None
    assert entry.status == "dead"


def test_replay_twice_skips_the_second_time(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """A dead letter is published at most once: the second replay is skipped."""
    store.add(order_letter())
    as_json(run("dlq", "replay", "dl-order", "--json"))
    second = as_json(run("dlq", "replay", "dl-order", "--json"), exit_code=1)
    assert second["replayed"] == []
    assert second["skipped"] == [
        {"id": "dl-order", "reason": "status is replayed", "task_id": None}
    ]
    assert client.llen(f"{ns}:trading") == 1


def test_replay_all_honours_error_filter(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """`--all --error TYPE` replays only dead entries of that error type."""
    store.add(order_letter("dl-a"))
    store.add(order_letter("dl-b"))
    store.add(quote_letter())
    doc = as_json(run("dlq", "replay", "--all", "--error", "TradingClientError", "--json"))
    assert sorted(r["id"] for r in doc["replayed"]) == ["dl-a", "dl-b"]
    assert client.llen(f"{ns}:trading") == 2
    assert client.llen(f"{ns}:market_data") == 0


def test_replay_ids_honour_error_filter(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """An explicit id whose error type differs from --error is skipped, not replayed."""
    store.add(quote_letter())
    result = run("dlq", "replay", "dl-quote", "--error", "TradingClientError", "--json")
    doc = as_json(result, exit_code=1)
    assert doc["replayed"] == []
    assert "MarketDataError" in doc["skipped"][0]["reason"]
    assert all_queued(client, ns) == 0


def test_replay_all_human_output_is_a_table(ns: str, store: DeadLetterStore) -> None:
    """Without --json, replaying several entries ends with a table of what was replayed on
    stdout; what was skipped is on stderr, with exit 1."""
    store.add(order_letter("dl-a"))
    store.add(order_letter("dl-b", task="tasks.unknown"))
    result = run("dlq", "replay", "--all")
    assert result.exit_code == 1, result.output
    assert "dl-a" in result.stdout
    assert "replayed" in result.stdout
    assert "dl-b" not in result.stdout
    assert "skipped dl-b: 'tasks.unknown' is not a registered trading task" in result.stderr


def test_replay_renews_an_expired_order_with_ttl(
    client: redis.Redis, ns: str, store: DeadLetterStore
) -> None:
    """An order past its deadline is skipped unless --ttl gives it a new one."""
    expired = order_letter()
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    store.add(replace(expired, kwargs={**expired.kwargs, "valid_until": past}))
    refused = as_json(run("dlq", "replay", "dl-order", "--json"), exit_code=1)
    assert "--ttl" in refused["skipped"][0]["reason"]
    doc = as_json(run("dlq", "replay", "dl-order", "--ttl", "120", "--json"))
    assert [r["id"] for r in doc["replayed"]] == ["dl-order"]
    [message] = queued(client, ns, "trading")
    assert datetime.fromisoformat(message["kwargs"]["valid_until"]) > datetime.now(UTC)


@pytest.mark.parametrize("args", [[], ["dl-order", "--all"]])
def test_replay_needs_ids_or_all(ns: str, store: DeadLetterStore, args: list[str]) -> None:
    """Neither ids nor --all (or both) is a usage error: exit 2 with a message."""
    store.add(order_letter())
    result = run("dlq", "replay", *args)
    assert result.exit_code == 2
    assert "--all" in result.stderr
    assert result.stdout == ""


# dlq discard


def test_discard_removes_and_audits(ns: str, store: DeadLetterStore) -> None:
    """Discard removes the entry, reports unknown ids as skipped, and the audit trail has it."""
    store.add(order_letter())
    doc = as_json(run("dlq", "discard", "dl-order", "nope", "--json"), exit_code=1)
    assert doc == {
        "discarded": ["dl-order"],
        "skipped": [{"id": "nope", "reason": "no such dead letter"}],
    }
    assert store.get("dl-order") is None
    [record] = [r for r in store.audit() if r.action == "discard"]
    assert record.id == "dl-order"
    assert record.actor.startswith("cli:")
    assert record.detail["entry"]["idempotency_key"] == "alc-fixed-1"


def test_discard_all_skips_entries_not_dead(ns: str, store: DeadLetterStore) -> None:
    """`discard --all` removes every dead entry and leaves replayed ones alone."""
    store.add(order_letter("dl-a"))
    store.add(order_letter("dl-b"))
    as_json(run("dlq", "replay", "dl-b", "--json"))
    doc = as_json(run("dlq", "discard", "--all", "--json"))
    assert doc == {"discarded": ["dl-a"], "skipped": []}
    assert [e.id for e in store.entries()] == ["dl-b"]
    refused = as_json(run("dlq", "discard", "dl-b", "--json"), exit_code=1)
    assert refused == {"discarded": [], "skipped": [{"id": "dl-b", "reason": "status is replayed"}]}


# chaos


def test_chaos_inject_list_clear_round_trip(ns: str) -> None:
    """A rule injected is listed with a fired count and removed by `chaos clear TARGET`."""
    now_ms = time.time() * 1000
    args = ["chaos", "inject", "broker.submit_order", "--error", "TimeoutError"]
    args += ["--probability", "0.5", "--count", "3", "--duration", "60", "--latency-ms", "10"]
    args += ["--phase", "after", "--retry-after", "2", "--message", "upstream timeout"]
    assert run(*args).exit_code == 0
    [rule] = as_json(run("chaos", "list", "--json"))
    assert {k: v for k, v in rule.items() if k != "expires_at_ms"} == {
        "target": "broker.submit_order",
        "error": "TimeoutError",
        "probability": 0.5,
        "count": 3,
        "latency_ms": 10,
        "phase": "after",
        "retry_after_s": 2.0,
        "message": "upstream timeout",
        "fired": 0,
    }
    assert abs(rule["expires_at_ms"] - (now_ms + 60_000)) < 10_000
    human = run("chaos", "list")
    assert "broker.submit_order" in human.stdout
    assert as_json(run("chaos", "clear", "broker.submit_order", "--json")) == {"removed": 1}
    assert as_json(run("chaos", "list", "--json")) == []
    assert "removed 0 rules" in run("chaos", "clear").stdout


def test_chaos_clock_shows_moves_and_clear_resets_the_escalation_clock(ns: str) -> None:
    """`chaos clock` shows the shift, `chaos clock S` adds to it (`-- -S` takes back), and
    `chaos clear` resets it."""
    assert as_json(run("chaos", "clock", "--json")) == {"clock_shift_s": 0.0}
    assert "+3600 s" in run("chaos", "clock", "3600").stdout
    assert as_json(run("chaos", "clock", "--json", "--", "-600")) == {"clock_shift_s": 3000.0}
    refused = run("chaos", "clock", "inf")
    assert refused.exit_code == 2
    assert "finite number of seconds" in refused.output
    run("chaos", "clear")
    assert as_json(run("chaos", "clock", "--json")) == {"clock_shift_s": 0.0}


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--error", "NoSuchError"], "unknown fault"),
        (["--error", "TimeoutError", "--probability", "0"], "probability"),
        (["--error", "TimeoutError", "--duration", "-1"], "--duration"),
    ],
)
def test_chaos_inject_refuses_bad_rules(ns: str, extra: list[str], problem: str) -> None:
    """An unknown error class or an impossible rule exits 2 and stores nothing."""
    result = run("chaos", "inject", "broker.submit_order", *extra)
    assert result.exit_code == 2
    assert problem in result.stderr
    assert as_json(run("chaos", "list", "--json")) == []


# expected failures


@pytest.mark.parametrize(
    "args",
    [
        ["dlq", "list", "--json"],
        ["dlq", "replay", "--all"],
        ["chaos", "list"],
        ["paper", "orders"],
        ["order", "submit", "AAPL", "--side", "buy", "--qty", "1"],
    ],
)
def test_redis_unreachable_exits_1_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Redis down: exit 1, the URL and ALCHEMISER_REDIS_URL on stderr, no traceback."""
    monkeypatch.setenv("ALCHEMISER_NAMESPACE", fresh_namespace("test-cli"))
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", DOWN_URL)
    monkeypatch.delenv("ALCHEMISER_BROKER_URL", raising=False)
    result = run(*args)
    assert result.exit_code == 1
    assert DOWN_URL in result.stderr
    assert "ALCHEMISER_REDIS_URL" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert isinstance(result.exception, SystemExit)


def test_replay_with_broker_down_exits_1_and_claims_nothing(
    ns: str, store: DeadLetterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broker down: `dlq replay` exits 1 naming ALCHEMISER_BROKER_URL; the entry stays dead."""
    monkeypatch.setenv("ALCHEMISER_BROKER_URL", DOWN_URL)
    store.add(order_letter())
    result = run("dlq", "replay", "dl-order", "--json")
    assert result.exit_code == 1
    assert "ALCHEMISER_BROKER_URL" in result.stderr
    assert result.stdout == ""
    entry = store.get("dl-order")
    assert entry is not None
    assert entry.status == "dead"


def test_redis_password_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unreachable-Redis message masks the URL's password."""
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    result = run("dlq", "list")
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    assert "redis://:***@127.0.0.1:1/0" in result.stderr


def test_configuration_error_prints_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Invalid settings exit 2 with the settings' own message, no traceback."""
    monkeypatch.setenv("ALCHEMISER_NAMESPACE", "has space")
    result = run("dlq", "list")
    assert result.exit_code == 2
    assert "invalid settings" in result.stderr
    assert "namespace" in result.stderr
    assert "Traceback" not in result.output
