"""Errors of the ``alchemiser`` CLI as users meet them: one line on stderr that names what to
change, and an exit code that means something (2: bad input or settings)."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from resilience.chaos import ChaosStore, Phase
from resilience.errors import ConfigurationError
from resilience.storage.clock import SystemClock
from resilience.storage.keys import KeySpace
from tasks.brokers.paper import CHAOS_TARGETS, PaperBroker
from tasks.market_data.providers import FALLBACK_CHAOS_TARGETS, PaperQuotes
from tasks.payloads import OrderRequest, parse_payload
from tests.worker.cli_process import cli_environment, run_cli
from tests.worker.test_cli import queued
from worker.cli.chaos import CHAOS_TARGETS as CLI_TARGETS
from worker.settings import load_settings

# (variable, value, what the one line says besides the variable's name)
INVALID_SETTINGS = [
    ("ALCHEMISER_REDIS_URL", "notaurl", "redis://, rediss:// or unix:// (it has no scheme)"),
    ("ALCHEMISER_REDIS_URL", "http://:hunter2@127.0.0.1:6379/0", "(its scheme is 'http')"),
    ("ALCHEMISER_REDIS_URL", "redis://127.0.0.1:99999/0", "Port out of range"),
    ("ALCHEMISER_BROKER_URL", "notaurl", "amqp://, amqps:// or pyamqp:// (it has no scheme)"),
    ("ALCHEMISER_BROKER_URL", "amqp://rabbit:x//", "Port could not be cast to integer"),
    ("ALCHEMISER_NAMESPACE", "a/b", "1 to 64 letters, digits, '_', '.' or '-'"),
    ("ALCHEMISER_LOG_LEVEL", "loud", "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ("SENTRY_DSN", "nope", "not a Sentry DSN"),
    ("ALPACA_BASE_URL", "ftp://paper-api.alpaca.markets", "https:// or http://"),
    ("ALCHEMISER_PAGERDUTY_EVENTS_URL", "https://", "(it names no host)"),
    ("ALCHEMISER_HTTP_PORT", "eighty", "valid integer"),
    ("ALCHEMISER_REDIS_URL", "redis://127.0.0.1:6379/abc", "database 'abc', not a number"),
    ("ALCHEMISER_BROKER_URL", "redis://127.0.0.1:6379/abc", "database 'abc', not a number"),
    ("ALCHEMISER_VISIBILITY_TIMEOUT_S", "inf", "finite number"),
    ("ALCHEMISER_REDIS_SOCKET_TIMEOUT_S", "inf", "finite number"),
    ("ALCHEMISER_ORDER_TTL_S", "inf", "finite number"),
    ("ALCHEMISER_ORDER_TTL_S", "1e9", "less than or equal to 604800"),
]


def refused_line(env: dict[str, str]) -> str:
    """Run `dlq list`; assert it exits 2 with nothing on stdout and one line on stderr."""
    result = run_cli("dlq", "list", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(("variable", "value", "says"), INVALID_SETTINGS)
def test_an_invalid_setting_is_one_line_on_stderr_and_exit_2(
    variable: str, value: str, says: str
) -> None:
    """A bad value (a URL of the wrong scheme included) names its variable; never a traceback,
    never a password."""
    line = refused_line(cli_environment(**{variable: value}))
    assert variable in line or variable.removeprefix("ALCHEMISER_").lower() in line
    assert says in line
    assert "hunter2" not in line


def test_a_config_file_that_never_ends_is_one_line_on_stderr_and_exit_2() -> None:
    """ALCHEMISER_CONFIG=/dev/zero: read no further than the size bound, never forever."""
    line = refused_line(cli_environment(ALCHEMISER_CONFIG="/dev/zero"))
    assert line.endswith(
        "names /dev/zero, which is larger than 1048576 bytes (a config file is a short TOML text)"
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "which cannot be read (Is a directory)"),
        (b"[redis]\nurl = 'x\xff'\n", "which is not UTF-8 text"),
        (b"[orders\n", "is not valid TOML"),
        (b'[redis]\nurl = "localhost:6379"\n', "ALCHEMISER_REDIS_URL must be a URL"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "is not valid TOML"),  # an executable's start
        (bytes(range(256)) * 4, "which is not UTF-8 text"),
        pytest.param(b"#" * 1024 * 1024 + b"\n", "is larger than 1048576 bytes", id="1 MiB"),
    ],
)
def test_a_bad_config_file_is_one_line_on_stderr_and_exit_2(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    """ALCHEMISER_CONFIG naming a directory, a non-UTF-8 file, bad TOML or a bad value."""
    path = tmp_path
    if content is not None:
        path = tmp_path / "alchemiser.toml"
        path.write_bytes(content)
    line = refused_line(cli_environment(ALCHEMISER_CONFIG=str(path)))
    assert says in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALCHEMISER_REDIS_URL", "redis://:pw@127.0.0.1:6379/2"),
        ("ALCHEMISER_REDIS_URL", "rediss://redis.internal:6380/0"),
        ("ALCHEMISER_REDIS_URL", "unix:///run/redis/redis.sock?db=1"),
        ("ALCHEMISER_BROKER_URL", "amqp://guest@rabbit:5672//"),
        ("ALCHEMISER_BROKER_URL", "amqps://guest@rabbit:5671//"),
        ("ALCHEMISER_BROKER_URL", "pyamqp://guest@rabbit//"),
        ("ALCHEMISER_BROKER_URL", "rediss://redis.internal:6380/1"),
        ("ALPACA_BASE_URL", "http://127.0.0.1:8080"),
        ("SENTRY_DSN", "https://public@o1.ingest.sentry.io/42"),
    ],
)
def test_urls_of_the_supported_schemes_load(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Every scheme the clients support is accepted as it is."""
    monkeypatch.setenv(variable, value)
    settings = load_settings()
    loaded = {
        "ALCHEMISER_REDIS_URL": settings.redis_url,
        "ALCHEMISER_BROKER_URL": settings.broker_url,
        "ALPACA_BASE_URL": settings.alpaca_base_url,
        "SENTRY_DSN": settings.sentry_dsn and settings.sentry_dsn.get_secret_value(),
    }
    assert loaded[variable] == value


