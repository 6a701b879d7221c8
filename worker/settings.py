"""Settings: environment (``ALCHEMISER_*``, CONTRACT) over the TOML config file over defaults.

Built once per process into a frozen object and passed down; nothing reads ``os.environ`` on
the hot path. Start-up validation refuses contradictory settings with a message that says
what to change.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from kombu.utils.url import parse_url as parse_broker_url
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from redis.connection import parse_url as parse_redis_url
from sentry_sdk.utils import BadDsn, Dsn

from resilience.alerts import AlertThresholds
from resilience.errors import ConfigurationError
from resilience.escalation import EscalationPolicy, policy_from_mapping
from resilience.monitoring import thresholds_from_mapping
from resilience.notify.alert_store import GroupTiming
from resilience.notify.email import Security
from resilience.notify.pagerduty import EVENTS_URL
from resilience.notify.sms import TWILIO_URL
from resilience.notify.throttle import DEFAULT_LIMITS, ThrottleLimit
from resilience.resources import ResourceConfig, defaults_for, resources_from_mapping

__all__ = ["CONFIG_ENV", "Settings", "load_settings"]

CONFIG_ENV = "ALCHEMISER_CONFIG"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# What redis-py and kombu accept; anything else fails at the first connection, not at start.
REDIS_SCHEMES = ("redis", "rediss", "unix")
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
HTTP_SCHEMES = ("https", "http")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Upper bounds of the numeric settings (docs/CONFIGURATION.md): every seconds setting is also
# finite, so no inf or nan reaches Redis, a countdown or a datetime.
DAY_S = 24 * 3600.0
WEEK_S = 7 * DAY_S
MAX_TIMEOUT_S = 60.0  # a socket or HTTP timeout: longer is a hung call, not patience
MAX_VISIBILITY_TIMEOUT_S = DAY_S  # an unacknowledged message lost is restored within a day
# Workers renew the messages they hold four times per timeout (worker.transport): shorter
# than this and the renewals are a busy loop.
MIN_VISIBILITY_TIMEOUT_S = 4.0
MAX_COUNTDOWN_S = DAY_S
MAX_ORDER_TTL_S = WEEK_S  # also bounds `order submit --ttl` and `dlq replay --ttl`
MAX_EPOCH_CHECK_S = 3600.0  # a Redis that lost its data is noticed within the hour at worst
MAX_DLQ_RETENTION_S = 365 * DAY_S
MAX_DLQ_ENTRIES = 10_000_000
MAX_PAPER_CASH = 1e12
MAX_CONFIG_BYTES = 1024 * 1024

# A list setting: a list in the config file; in the environment "a,b" (or a JSON list).
CommaList = Annotated[list[str], NoDecode]
# A table kept whole: a table in the config file; in the environment a JSON object. Decoded
# by Settings._json_table so bad JSON is a ConfigurationError like any other bad value.
JsonTable = Annotated[dict[str, Any], NoDecode]


class Settings(BaseSettings):
    """Every setting of a deployment; see docs/CONFIGURATION.md."""

    model_config = SettingsConfigDict(
        env_prefix="ALCHEMISER_", frozen=True, extra="forbid", populate_by_name=True
    )

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str | None = None
    namespace: str = "alchemiser"
    trading_broker: Literal["paper", "alpaca"] = "paper"
    config: Path | None = None

    sentry_dsn: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SENTRY_DSN"))
    # Sentry's environment and release of every event and check-in (worker/sentry.py); unset:
    # sentry-sdk's own defaults (SENTRY_ENVIRONMENT / SENTRY_RELEASE, else "production" / none).
    sentry_environment: str | None = None
    sentry_release: str | None = None
    alpaca_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ALPACA_API_KEY")
    )
    alpaca_secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ALPACA_SECRET_KEY")
    )
    alpaca_base_url: str = Field(
        default="https://paper-api.alpaca.markets", validation_alias=AliasChoices("ALPACA_BASE_URL")
    )
    alpaca_data_url: str = Field(
        default="https://data.alpaca.markets", validation_alias=AliasChoices("ALPACA_DATA_URL")
    )
    alpaca_timeout_s: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)

    visibility_timeout_s: float = Field(
        default=60.0,
        ge=MIN_VISIBILITY_TIMEOUT_S,
        le=MAX_VISIBILITY_TIMEOUT_S,
        allow_inf_nan=False,
    )
    max_countdown_s: float = Field(default=1800.0, gt=0, le=MAX_COUNTDOWN_S, allow_inf_nan=False)
    max_redeliveries: int = Field(default=3, ge=0, le=100)
    order_ttl_s: float = Field(default=300.0, gt=0, le=MAX_ORDER_TTL_S, allow_inf_nan=False)
    redis_socket_timeout_s: float = Field(default=1.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    # How often each worker looks at the fleet epoch (worker/epoch_watch.py).
    redis_epoch_check_s: float = Field(
        default=10.0, gt=0, le=MAX_EPOCH_CHECK_S, allow_inf_nan=False
    )

    dlq_max_entries: int = Field(default=10_000, ge=1, le=MAX_DLQ_ENTRIES)
    dlq_retention_s: float = Field(
        default=30 * 24 * 3600.0, gt=0, le=MAX_DLQ_RETENTION_S, allow_inf_nan=False
    )

    paper_market_hours: Literal["always_open", "regular"] = "always_open"
    paper_initial_cash: float = Field(
        default=1_000_000.0, ge=0, le=MAX_PAPER_CASH, allow_inf_nan=False
    )

    # [resources."<name>".breaker|rate_limit|concurrency|retry_budget] tables of the config
    # file, merged over resilience.resources.DEFAULT_RESOURCES.
    resources: dict[str, Any] = Field(default_factory=dict)

    # Notification channels (resilience/notify), built by worker/channels.py: a channel is
    # built when its settings are complete, refused when they are partly given. An empty
    # value counts as unset. Secrets are SecretStr: out of every repr, in secret_values().
    # <channel>_send_resolved: whether the channel is sent resolved notices (Alertmanager's
    # send_resolved); not a setting that makes a channel given. The console always is.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Security = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str | None = None
    smtp_recipients: CommaList = Field(default_factory=list)
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    smtp_send_resolved: bool = True

    slack_webhook_url: SecretStr | None = None
    slack_timeout_s: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    slack_send_resolved: bool = True

    webhook_url: SecretStr | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    webhook_send_resolved: bool = True

    sms_account_sid: str | None = None
    sms_auth_token: SecretStr | None = None
    sms_from_number: str | None = None
    sms_to_numbers: CommaList = Field(default_factory=list)
    sms_base_url: str = TWILIO_URL
    sms_timeout_s: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    sms_send_resolved: bool = False  # a text at night to say all is well wakes people

    pagerduty_routing_key: SecretStr | None = None
    pagerduty_events_url: str = EVENTS_URL
    pagerduty_timeout_s: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    pagerduty_send_resolved: bool = True  # its resolve event closes the incident

    # The [escalation] table of the config file (resilience.escalation.policy_from_mapping);
    # empty: the plan's DEFAULT_POLICY.
    escalation: JsonTable = Field(default_factory=dict)
    # [grouping]: Alertmanager's defaults (resilience.notify.alert_store.GroupTiming).
    grouping_group_wait_s: float = Field(default=30.0, ge=0, le=DAY_S, allow_inf_nan=False)
    grouping_group_interval_s: float = Field(default=300.0, gt=0, le=DAY_S, allow_inf_nan=False)
    grouping_repeat_interval_s: float = Field(
        default=4 * 3600.0, ge=0, le=WEEK_S, allow_inf_nan=False
    )
    grouping_resolve_after_s: float = Field(default=300.0, ge=0, le=WEEK_S, allow_inf_nan=False)
    # [notification_limits.<class>] tables, merged over resilience.notify.throttle.DEFAULT_LIMITS.
    notification_limits: JsonTable = Field(default_factory=dict)
    # [alert_thresholds] (resilience.monitoring.thresholds_from_mapping); empty: the plan's.
    alert_thresholds: JsonTable = Field(default_factory=dict)
    # A channel's transient failure without a Retry-After is retried this long after, doubling.
    notification_retry_s: float = Field(default=30.0, gt=0, le=DAY_S, allow_inf_nan=False)

    # `alchemiser serve`: /health, /metrics and the dashboard. Loopback unless told otherwise.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)

    log_level: str = "INFO"
    # Task events feed Flower; they cost a plain no-op task ~44% of its throughput under
    # prefork here (docs/BENCHMARKS.md), so they are opt-in.
    task_events: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the config file, which comes in as init kwargs.
        return env_settings, init_settings

    @field_validator("namespace")
    @classmethod
    def _namespace_shape(cls, value: str) -> str:
        if not NAMESPACE_PATTERN.fullmatch(value):
            raise PydanticCustomError(
                "namespace",
                "ALCHEMISER_NAMESPACE is 1 to 64 letters, digits, '_', '.' or '-' (it prefixes "
                "every Redis key)",
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        _check_url(value, REDIS_SCHEMES, "ALCHEMISER_REDIS_URL", _parse_redis_url)
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value, BROKER_SCHEMES, "ALCHEMISER_BROKER_URL", _parse_broker_url)
        return value

    @field_validator("alpaca_base_url", "alpaca_data_url", "sms_base_url", "pagerduty_events_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        _check_url(value, HTTP_SCHEMES, _variable(info.field_name), _needs_host)
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _sentry_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                Dsn(value.get_secret_value())
            except (BadDsn, ValueError) as bad:
                raise PydanticCustomError(
                    "sentry_dsn",
                    "SENTRY_DSN is not a Sentry DSN like https://KEY@HOST/PROJECT ({reason})",
                    {"reason": str(bad)},
                ) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise PydanticCustomError(
                "log_level",
                "ALCHEMISER_LOG_LEVEL is one of {levels}",
                {"levels": _either(LOG_LEVELS)},
            )
        return level

    @model_validator(mode="after")
    def _resources_valid(self) -> Self:
        try:
            resources_from_mapping(self.resources, defaults_for(self.trading_broker))
        except ConfigurationError as bad:
            raise ValueError(str(bad)) from None
        return self

    @field_validator("smtp_recipients", "sms_to_numbers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """A string is ``a,b`` (blanks around items and empty items dropped) or a JSON list."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("is neither a comma-separated list nor a JSON list") from None
        return [item.strip() for item in text.split(",") if item.strip()]

    @field_validator("escalation", "notification_limits", "alert_thresholds", mode="before")
    @classmethod
    def _json_table(cls, value: object, info: ValidationInfo) -> object:
        """A string (from the environment) is a JSON object."""
        if not isinstance(value, str):
            return value
        variable = f"ALCHEMISER_{(info.field_name or '').upper()}"
        try:
            table = json.loads(value)
        except ValueError as bad:
            raise ValueError(f"{variable} is not JSON ({bad})") from None
        if not isinstance(table, dict):
            raise ValueError(f"{variable} is not a JSON object ({{...}})")
        return table

    @model_validator(mode="after")
    def _notification_settings_valid(self) -> Self:
        problems: list[str] = []
        try:
            _check_escalation_table(self.escalation)
            policy_from_mapping(self.escalation)
        except ConfigurationError as bad:
            problems.append(str(bad))
        try:
            _limits_from_mapping(self.notification_limits)
        except ConfigurationError as bad:
            problems.append(str(bad))
        try:
            thresholds_from_mapping(self.alert_thresholds)
        except (ConfigurationError, TypeError) as bad:
            problems.append(str(bad))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def escalation_policy(self) -> EscalationPolicy:
        """Who is told, on which channels, when: the ``[escalation]`` table, else the plan's
        defaults."""
        return policy_from_mapping(self.escalation)

    @property
    def grouping_timing(self) -> GroupTiming:
        """How alike failures are grouped into one alert, and when a quiet one resolves."""
        return GroupTiming(
            group_wait_s=self.grouping_group_wait_s,
            group_interval_s=self.grouping_group_interval_s,
            repeat_interval_s=self.grouping_repeat_interval_s,
            resolve_after_s=self.grouping_resolve_after_s,
        )

    @property
    def alert_thresholds_config(self) -> AlertThresholds:
        """The alert thresholds: the plan's, with the ``[alert_thresholds]`` table over them."""
        return thresholds_from_mapping(self.alert_thresholds)

    @property
    def notification_limits_config(self) -> dict[str, ThrottleLimit]:
        """The notification rate limit of each severity class: the defaults, with the
        ``[notification_limits.<class>]`` tables over them."""
        return _limits_from_mapping(self.notification_limits)

    @property
    def resource_configs(self) -> dict[str, ResourceConfig]:
        """Every guarded resource: the broker's defaults with the config file's tables over
        them."""
        return resources_from_mapping(self.resources, defaults_for(self.trading_broker))

    @property
    def effective_broker_url(self) -> str:
        """The Celery broker URL (the Redis URL unless set)."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_redis(self) -> bool:
        """Whether the Celery broker is Redis (namespacing by key prefix applies)."""
        return self.effective_broker_url.startswith(("redis://", "rediss://", "unix://"))

    def secret_values(self) -> list[str]:
        """The literal secrets this process knows, for the scrubber."""
        values = [
            s.get_secret_value()
            for s in (self.sentry_dsn, self.alpaca_api_key, self.alpaca_secret_key)
            if s is not None
        ]
        values.extend(
            s.get_secret_value()
            for s in (
                self.smtp_password,
                self.slack_webhook_url,
                self.webhook_url,
                self.sms_auth_token,
                self.pagerduty_routing_key,
            )
            if s is not None and s.get_secret_value()
        )
        for url in (self.redis_url, self.effective_broker_url):
            password = _url_password(url)
            if password:
                values.append(password)
        return values


def _variable(field_name: str | None) -> str:
    """The environment variable of a setting: its alias (``ALPACA_BASE_URL``), else
    ``ALCHEMISER_<NAME>``."""
    name = field_name or ""
    alias = Settings.model_fields[name].validation_alias if name in Settings.model_fields else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"ALCHEMISER_{name.upper()}"


def _either(choices: Iterable[str]) -> str:
    """``a, b or c``."""
    *rest, last = choices
    return f"{', '.join(rest)} or {last}" if rest else last


def _needs_host(url: str) -> None:
    if not urlsplit(url).hostname:
        raise ValueError("it names no host")


def _parse_redis_url(url: str) -> None:
    parse_redis_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    _check_redis_db(url)


def _parse_broker_url(url: str) -> None:
    parse_broker_url(url)
    if url.partition("://")[0].lower() in ("redis", "rediss"):
        _check_redis_db(url)


def _check_redis_db(url: str) -> None:
    """Refuse a database path that is not a number: redis-py reads ``/abc`` as database 0."""
    split = urlsplit(url)
    if split.scheme.lower() in ("redis", "rediss"):
        db = split.path.replace("/", "")
        if db and not (db.isascii() and db.isdigit()):
            raise ValueError(f"its path names database {db!r}, not a number")


def _check_url(
    url: str, schemes: tuple[str, ...], variable: str, parse: Callable[[str], object]
) -> None:
    """Refuse ``url`` unless its scheme is one of ``schemes`` and ``parse`` (the client's own
    URL parser) accepts it; the message names ``variable`` and never holds the URL, which
    may carry a password."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        found = f"its scheme is {scheme!r}" if sep else "it has no scheme"
        raise PydanticCustomError(
            "url_scheme",
            "{variable} must be a URL starting with {allowed} ({found})",
            {
                "variable": variable,
                "allowed": _either(f"{s}://" for s in schemes),
                "found": found,
            },
        )
    try:
        parse(url)
    except ValueError as bad:
        raise PydanticCustomError(
            "url",
            "{variable} is not a valid URL ({reason})",
            {"variable": variable, "reason": str(bad)},
        ) from None


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


