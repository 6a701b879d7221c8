"""``alchemiser breaker`` and ``alchemiser limits`` against a real Redis, one namespace per test;
state is driven by the real Guard on Redis time, as workers drive it. The resources come from a
config file of the test's own, so the figures do not depend on the built-in defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from resilience.guard.admission import Guard, Outcome
from resilience.guard.status import GuardStatus
from resilience.storage.keys import KeySpace
from tests.worker.test_cli import DOWN_URL, as_json, run
from worker.settings import load_settings

CONTRACT_KEYS = ["name", "state", "failure_rate", "calls", "open_until"]
STATES = {"closed", "open", "half_open", "forced_open", "disabled"}
ORDERS, API, DATA = "test.orders", "test.api", "test.data"
# test.api admits one call an hour beyond its burst, so what remains cannot drift mid-test.
CONFIG = f"""
[resources."{ORDERS}".breaker]
minimum_calls = 4
failure_rate_threshold = 50
wait_duration_in_open_s = 30

[resources."{ORDERS}".concurrency]
limit = 3

[resources."{ORDERS}".retry_budget]
capacity = 100
retry_cost = 5
refill_per_s = 0.5

[resources."{API}".rate_limit]
rate = 1
period_s = 3600
burst = 2

[resources."{DATA}".retry_budget]
capacity = 10

[resources."{DATA}".permit_lease]
permits = 5
ttl_s = 0.5
"""


@pytest.fixture
def ns(keys: KeySpace, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's own namespace and config file, made the CLI's by env."""
    config = tmp_path / "alchemiser.toml"
    config.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("ALCHEMISER_CONFIG", str(config))
    monkeypatch.setenv("ALCHEMISER_NAMESPACE", keys.namespace)
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", redis_url)
    for name in ("ALCHEMISER_BROKER_URL", "ALCHEMISER_TRADING_BROKER"):
        monkeypatch.delenv(name, raising=False)
    return keys.namespace


@pytest.fixture
def guard(client: redis.Redis, ns: str) -> Guard:
    """A worker's guard over the resources the CLI sees."""
    return Guard(client, KeySpace(ns), load_settings().resource_configs)


def fail(guard: Guard, name: str, times: int) -> None:
    """``times`` admitted runs of ``name`` that failed."""
    for _ in range(times):
        guard.record(guard.admit([name]), Outcome.FAILED)


def breakers() -> dict[str, dict[str, object]]:
    """`breaker list --json`, by name."""
    return {row["name"]: row for row in as_json(run("breaker", "list", "--json"))}


def known_breakers() -> str:
    """How the CLI lists the configured breakers in its errors."""
    configs = load_settings().resource_configs
    return ", ".join(sorted(name for name, r in configs.items() if r.breaker is not None))


def test_the_groups_are_registered() -> None:
    """`breaker` (list, open, close, reset) and `limits` (list) are in the command tree."""
    assert all(group in run("--help").stdout for group in ("breaker", "limits"))
    listing = run("breaker", "--help").stdout
    assert all(command in listing for command in ("list", "open", "close", "reset"))
    assert "list" in run("limits", "--help").stdout


def test_breaker_list_json_has_the_contract_shape(guard: Guard) -> None:
    """One row per breaker, CONTRACT keys first; figures follow what the workers recorded."""
    fresh = breakers()
    assert ORDERS in fresh
    assert API not in fresh  # no breaker configured
    for row in fresh.values():
        assert list(row)[:5] == CONTRACT_KEYS
        assert row["state"] in STATES
    assert fresh[ORDERS] == {
        "name": ORDERS,
        "state": "closed",
        "failure_rate": 0.0,
        "calls": 0,
        "open_until": None,
        "slow_call_rate": 0.0,
        "generation": 0,
        "probes_in_flight": 0,
        "opened_count": 0,
    }

    guard.record(guard.admit([ORDERS]), Outcome.OK)
    fail(guard, ORDERS, 1)
    counting = breakers()[ORDERS]
    assert (counting["state"], counting["calls"], counting["failure_rate"]) == ("closed", 2, 50.0)

    fail(guard, ORDERS, 2)  # 3 of 4 failed, minimum_calls 4 reached: trips
    tripped = breakers()[ORDERS]
    assert (tripped["state"], tripped["opened_count"]) == ("open", 1)
    assert isinstance(tripped["open_until"], str)
    assert datetime.fromisoformat(tripped["open_until"]) > datetime.now(UTC)


def test_breaker_list_prints_a_table(guard: Guard) -> None:
    """Without --json: a table with each breaker's state and rates."""
    fail(guard, ORDERS, 2)
    result = run("breaker", "list")
    assert result.exit_code == 0, result.output
    assert "Breakers" in result.stdout
    assert ORDERS in result.stdout
    assert "100.0%" in result.stdout


