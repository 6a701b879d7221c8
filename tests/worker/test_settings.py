"""Tests of ``worker.settings``: environment over config file over defaults, checked at start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resilience.errors import ConfigurationError
from worker.settings import CONFIG_ENV, Settings, load_settings

OUTSIDE_VARIABLES = (
    "SENTRY_DSN",
    "ALPACA_API_KEY",
    "ALPACA_SECRET_KEY",
    "ALPACA_BASE_URL",
    "ALPACA_DATA_URL",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment the tests run in."""
    for name in list(os.environ):
        if name.upper().startswith("ALCHEMISER_") or name.upper() in OUTSIDE_VARIABLES:
            monkeypatch.delenv(name)


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    """A TOML config file named by ``ALCHEMISER_CONFIG``."""
    path = tmp_path / "alchemiser.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    return path


def configuration_error() -> str:
    """The message of the ``ConfigurationError`` that ``load_settings`` raises."""
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    return refused.value.message


def test_defaults_match_the_contract() -> None:
    """Without environment or file: local Redis, namespace alchemiser, paper broker."""
    settings = load_settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.namespace == "alchemiser"
    assert settings.broker_url is None
    assert settings.effective_broker_url == "redis://127.0.0.1:6379/0"
    assert settings.broker_is_redis is True
    assert settings.trading_broker == "paper"
    assert settings.config is None
    assert settings.sentry_dsn is None
    assert settings.alpaca_base_url == "https://paper-api.alpaca.markets"
    assert settings.paper_market_hours == "always_open"
    assert settings.secret_values() == []


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ALCHEMISER_*`` variables set the matching settings."""
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("ALCHEMISER_NAMESPACE", "staging")
    monkeypatch.setenv("ALCHEMISER_TRADING_BROKER", "alpaca")
    monkeypatch.setenv("ALCHEMISER_ORDER_TTL_S", "42")
    monkeypatch.setenv("ALCHEMISER_DLQ_MAX_ENTRIES", "7")
    settings = load_settings()
    assert settings.redis_url == "redis://cache:6380/2"
    assert settings.effective_broker_url == "redis://cache:6380/2"
    assert settings.namespace == "staging"
    assert settings.trading_broker == "alpaca"
    assert settings.order_ttl_s == 42.0
    assert settings.dlq_max_entries == 7


def test_separate_broker_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ALCHEMISER_BROKER_URL`` sets the Celery broker apart from the state Redis."""
    monkeypatch.setenv("ALCHEMISER_BROKER_URL", "amqp://guest@rabbit:5672//")
    settings = load_settings()
    assert settings.effective_broker_url == "amqp://guest@rabbit:5672//"
    assert settings.broker_is_redis is False
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_invalid_environment_value_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown trading broker is refused, naming the setting."""
    monkeypatch.setenv("ALCHEMISER_TRADING_BROKER", "robinhood")
    message = configuration_error()
    assert message.startswith("invalid settings: ")
    assert "trading_broker" in message


def test_config_file_values_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TOML sections map to settings: [deadletter] dlq_, [orders] order_, [paper] paper_."""
    path = write_config(
        tmp_path,
        monkeypatch,
        """
        [deadletter]
        max_entries = 5
        retention_s = 86400

        [orders]
        ttl_s = 60

        [paper]
        market_hours = "regular"
        initial_cash = 2500.0

        [celery]
        visibility_timeout_s = 7200
        max_countdown_s = 600
        """,
    )
    settings = load_settings()
    assert settings.dlq_max_entries == 5
    assert settings.dlq_retention_s == 86400.0
    assert settings.order_ttl_s == 60.0
    assert settings.paper_market_hours == "regular"
    assert settings.paper_initial_cash == 2500.0
    assert (settings.visibility_timeout_s, settings.max_countdown_s) == (7200.0, 600.0)
    assert settings.config == path


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable set in the environment beats the same setting in the file."""
    write_config(
        tmp_path,
        monkeypatch,
        '[orders]\nttl_s = 60\n[paper]\nmarket_hours = "regular"\n[deadletter]\nmax_entries = 5\n',
    )
    monkeypatch.setenv("ALCHEMISER_ORDER_TTL_S", "90")
    monkeypatch.setenv("ALCHEMISER_PAPER_MARKET_HOURS", "always_open")
    settings = load_settings()
    assert settings.order_ttl_s == 90.0
    assert settings.paper_market_hours == "always_open"
    assert settings.dlq_max_entries == 5


def test_missing_config_file_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ALCHEMISER_CONFIG`` naming no file is a ConfigurationError naming the path."""
    missing = tmp_path / "nowhere" / "alchemiser.toml"
    monkeypatch.setenv(CONFIG_ENV, str(missing))
    message = configuration_error()
    assert str(missing) in message
    assert "does not exist" in message
    assert CONFIG_ENV in message