_ESCALATION_KEYS = frozenset({"rules", "default"})
_RULE_KEYS = frozenset({"name", "severities", "error_types", "group_wait_s", "levels"})
_DEFAULT_RULE_KEYS = frozenset({"name", "group_wait_s", "levels"})  # it has no conditions
_LEVEL_KEYS = frozenset({"after_s", "channels", "fallback"})
_LIMIT_KEYS = frozenset({"limit", "window_s"})


def _check_escalation_table(raw: Mapping[str, Any]) -> None:
    """What :func:`policy_from_mapping` lets through: keys it does not know (it ignores them,
    so a misspelt condition, ``severity`` for ``severities``, would make a rule match every
    notification) and delays of ``inf`` or ``nan`` (the alert store turns them into whole
    microseconds). Tables of the wrong type are left to it to name."""
    _check_keys(raw, _ESCALATION_KEYS, "escalation")
    rules = raw.get("rules")
    tables: list[tuple[str, object, frozenset[str]]] = []
    if isinstance(rules, list):
        tables.extend((f"rules[{i}]", rule, _RULE_KEYS) for i, rule in enumerate(rules))
    if "default" in raw:
        tables.append(("default", raw["default"], _DEFAULT_RULE_KEYS))
    for where, rule, known in tables:
        if not isinstance(rule, Mapping):
            continue
        _check_keys(rule, known, f"escalation: {where}")
        _check_finite(rule, "group_wait_s", f"escalation: {where}")
        levels = rule.get("levels")
        if isinstance(levels, list):
            for number, level in enumerate(levels):
                if isinstance(level, Mapping):
                    place = f"escalation: {where}.levels[{number}]"
                    _check_keys(level, _LEVEL_KEYS, place)
                    _check_finite(level, "after_s", place)


