"""The config file's ``[resources."<name>"]`` tables, validated, and the resources they build::

    [resources."mail.smtp".rate_limit]
    rate = 10
    period_s = 1

    [resources."mail.smtp"]
    breaker = false          # this protection off
    fail_mode = "closed"

Each table overrides only the fields it gives, over the application's defaults for the resource
(:func:`resources_from_mapping`'s ``base``). A key a table does not know, a value of the wrong
type, and a value out of its bounds are refused naming their place:
``resources.mail.smtp.rate_limit.burst is a whole number, got 2.5``,
``resources.mail.smtp.rate_limit: cost must be between 1 and burst + 1``.

The bounds are the configuration dataclasses' own (:mod:`resilience.guard.resources`), checked
when a table is merged over its default; the tables check the keys and the types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields, replace
from typing import Any, Literal

from pydantic import RootModel, ValidationError, ValidationInfo, field_validator

from resilience.config_table import ConfigTable, Number, WholeNumber, describe_errors, is_
from resilience.errors import ConfigurationError
from resilience.guard.resources import (
    BreakerConfig,
    ConcurrencyConfig,
    FailMode,
    PermitLeaseConfig,
    RateLimitConfig,
    ResourceConfig,
    RetryBudgetConfig,
)

__all__ = [
    "SECTION_TABLES",
    "BreakerTable",
    "ConcurrencyTable",
    "PermitLeaseTable",
    "RateLimitTable",
    "ResourceTable",
    "ResourcesTable",
    "RetryBudgetTable",
    "resources_from_mapping",
]


class BreakerTable(ConfigTable):
    """``[resources."<name>".breaker]``: any field of :class:`BreakerConfig`."""

    window_s: WholeNumber | None = None
    minimum_calls: WholeNumber | None = None
    failure_rate_threshold: Number | None = None
    slow_call_rate_threshold: Number | None = None
    slow_call_duration_s: Number | None = None
    wait_duration_in_open_s: Number | None = None
    wait_multiplier: Number | None = None
    max_wait_in_open_s: Number | None = None
    wait_jitter: Number | None = None
    permitted_calls_in_half_open: WholeNumber | None = None
    probe_lease_s: Number | None = None


class RateLimitTable(ConfigTable):
    """``[resources."<name>".rate_limit]``: any field of :class:`RateLimitConfig`."""

    rate: Number | None = None
    period_s: Number | None = None
    burst: WholeNumber | None = None
    cost: WholeNumber | None = None


class ConcurrencyTable(ConfigTable):
    """``[resources."<name>".concurrency]``: any field of :class:`ConcurrencyConfig`."""

    limit: WholeNumber | None = None
    lease_s: Number | None = None


class RetryBudgetTable(ConfigTable):
    """``[resources."<name>".retry_budget]``: any field of :class:`RetryBudgetConfig`."""

    capacity: Number | None = None
    retry_cost: Number | None = None
    timeout_cost: Number | None = None
    success_refill: Number | None = None
    refill_per_s: Number | None = None


class PermitLeaseTable(ConfigTable):
    """``[resources."<name>".permit_lease]``: any field of :class:`PermitLeaseConfig`."""

    permits: WholeNumber | None = None
    ttl_s: Number | None = None


# Each section of a resource: its table and the configuration it overrides.
SECTION_TABLES: Mapping[str, tuple[type[ConfigTable], type[Any]]] = {
    "breaker": (BreakerTable, BreakerConfig),
    "rate_limit": (RateLimitTable, RateLimitConfig),
    "concurrency": (ConcurrencyTable, ConcurrencyConfig),
    "retry_budget": (RetryBudgetTable, RetryBudgetConfig),
    "permit_lease": (PermitLeaseTable, PermitLeaseConfig),
}


class ResourceTable(ConfigTable):
    """``[resources."<name>"]``: its sections (``false`` turns one off) and its fail mode."""

    breaker: BreakerTable | Literal[False] | None = None
    rate_limit: RateLimitTable | Literal[False] | None = None
    concurrency: ConcurrencyTable | Literal[False] | None = None
    retry_budget: RetryBudgetTable | Literal[False] | None = None
    permit_lease: PermitLeaseTable | Literal[False] | None = None
    fail_mode: FailMode | None = None
    fail_closed_retry_s: Number | None = None

    @field_validator(*SECTION_TABLES, mode="wrap")
    @classmethod
    def _section(cls, value: object, _: Any, info: ValidationInfo) -> object:
        # Validated as its own table, not as the union: a bad table is one problem, not also
        # "should be False".
        table, _config = SECTION_TABLES[str(info.field_name)]
        if value is False:
            return value
        if isinstance(value, dict | table):
            return table.model_validate(value)
        raise is_("a table (or false to turn it off)", value)

    @field_validator("fail_mode", mode="before")
    @classmethod
    def _fail_mode(cls, value: object) -> object:
        if value not in ("open", "closed"):
            raise is_("'open' or 'closed'", value)
        return value

    def merged_over(self, current: ResourceConfig, place: str) -> ResourceConfig:
        """``current`` with what this table gives; ``ConfigurationError`` at ``place`` when a
        value is out of its bounds."""
        changes: dict[str, Any] = {}
        for section, (_, config) in SECTION_TABLES.items():
            table = getattr(self, section)
            if table is False:
                changes[section] = None
            elif table is not None:
                changes[section] = _merged_section(
                    config, getattr(current, section), table, f"{place}.{section}"
                )
        for name in ("fail_mode", "fail_closed_retry_s"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        try:
            return replace(current, **changes)
        except ConfigurationError as refused:
            raise ConfigurationError(f"{place}: {refused}") from None


def _merged_section(config: type[Any], current: Any, table: ConfigTable, place: str) -> Any:
    given = table.model_dump(exclude_unset=True)
    try:
        if current is not None:
            return replace(current, **given)
        required = [
            f.name
            for f in fields(config)
            if f.default is MISSING and f.default_factory is MISSING and f.name not in given
        ]
        if required:
            raise ConfigurationError(
                f"{', '.join(required)} is required (the resource has no"
                f" {place.rsplit('.', maxsplit=1)[-1]} to start from)"
            )
        return config(**given)
    except ConfigurationError as refused:
        raise ConfigurationError(f"{place}: {refused}") from None


class ResourcesTable(RootModel[dict[str, ResourceTable]]):
    """The ``[resources."<name>"]`` tables, by resource name."""

    model_config = {"frozen": True}

    def merged_over(self, base: Mapping[str, ResourceConfig]) -> dict[str, ResourceConfig]:
        """``base`` with each table merged over its resource (a new name starts unprotected)."""
        merged = dict(base)
        for name, table in self.root.items():
            current = merged.get(name) or _unprotected(name)
            merged[name] = table.merged_over(current, f"resources.{name}")
        return merged


def _unprotected(name: str) -> ResourceConfig:
    try:
        return ResourceConfig(name=name)
    except ConfigurationError as refused:
        raise ConfigurationError(f"resources.{name}: {refused}") from None


def resources_from_mapping(
    raw: Mapping[str, Any], base: Mapping[str, ResourceConfig] | None = None
) -> dict[str, ResourceConfig]:
    """``base`` with the config file's ``[resources.*]`` tables merged over it;
    ``ConfigurationError`` naming every problem's place."""
    try:
        tables = ResourcesTable.model_validate(raw)
    except ValidationError as invalid:
        raise ConfigurationError(describe_errors(invalid, root="resources")) from None
    return tables.merged_over(base or {})