def test_open_close_reset_round_trip(guard: Guard, client: redis.Redis, ns: str) -> None:
    """open isolates, close bypasses, reset restores; each says what changed, once."""
    opened = run("breaker", "open", ORDERS)
    assert opened.exit_code == 0, opened.output
    assert f"{ORDERS}: closed -> forced_open" in opened.stdout
    assert breakers()[ORDERS]["state"] == "forced_open"
    assert not guard.admit([ORDERS]).admitted
    assert "already forced_open" in run("breaker", "open", ORDERS).stdout

    closed = run("breaker", "close", ORDERS)
    assert f"{ORDERS}: forced_open -> disabled" in closed.stdout
    assert "up to 1 s" in closed.stdout
    fail(guard, ORDERS, 10)  # admitted every time, recorded never
    assert breakers()[ORDERS]["state"] == "disabled"

    reset = as_json(run("breaker", "reset", ORDERS, "--json"))
    assert reset == {"name": ORDERS, "from": "disabled", "to": "closed", "changed": True}
    assert breakers()[ORDERS]["state"] == "closed"
    assert guard.admit([ORDERS]).admitted

    status = GuardStatus(client, KeySpace(ns), load_settings().resource_configs)
    transitions = [(e["from"], e["to"]) for e in status.events(ORDERS)]
    assert transitions == [
        ("closed", "forced_open"),
        ("forced_open", "disabled"),
        ("disabled", "closed"),
    ]


@pytest.mark.parametrize(
    ("name", "problem"), [("nope", "no resource named 'nope'"), (API, "has no breaker")]
)
@pytest.mark.parametrize("command", ["open", "close", "reset"])
def test_a_name_without_a_breaker_exits_1_listing_the_breakers(
    ns: str, command: str, name: str, problem: str
) -> None:
    """Exit 1, the problem and the known breakers on stderr, nothing printed on stdout."""
    result = run("breaker", command, name)
    assert result.exit_code == 1
    assert problem in result.stderr
    assert f"breakers: {known_breakers()}" in result.stderr
    assert result.stdout == ""


def test_limits_list_json_shows_usage(guard: Guard) -> None:
    """Rate remaining, leases in use, retry tokens and admission counts, as the workers left
    them."""
    guard.admit([API])
    held = [guard.admit([ORDERS]) for _ in range(3)]
    assert not guard.admit([ORDERS]).admitted  # the 4th: concurrency limit 3
    guard.record(held[0], Outcome.FAILED, retry="retry")  # returns one lease, spends 5 tokens

    rows = {row["name"]: row for row in as_json(run("limits", "list", "--json"))}
    assert rows[API] == {
        "name": API,
        "rate_limit": {
            "rate": 1,
            "period_s": 3600,
            "burst": 2,
            "remaining": 2,
            "next_allowed_in_s": 0.0,
        },
        "concurrency": None,
        "retry_budget": None,
        "permit_lease": None,
        "admitted": 1,
        "refused": {},
        "without_redis": {},
    }
    orders = rows[ORDERS]
    assert (orders["admitted"], orders["refused"]) == (3, {"concurrency limit": 1})
    assert orders["rate_limit"] is None
    assert orders["concurrency"] == {"limit": 3, "in_use": 2}
    assert orders["retry_budget"]["capacity"] == 100
    assert 95 <= orders["retry_budget"]["tokens"] < 96  # refills 0.5 per second


def test_limits_list_shows_permit_leases_and_counts_what_they_granted(guard: Guard) -> None:
    """Three runs of a leasing resource: grants of 1 and 2 (the third run is leased); the
    operator sees the lease and the 3 admitted, in JSON and in the table."""
    assert [guard.admit([DATA]).leased for _ in range(3)] == [False, False, True]
    rows = {row["name"]: row for row in as_json(run("limits", "list", "--json"))}
    assert rows[DATA]["permit_lease"] == {"permits": 5, "ttl_s": 0.5}
    assert rows[DATA]["admitted"] == 3
    assert rows[ORDERS]["permit_lease"] is None
    assert "5 per 0.5 s" in run("limits", "list").stdout


def test_limits_list_prints_a_table(guard: Guard) -> None:
    """Without --json: a table, '-' where a protection is off."""
    guard.admit([ORDERS])
    result = run("limits", "list")
    assert result.exit_code == 0, result.output
    assert "1 per 3600 s, burst 2" in result.stdout
    assert "1 of 3 in use" in result.stdout
    assert "100.0 of 100 tokens" in result.stdout


@pytest.mark.parametrize("args", [["breaker", "list"], ["limits", "list", "--json"]])
def test_redis_down_exits_1_with_the_url(
    ns: str, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Redis unreachable: exit 1 and a message naming the URL, no traceback."""
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", DOWN_URL)
    result = run(*args)
    assert result.exit_code == 1
    assert DOWN_URL in result.stderr
    assert result.stdout == ""
