"""Settings: environment (``ALCHEMISER_*``, CONTRACT) over the TOML config file over defaults.

Built once per process into a frozen object and passed down; nothing reads ``os.environ`` on
the hot path. Start-up validation refuses contradictory settings with a message that says
what to change.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal, Self

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
)
from sentry_sdk.utils import BadDsn, Dsn

from resilience.config_table import describe_errors, placed
from resilience.errors import ConfigurationError
from resilience.guard.resource_tables import ResourcesTable
from resilience.guard.resources import ResourceConfig
from resilience.notify.alert_store import GroupTiming
from resilience.notify.email import Security
from resilience.notify.escalation_policy import EscalationPolicy
from resilience.notify.escalation_table import EscalationTable
from resilience.notify.pagerduty import EVENTS_URL
from resilience.notify.sms import TWILIO_URL
from resilience.notify.throttle import NotificationLimits, ThrottleLimit
from resilience.observability.monitoring import AlertThresholdsTable
from resilience.observability.thresholds import AlertThresholds
from tasks.spec import SPEC
from worker.config_file import CONFIG_ENV, read_config_file
from worker.setting_urls import (
    check_broker_url,
    check_http_url,
    check_redis_url,
    either,
    url_password,
)

__all__ = ["CONFIG_ENV", "Settings", "load_settings"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
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

# A list setting: a list in the config file; in the environment "a,b" (or a JSON list).
CommaList = Annotated[list[str], NoDecode]


# A quote older than an hour is history, not a price to trade on.
MAX_QUOTE_AGE_S = 3600.0


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
    # The second source of quotes when the broker's market data fails: none, paper, or
    # module:factory (tasks/market_data/providers.py); and the oldest quote ever used.
    quote_fallback: str = Field(
        default="none", min_length=1, max_length=200, pattern=r"^(none|paper|[\w.]+:\w+)$"
    )
    quote_max_age_s: float = Field(default=60.0, gt=0, le=MAX_QUOTE_AGE_S, allow_inf_nan=False)
    paper_initial_cash: float = Field(
        default=1_000_000.0, ge=0, le=MAX_PAPER_CASH, allow_inf_nan=False
    )

    # [resources."<name>".breaker|rate_limit|concurrency|retry_budget] tables of the config
    # file, merged over the application's defaults (tasks.spec.SPEC.resources_for).
    resources: Annotated[ResourcesTable, NoDecode] = Field(
        default_factory=lambda: ResourcesTable({})
    )

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

    # The [escalation] table of the config file (resilience.notify.escalation_table); empty:
    # the plan's DEFAULT_POLICY.
    escalation: Annotated[EscalationTable, NoDecode] = Field(default_factory=EscalationTable)
    # [grouping]: Alertmanager's defaults (resilience.notify.alert_store.GroupTiming).
    grouping_group_wait_s: float = Field(default=30.0, ge=0, le=DAY_S, allow_inf_nan=False)
    grouping_group_interval_s: float = Field(default=300.0, gt=0, le=DAY_S, allow_inf_nan=False)
    grouping_repeat_interval_s: float = Field(
        default=4 * 3600.0, ge=0, le=WEEK_S, allow_inf_nan=False
    )
    grouping_resolve_after_s: float = Field(default=300.0, ge=0, le=WEEK_S, allow_inf_nan=False)
    # [notification_limits.<class>] tables, merged over resilience.notify.throttle.DEFAULT_LIMITS.
    notification_limits: Annotated[NotificationLimits, NoDecode] = Field(
        default_factory=lambda: NotificationLimits({})
    )
    # [alert_thresholds] (resilience.observability.monitoring.AlertThresholdsTable); empty: the
    # plan's.
    alert_thresholds: Annotated[AlertThresholdsTable, NoDecode] = Field(
        default_factory=AlertThresholdsTable
    )
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
        check_redis_url(value, "ALCHEMISER_REDIS_URL")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_broker_url(value, "ALCHEMISER_BROKER_URL")
        return value

    @field_validator("alpaca_base_url", "alpaca_data_url", "sms_base_url", "pagerduty_events_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        check_http_url(value, _variable(info.field_name))
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
                {"levels": either(LOG_LEVELS)},
            )
        return level

    @model_validator(mode="after")
    def _resources_valid(self) -> Self:
        try:
            self.resources.merged_over(SPEC.resources_for(self.trading_broker))
        except ConfigurationError as bad:
            raise placed(str(bad)) from None
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

    @field_validator(
        "resources", "escalation", "notification_limits", "alert_thresholds", mode="before"
    )
    @classmethod
    def _json_table(cls, value: object, info: ValidationInfo) -> object:
        """A string (from the environment) is a JSON object."""
        if not isinstance(value, str):
            return value
        variable = f"ALCHEMISER_{(info.field_name or '').upper()}"
        try:
            table = json.loads(value)
        except ValueError as bad:
            raise placed(f"{variable} is not JSON ({bad})") from None
        if not isinstance(table, dict):
            raise placed(f"{variable} is not a JSON object ({{...}})")
        return table

    @property
    def escalation_policy(self) -> EscalationPolicy:
        """Who is told, on which channels, when: the ``[escalation]`` table, else the plan's
        defaults."""
        return self.escalation.build()

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
        return self.alert_thresholds.build()

    @property
    def notification_limits_config(self) -> dict[str, ThrottleLimit]:
        """The notification rate limit of each severity class: the defaults, with the
        ``[notification_limits.<class>]`` tables over them."""
        return self.notification_limits.build()

    @property
    def resource_configs(self) -> dict[str, ResourceConfig]:
        """Every guarded resource: the broker's defaults with the config file's tables over
        them."""
        return self.resources.merged_over(SPEC.resources_for(self.trading_broker))

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
            password = url_password(url)
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


def load_settings() -> Settings:
    """Settings from the environment and the ``ALCHEMISER_CONFIG`` file.

    Raises :class:`ConfigurationError` with every problem listed.
    """
    config_path = os.environ.get(CONFIG_ENV)
    file_values = read_config_file(Path(config_path)) if config_path else {}
    try:
        return Settings(**file_values)
    except ValidationError as invalid:
        raise ConfigurationError(f"invalid settings: {describe_errors(invalid)}") from None
