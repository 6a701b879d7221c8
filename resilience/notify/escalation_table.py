"""The config file's ``[escalation]`` table, validated, and the policy it builds::

    [[escalation.rules]]
    name = "orders"
    severities = ["critical"]               # any of low, medium, high, critical
    error_types = ["OrderExecutionError"]   # classes of the hierarchy; subclasses match
    group_wait_s = 0
    levels = [{ after_s = 0, channels = ["slack"], fallback = ["email", "console"] }]

    [escalation.default]                    # the same without conditions
    levels = [{ channels = ["console"] }]

Without ``rules``, the plan's rules (:data:`DEFAULT_POLICY`); ``rules = []`` leaves the default
rule alone. Every problem names its place: ``escalation.rules[0]: unknown key(s) severity; known:
error_types, group_wait_s, levels, name, severities`` (a misspelt condition would otherwise make
the rule match every notification).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Self

from pydantic import BeforeValidator, ValidationError, field_validator, model_validator

from resilience.config_table import (
    ConfigTable,
    Seconds,
    Strings,
    describe_errors,
    is_,
    problem,
    unknown_keys,
)
from resilience.errors import ConfigurationError, error_class_by_name
from resilience.notify.escalation_policy import (
    DEFAULT_POLICY,
    EscalationLevel,
    EscalationPolicy,
    EscalationRule,
)
from resilience.policy.retry import ErrorSeverity

__all__ = ["EscalationTable", "LevelTable", "RuleTable", "policy_from_mapping"]


def _non_empty_list(value: object) -> object:
    if not isinstance(value, list | tuple) or not value:
        raise is_("a non-empty list of tables", value)
    return value


def _list(value: object) -> object:
    if not isinstance(value, list | tuple):
        raise is_("a list of tables", value)
    return value


class LevelTable(ConfigTable):
    """``{after_s, channels, fallback}``: who is told how long after the alert opened."""

    after_s: Seconds = 0.0
    channels: Strings
    fallback: Strings = ("console",)

    @model_validator(mode="after")
    def _buildable(self) -> Self:
        try:
            self.build()
        except ConfigurationError as refused:
            raise problem(str(refused)) from None
        return self

    def build(self) -> EscalationLevel:
        """The level this table describes."""
        return EscalationLevel(after_s=self.after_s, channels=self.channels, fallback=self.fallback)


class DefaultRuleTable(ConfigTable):
    """``[escalation.default]``: the rule for what no other rule matches (no conditions)."""

    name: str | None = None
    group_wait_s: Seconds | None = None
    levels: Annotated[tuple[LevelTable, ...], BeforeValidator(_non_empty_list)]

    @field_validator("levels")
    @classmethod
    def _in_order(cls, levels: tuple[LevelTable, ...]) -> tuple[LevelTable, ...]:
        delays = [level.after_s for level in levels]
        if delays != sorted(delays):
            raise problem(
                "must come in the order of their delays"
                f" (after_s {', '.join(f'{delay:g}' for delay in delays)})"
            )
        return levels

    def build(self, place: str) -> EscalationRule:
        """The rule, named after its ``place`` unless it has a name."""
        return EscalationRule(
            name=self.name or place,
            levels=tuple(level.build() for level in self.levels),
            group_wait_s=self.group_wait_s,
        )


class RuleTable(DefaultRuleTable):
    """An ``[[escalation.rules]]`` table: levels for the notifications whose severity and error
    class match (a condition left out matches all)."""

    severities: frozenset[ErrorSeverity] = frozenset()
    error_types: Strings = ()

    @field_validator("severities", mode="before")
    @classmethod
    def _severities(cls, value: object) -> object:
        if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
            raise is_("a list of strings", value)
        known = {severity.value for severity in ErrorSeverity}
        unknown = [name for name in value if name not in known]
        if unknown:
            raise unknown_keys("severity", unknown, known)
        return frozenset(ErrorSeverity(name) for name in value)

    @field_validator("error_types")
    @classmethod
    def _error_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            try:
                error_class_by_name(name)
            except KeyError as unknown:
                raise problem(unknown.args[0]) from None
        return value

    def build(self, place: str) -> EscalationRule:
        """The rule with its conditions."""
        return replace(
            super().build(place), severities=self.severities, error_types=self.error_types
        )


class EscalationTable(ConfigTable):
    """The whole ``[escalation]`` table."""

    rules: Annotated[tuple[RuleTable, ...], BeforeValidator(_list)] | None = None
    default: DefaultRuleTable | None = None

    def build(self) -> EscalationPolicy:
        """The policy: the tables given, the plan's for what is left out."""
        rules = (
            DEFAULT_POLICY.rules
            if self.rules is None
            else tuple(rule.build(f"rules[{i}]") for i, rule in enumerate(self.rules))
        )
        default = DEFAULT_POLICY.default if self.default is None else self.default.build("default")
        return EscalationPolicy(rules=rules, default=default)


def policy_from_mapping(raw: Mapping[str, object]) -> EscalationPolicy:
    """The policy of an ``[escalation]`` table (a parsed TOML table or JSON object);
    ``ConfigurationError`` naming every problem's place."""
    try:
        return EscalationTable.model_validate(raw).build()
    except ValidationError as invalid:
        raise ConfigurationError(describe_errors(invalid, root="escalation")) from None