def test_the_log_level_is_upper_cased(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ALCHEMISER_LOG_LEVEL=debug`` is DEBUG (logging's names are upper case)."""
    monkeypatch.setenv("ALCHEMISER_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"


def test_a_config_file_that_is_a_directory_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers and beat load settings too: an unreadable file is a ConfigurationError there."""
    monkeypatch.setenv("ALCHEMISER_CONFIG", str(tmp_path))
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_settings()


# --- health: exit 3 when the fleet's state cannot be read ---------------------------------------

DOWN_URL = "redis://:hunter2@127.0.0.1:1/0"


def test_health_with_redis_unreachable_is_unknown_with_exit_3() -> None:
    """Nagios' UNKNOWN (3), not WARNING (1): the report says why and masks the password."""
    result = run_cli("health", env=cli_environment(ALCHEMISER_REDIS_URL=DOWN_URL))
    assert result.returncode == 3, result.stderr
    first, reason = result.stdout.splitlines()
    assert first.startswith("UNKNOWN at ")
    assert reason.startswith("  - cannot reach Redis at redis://:***@127.0.0.1:1/0 (")
    assert "ALCHEMISER_REDIS_URL" in reason
    assert "hunter2" not in result.stdout + result.stderr


def test_health_json_with_redis_unreachable_is_status_unknown_with_exit_3() -> None:
    """`health --json`: one document ``{"status": "unknown", ...}`` on stdout, exit 3."""
    result = run_cli("health", "--json", env=cli_environment(ALCHEMISER_REDIS_URL=DOWN_URL))
    assert result.returncode == 3, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"status", "checked_at", "reasons", "error"}
    assert (document["status"], document["error"]) == ("unknown", "ConnectionError")
    [reason] = document["reasons"]
    assert reason.startswith("cannot reach Redis at redis://:***@127.0.0.1:1/0 (")


def test_serve_on_a_taken_port_is_one_line_and_exit_1() -> None:
    """`serve --port P` while P is taken: why, and which options choose another; no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env=cli_environment())
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (  # after the log lines of building the runtime
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use). Choose another "
        "with --host/--port (ALCHEMISER_HTTP_HOST, ALCHEMISER_HTTP_PORT)."
    )


# --- chaos: a target no adapter consults is refused ---------------------------------------------


def test_chaos_inject_of_an_unknown_target_is_refused_with_the_known_ones(
    redis_url: str, keys: KeySpace
) -> None:
    """`chaos inject broker.nope`: exit 2, one line listing every known target, nothing stored."""
    env = cli_environment(ALCHEMISER_REDIS_URL=redis_url, ALCHEMISER_NAMESPACE=keys.namespace)
    result = run_cli("chaos", "inject", "broker.nope", "--error", "TimeoutError", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: unknown chaos target 'broker.nope'; known: broker.cancel_order, "
        "broker.get_account, broker.get_order, broker.get_quote, broker.list_positions, "
        "broker.submit_order, fallback.get_quote"
    ]
    assert json.loads(run_cli("chaos", "list", "--json", env=env).stdout) == []


class RecordingChaos(ChaosStore):
    """Records the targets an adapter consults instead of applying rules."""

    def __init__(self) -> None:  # no Redis: nothing is read
        self.struck: set[str] = set()

    def strike(self, target: str, phase: Phase) -> None:
        self.struck.add(target)


def test_the_known_targets_are_those_the_paper_broker_consults(
    client: redis.Redis, keys: KeySpace
) -> None:
    """Every BrokerAdapter operation of the paper broker, run once, consults exactly the
    targets `chaos inject` accepts (so the list cannot drift from the adapter)."""
    chaos = RecordingChaos()
    broker = PaperBroker(client, keys, clock=SystemClock(), chaos=chaos)
    resting = broker.submit_order(
        parse_payload(
            OrderRequest,
            {
                "symbol": "AAPL",
                "side": "buy",
                "qty": 1,
                "type": "limit",
                "limit_price": 1.0,  # far below any paper price: the order rests
                "client_order_id": "alc-targets-1",
                "valid_until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
        )
    )
    broker.get_order(resting.id)
    broker.get_order_by_client_id("alc-targets-1")
    broker.get_quote("AAPL")
    broker.list_positions()
    broker.get_account()
    broker.list_orders()
    broker.cancel_order(resting.id)
    assert sorted(chaos.struck) == list(CHAOS_TARGETS)


def test_the_second_quote_provider_consults_its_own_target(
    client: redis.Redis, keys: KeySpace
) -> None:
    """The paper quotes behind ALCHEMISER_QUOTE_FALLBACK=paper consult `fallback.get_quote`
    only, the one target `chaos inject` knows besides the broker's."""
    chaos = RecordingChaos()
    PaperQuotes(client, keys, clock=SystemClock(), chaos=chaos).get_quote("AAPL")
    assert sorted(chaos.struck) == list(FALLBACK_CHAOS_TARGETS)
    assert (*CHAOS_TARGETS, *FALLBACK_CHAOS_TARGETS) == CLI_TARGETS


# --- symbols: upper-cased, or refused with a sentence -------------------------------------------


def test_order_submit_of_a_lower_case_symbol_publishes_it_upper_cased(
    redis_url: str, client: redis.Redis, keys: KeySpace
) -> None:
    """`order submit aapl` queues tasks.submit_order for AAPL."""
    env = cli_environment(ALCHEMISER_REDIS_URL=redis_url, ALCHEMISER_NAMESPACE=keys.namespace)
    result = run_cli("order", "submit", "aapl", "--side", "buy", "--qty", "2", "--json", env=env)
    assert result.returncode == 0, result.stderr
    [message] = queued(client, keys.namespace, "trading")
    assert (message["kwargs"]["symbol"], message["kwargs"]["qty"]) == ("AAPL", 2.0)


def test_order_submit_of_what_is_not_a_symbol_is_one_sentence_and_exit_2(
    redis_url: str, client: redis.Redis, keys: KeySpace
) -> None:
    """`order submit 'AA PL'`: what a symbol is, in words; nothing is queued."""
    env = cli_environment(ALCHEMISER_REDIS_URL=redis_url, ALCHEMISER_NAMESPACE=keys.namespace)
    result = run_cli("order", "submit", "AA PL", "--side", "buy", "--qty", "2", env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: invalid OrderRequest payload: symbol: a symbol is 1 to 6 letters, then "
        "optionally '.' or '/' and 1 to 5 letters, such as AAPL, BRK.B or BTC/USD"
    ]
    assert queued(client, keys.namespace, "trading") == []