def _check_finite(table: Mapping[Any, Any], key: str, where: str) -> None:
    value = table.get(key)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"{where}.{key} is a finite number of seconds, got {value!r}")


def _check_keys(table: Mapping[Any, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in set(table) - known)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def _limits_from_mapping(raw: Mapping[str, Any]) -> dict[str, ThrottleLimit]:
    """:data:`DEFAULT_LIMITS` with ``{class: {limit, window_s}}`` over them (a table may give
    one of the two); :class:`ConfigurationError` naming the place of a bad entry."""
    limits = dict(DEFAULT_LIMITS)
    for name, table in raw.items():
        where = f"notification_limits.{name}"
        if name not in DEFAULT_LIMITS:
            raise ConfigurationError(
                f"notification_limits: unknown class {name!r}; "
                f"known: {', '.join(sorted(DEFAULT_LIMITS))}"
            )
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{where} is a table of limit and window_s")
        _check_keys(table, _LIMIT_KEYS, where)
        limit = table.get("limit", DEFAULT_LIMITS[name].limit)
        window_s = table.get("window_s", DEFAULT_LIMITS[name].window_s)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"{where}.limit is a whole number >= 1, got {limit!r}")
        if (
            isinstance(window_s, bool)
            or not isinstance(window_s, int | float)
            or not math.isfinite(window_s)
            or window_s <= 0
        ):
            raise ConfigurationError(f"{where}.window_s is finite seconds > 0, got {window_s!r}")
        limits[name] = ThrottleLimit(limit=limit, window_s=float(window_s))
    return limits