def test_bad_toml_is_a_configuration_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that is not TOML is refused, naming the file."""
    path = write_config(tmp_path, monkeypatch, "[orders\nttl_s = = 60\n")
    message = configuration_error()
    assert str(path) in message
    assert "is not valid TOML" in message


def test_unknown_file_setting_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt setting in the file is refused rather than silently ignored."""
    write_config(tmp_path, monkeypatch, "[orders]\nttl_seconds = 60\n")
    message = configuration_error()
    assert "order_ttl_seconds" in message


def test_invalid_file_value_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value out of range in the file names the setting."""
    write_config(tmp_path, monkeypatch, "[deadletter]\nmax_entries = 0\n")
    message = configuration_error()
    assert "dlq_max_entries" in message


def test_a_countdown_longer_than_the_visibility_timeout_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers renew the messages they hold (worker.transport), so a retry may wait longer
    than the visibility timeout; the timeout only bounds how long a dead worker's messages
    stay away."""
    monkeypatch.setenv("ALCHEMISER_VISIBILITY_TIMEOUT_S", "60")
    monkeypatch.setenv("ALCHEMISER_MAX_COUNTDOWN_S", "3600")
    settings = load_settings()
    assert (settings.visibility_timeout_s, settings.max_countdown_s) == (60.0, 3600.0)


def test_the_visibility_timeout_defaults_to_a_minute_and_refuses_below_four_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A minute by default (a dead worker's orders are back within 70 s, well inside the 300 s
    order TTL); below 4 s the renewals, a quarter of it apart, would be a busy loop."""
    assert load_settings().visibility_timeout_s == 60.0
    monkeypatch.setenv("ALCHEMISER_VISIBILITY_TIMEOUT_S", "4")
    assert load_settings().visibility_timeout_s == 4.0
    monkeypatch.setenv("ALCHEMISER_VISIBILITY_TIMEOUT_S", "3.9")
    message = configuration_error()
    assert "visibility_timeout_s" in message
    assert "greater than or equal to 4" in message


def test_secret_values_collect_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alpaca keys, the Sentry DSN and passwords in Redis/broker URLs are known secrets."""
    monkeypatch.setenv("ALPACA_API_KEY", "PKAAAABBBBCCCCDDDD11")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "alpaca-secret-value")
    monkeypatch.setenv("SENTRY_DSN", "https://abc123@o1.ingest.sentry.io/42")
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", "redis://:redis-pass-1@cache:6379/0")
    monkeypatch.setenv("ALCHEMISER_BROKER_URL", "amqp://bob:rabbit-pass-2@mq:5672//")
    settings = load_settings()
    secrets = settings.secret_values()
    for expected in (
        "PKAAAABBBBCCCCDDDD11",
        "alpaca-secret-value",
        "https://abc123@o1.ingest.sentry.io/42",
        "redis-pass-1",
        "rabbit-pass-2",
    ):
        assert expected in secrets
    assert "alpaca-secret-value" not in repr(settings)


