"""Settings: environment (``ALCHEMISER_*``, CONTRACT) over the TOML config file over defaults.

Built once per process into a frozen object and passed down; nothing reads ``os.environ`` on
the hot path. Start-up validation refuses contradictory settings with a message that says
what to change.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from resilience.errors import ConfigurationError
from resilience.resources import ResourceConfig, defaults_for, resources_from_mapping

__all__ = ["CONFIG_ENV", "Settings", "load_settings"]

CONFIG_ENV = "ALCHEMISER_CONFIG"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# An ETA/countdown message is held unacknowledged by the worker until it runs; on the Redis
# broker it is delivered again if that takes longer than the visibility timeout
# (celery #2481, #4400). Countdowns stay below this share of it.
VISIBILITY_SAFETY = 0.9


class Settings(BaseSettings):
    """Every setting of a deployment; see docs/CONFIGURATION.md."""

    model_config = SettingsConfigDict(
        env_prefix="ALCHEMISER_", frozen=True, extra="forbid", populate_by_name=True
    )

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str | None = None
    namespace: str = Field(default="alchemiser", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    trading_broker: Literal["paper", "alpaca"] = "paper"
    config: Path | None = None

    sentry_dsn: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SENTRY_DSN"))
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
    alpaca_timeout_s: float = Field(default=10.0, gt=0)

    visibility_timeout_s: float = Field(default=3600.0, gt=0)
    max_countdown_s: float = Field(default=1800.0, gt=0)
    max_redeliveries: int = Field(default=3, ge=0, le=100)
    order_ttl_s: float = Field(default=300.0, gt=0)
    redis_socket_timeout_s: float = Field(default=1.0, gt=0)

    dlq_max_entries: int = Field(default=10_000, ge=1)
    dlq_retention_s: float = Field(default=30 * 24 * 3600.0, gt=0)

    paper_market_hours: Literal["always_open", "regular"] = "always_open"
    paper_initial_cash: float = Field(default=1_000_000.0, ge=0)

    # [resources."<name>".breaker|rate_limit|concurrency|retry_budget] tables of the config
    # file, merged over resilience.resources.DEFAULT_RESOURCES.
    resources: dict[str, Any] = Field(default_factory=dict)

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

    @model_validator(mode="after")
    def _countdowns_below_visibility_timeout(self) -> Self:
        limit = self.visibility_timeout_s * VISIBILITY_SAFETY
        if self.max_countdown_s >= limit:
            raise ValueError(
                f"max_countdown_s ({self.max_countdown_s:g}) must stay below "
                f"{VISIBILITY_SAFETY:.0%} of visibility_timeout_s ({self.visibility_timeout_s:g}"
                f" -> below {limit:g}): a retry waiting longer than the broker's visibility "
                "timeout is delivered twice. Lower ALCHEMISER_MAX_COUNTDOWN_S or raise "
                "ALCHEMISER_VISIBILITY_TIMEOUT_S."
            )
        return self

    @model_validator(mode="after")
    def _resources_valid(self) -> Self:
        try:
            resources_from_mapping(self.resources, defaults_for(self.trading_broker))
        except ConfigurationError as bad:
            raise ValueError(str(bad)) from None
        return self

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
        for url in (self.redis_url, self.effective_broker_url):
            password = _url_password(url)
            if password:
                values.append(password)
        return values


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


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
        if key == "resources" and not prefix:
            flat[key] = value  # kept whole: resource names contain dots
        elif isinstance(value, dict):
            section = aliases.get(key, key)
            flat.update(_flatten(value, f"{section}_" if section else ""))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_settings() -> Settings:
    """Settings from the environment and the ``ALCHEMISER_CONFIG`` file.

    Raises :class:`ConfigurationError` with every problem listed.
    """
    file_values: dict[str, Any] = {}
    config_path = os.environ.get(CONFIG_ENV)
    if config_path:
        path = Path(config_path)
        try:
            file_values = _flatten(tomllib.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ConfigurationError(f"{CONFIG_ENV} names {path}, which does not exist") from None
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