# Config file tables kept whole rather than flattened into section_key settings.
_WHOLE_TABLES = frozenset({"resources", "escalation", "notification_limits", "alert_thresholds"})


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``[deadletter] max_entries = 5`` becomes ``dlq_max_entries``-style keys: section_key."""
    aliases = {
        "deadletter": "dlq",
        "celery": "",
        "orders": "order",
        "paper": "paper",
        "redis": "redis",
    }
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key in _WHOLE_TABLES and not prefix:
            # Kept whole: resource names contain dots; escalation rules and notification
            # limits are validated as one table each.
            flat[key] = value
        elif isinstance(value, dict):
            section = aliases.get(key, key)
            flat.update(_flatten(value, f"{section}_" if section else ""))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_config(path: Path) -> str:
    """The text of the config file; ``ConfigurationError`` beyond ``MAX_CONFIG_BYTES`` (read no
    further: ``/dev/zero`` never ends)."""
    with path.open("rb") as file:
        data = file.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigurationError(
            f"{CONFIG_ENV} names {path}, which is larger than {MAX_CONFIG_BYTES} bytes "
            "(a config file is a short TOML text)"
        )
    return data.decode("utf-8")


def load_settings() -> Settings:
    """Settings from the environment and the ``ALCHEMISER_CONFIG`` file.

    Raises :class:`ConfigurationError` with every problem listed.
    """
    file_values: dict[str, Any] = {}
    config_path = os.environ.get(CONFIG_ENV)
    if config_path:
        path = Path(config_path)
        try:
            file_values = _flatten(tomllib.loads(_read_config(path)))
        except FileNotFoundError:
            raise ConfigurationError(f"{CONFIG_ENV} names {path}, which does not exist") from None
        except OSError as unreadable:  # a directory, no permission
            raise ConfigurationError(
                f"{CONFIG_ENV} names {path}, which cannot be read ({unreadable.strerror})"
            ) from None
        except UnicodeDecodeError as bad:
            raise ConfigurationError(
                f"{CONFIG_ENV} names {path}, which is not UTF-8 text (byte {bad.start})"
            ) from None
        except tomllib.TOMLDecodeError as bad:
            raise ConfigurationError(f"{path} is not valid TOML: {bad}") from None
        file_values["config"] = path
    try:
        return Settings(**file_values)
    except ValidationError as invalid:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in invalid.errors(include_input=False)
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
    except SettingsError as undecodable:
        # pydantic-settings decodes JSON settings (ALCHEMISER_RESOURCES) itself; its message
        # names the field, not the value.
        raise ConfigurationError(f"invalid settings: {undecodable}") from None