def test_secret_values_ignore_urls_without_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis URL with a user but no password adds nothing."""
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", "redis://default@cache:6379/0")
    assert load_settings().secret_values() == []


def test_settings_are_frozen() -> None:
    """Settings cannot be changed once built."""
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.namespace = "other"


def test_alpaca_endpoint_and_timeout_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Market-data URL and timeout: defaults, ``[alpaca]`` in the file, then the environment."""
    defaults = load_settings()
    assert (defaults.alpaca_data_url, defaults.alpaca_timeout_s) == (
        "https://data.alpaca.markets",
        10.0,
    )
    write_config(tmp_path, monkeypatch, "[alpaca]\ntimeout_s = 3\n")
    assert load_settings().alpaca_timeout_s == 3.0
    monkeypatch.setenv("ALPACA_DATA_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("ALCHEMISER_ALPACA_TIMEOUT_S", "2.5")
    settings = load_settings()
    assert (settings.alpaca_data_url, settings.alpaca_timeout_s) == ("http://127.0.0.1:9/", 2.5)
    monkeypatch.setenv("ALCHEMISER_ALPACA_TIMEOUT_S", "0")
    assert "alpaca_timeout_s" in configuration_error()


# (setting, the largest value it accepts): docs/CONFIGURATION.md states each bound.
UPPER_BOUNDS = [
    ("visibility_timeout_s", 86_400.0),
    ("max_countdown_s", 86_400.0),
    ("order_ttl_s", 604_800.0),
    ("redis_socket_timeout_s", 60.0),
    ("redis_epoch_check_s", 3600.0),
    ("alpaca_timeout_s", 60.0),
    ("smtp_timeout_s", 60.0),
    ("slack_timeout_s", 60.0),
    ("webhook_timeout_s", 60.0),
    ("sms_timeout_s", 60.0),
    ("pagerduty_timeout_s", 60.0),
    ("dlq_retention_s", 31_536_000.0),
    ("dlq_max_entries", 10_000_000),
    ("paper_initial_cash", 1e12),
    ("grouping_group_wait_s", 86_400.0),
    ("grouping_group_interval_s", 86_400.0),
    ("grouping_repeat_interval_s", 604_800.0),
    ("grouping_resolve_after_s", 604_800.0),
    ("notification_retry_s", 86_400.0),
]
FLOAT_SETTINGS = [name for name, _ in UPPER_BOUNDS if name != "dlq_max_entries"]


def set_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Set ``ALCHEMISER_<NAME>`` to ``value``."""
    monkeypatch.setenv(f"ALCHEMISER_{name.upper()}", value)


@pytest.mark.parametrize("name", FLOAT_SETTINGS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_a_float_setting_refuses_inf_and_nan(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """inf or nan in any float setting is a ConfigurationError naming it."""
    set_setting(monkeypatch, name, value)
    message = configuration_error()
    assert name in message
    assert "finite" in message or "greater than" in message


@pytest.mark.parametrize(("name", "bound"), UPPER_BOUNDS)
def test_a_numeric_setting_accepts_its_bound_and_refuses_beyond(
    monkeypatch: pytest.MonkeyPatch, name: str, bound: float
) -> None:
    """The bound itself loads; anything above it is refused naming the setting and the bound."""
    set_setting(monkeypatch, name, str(bound))
    assert getattr(load_settings(), name) == bound
    set_setting(monkeypatch, name, str(bound * 2))
    message = configuration_error()
    assert name in message
    assert "less than or equal to" in message


@pytest.mark.parametrize("variable", ["ALCHEMISER_REDIS_URL", "ALCHEMISER_BROKER_URL"])
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:6379/abc", "database 'abc', not a number"),
        ("rediss://127.0.0.1:6379/-1", "database '-1', not a number"),
        ("redis://127.0.0.1:99999/0", "Port out of range"),
    ],
)
def test_a_redis_url_with_a_bad_port_or_database_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str, says: str
) -> None:
    """redis-py would read a database that is not a number as database 0, silently."""
    monkeypatch.setenv(variable, url)
    message = configuration_error()
    assert variable in message
    assert says in message


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379"])
def test_a_redis_url_with_a_numbered_or_no_database_loads(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """A database number, or none (database 0), is accepted for the state and the broker."""
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", url)
    monkeypatch.setenv("ALCHEMISER_BROKER_URL", url)
    settings = load_settings()
    assert (settings.redis_url, settings.broker_url) == (url, url)
