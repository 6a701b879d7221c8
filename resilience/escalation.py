"""Who is told, on which channels, and when: the escalation policy.

A policy is an ordered list of rules; the first rule that matches a notification decides (as an
Alertmanager route without ``continue``). A rule matches by severity and/or by error class (a
class matches its subclasses: ``TradingClientError`` matches ``InsufficientFundsError``). A rule
has levels: each names channels, all of which are told, and a delay after the alert opened; the
next level runs unless the alert was acknowledged or resolved. When a channel of a level fails
for good, the same notification goes to the level's fallbacks, in order.

The defaults are the plan's: CRITICAL immediately on email + Slack + SMS; any
``TradingClientError`` after 1 minute on email + Slack; HIGH after 5 minutes on email + Slack.
Anything else is logged (the console channel), which is also every level's last fallback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from resilience.errors import ConfigurationError, error_class_by_name
from resilience.notify.model import Notification
from resilience.policy import ErrorSeverity

__all__ = [
    "CHANNEL_NAMES",
    "DEFAULT_POLICY",
    "EscalationLevel",
    "EscalationPolicy",
    "EscalationRule",
    "policy_from_mapping",
]

CHANNEL_NAMES = frozenset({"email", "slack", "sms", "webhook", "pagerduty", "console"})


@dataclass(frozen=True, slots=True)
class EscalationLevel:
    """Tell ``channels`` ``after_s`` seconds after the alert opened (unless acknowledged)."""

    after_s: float
    channels: tuple[str, ...]
    fallback: tuple[str, ...] = ("console",)

    def __post_init__(self) -> None:
        if not 0 <= self.after_s < math.inf:
            raise ConfigurationError(
                f"escalation: a level's delay is a finite number of seconds >= 0: {self.after_s!r}"
            )
        if not self.channels:
            raise ConfigurationError("escalation: a level names at least one channel")
        unknown = sorted((set(self.channels) | set(self.fallback)) - CHANNEL_NAMES)
        if unknown:
            raise ConfigurationError(
                f"escalation: unknown channel(s) {', '.join(unknown)};"
                f" known: {', '.join(sorted(CHANNEL_NAMES))}"
            )


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """Levels for the notifications it matches: all given conditions hold (none: all match)."""

    name: str
    levels: tuple[EscalationLevel, ...]
    severities: frozenset[ErrorSeverity] = frozenset()
    error_types: tuple[str, ...] = ()  # class names of the hierarchy; subclasses match
    # How long a new alert gathers alike failures before its first flush; None: the grouping
    # default (Alertmanager's 30 s). The critical rule does not wait.
    group_wait_s: float | None = None

    def __post_init__(self) -> None:
        if not self.levels:
            raise ConfigurationError(f"escalation rule {self.name!r}: no levels")
        if self.group_wait_s is not None and not 0 <= self.group_wait_s < math.inf:
            raise ConfigurationError(f"escalation rule {self.name!r}: group_wait_s is seconds >= 0")
        delays = [level.after_s for level in self.levels]
        if delays != sorted(delays):
            raise ConfigurationError(
                f"escalation rule {self.name!r}: levels must come in the order of their delays"
            )
        for name in self.error_types:
            try:
                error_class_by_name(name)
            except KeyError as unknown:
                raise ConfigurationError(f"escalation rule {self.name!r}: {unknown}") from None

    def matches(self, notification: Notification) -> bool:
        """Whether the rule decides for ``notification``."""
        if self.severities and notification.severity not in self.severities:
            return False
        return not self.error_types or _is_one_of(notification.error_type, self.error_types)


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Rules in order; the first that matches decides, else ``default``."""

    rules: tuple[EscalationRule, ...]
    default: EscalationRule

    def route(self, notification: Notification) -> EscalationRule:
        """The rule that decides who is told about ``notification``."""
        for rule in self.rules:
            if rule.matches(notification):
                return rule
        return self.default


def _is_one_of(error_type: str, class_names: Sequence[str]) -> bool:
    try:
        cls = error_class_by_name(error_type)
    except KeyError:  # a foreign error type: matches only by its own name
        return error_type in class_names
    return any(issubclass(cls, error_class_by_name(name)) for name in class_names)


DEFAULT_POLICY = EscalationPolicy(
    rules=(
        EscalationRule(
            name="critical",
            severities=frozenset({ErrorSeverity.CRITICAL}),
            levels=(EscalationLevel(after_s=0.0, channels=("email", "slack", "sms")),),
            group_wait_s=0.0,
        ),
        EscalationRule(
            name="trading",
            error_types=("TradingClientError",),
            levels=(EscalationLevel(after_s=60.0, channels=("email", "slack")),),
        ),
        EscalationRule(
            name="high",
            severities=frozenset({ErrorSeverity.HIGH}),
            levels=(EscalationLevel(after_s=300.0, channels=("email", "slack")),),
        ),
    ),
    default=EscalationRule(
        name="default", levels=(EscalationLevel(after_s=0.0, channels=("console",)),)
    ),
)


def policy_from_mapping(raw: Mapping[str, object]) -> EscalationPolicy:
    """A policy from the config file's ``[escalation]`` table:

    ``rules = [{name, severities = ["critical"], error_types = ["TradingClientError"],
    levels = [{after_s, channels = [...], fallback = [...]}]}]`` and an optional ``default``
    rule of the same shape without conditions. Absent, the plan's defaults.
    """
    rules_raw = raw.get("rules")
    if rules_raw is None:
        rules: tuple[EscalationRule, ...] = DEFAULT_POLICY.rules
    elif isinstance(rules_raw, list):
        rules = tuple(_rule(item, f"rules[{i}]") for i, item in enumerate(rules_raw))
    else:
        raise ConfigurationError("escalation: rules is a list of tables")
    default_raw = raw.get("default")
    default = DEFAULT_POLICY.default if default_raw is None else _rule(default_raw, "default")
    return EscalationPolicy(rules=rules, default=default)


_RULE_KEYS = frozenset({"name", "severities", "error_types", "levels", "group_wait_s"})
_LEVEL_KEYS = frozenset({"after_s", "channels", "fallback"})


def _check_keys(raw: Mapping[str, object], known: frozenset[str], where: str) -> None:
    # A misspelt condition ("severity") would otherwise make a rule match everything.
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigurationError(
            f"escalation: {where}: unknown key(s) {', '.join(unknown)};"
            f" known: {', '.join(sorted(known))}"
        )


def _rule(raw: object, where: str) -> EscalationRule:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"escalation: {where} is a table")
    _check_keys(raw, _RULE_KEYS, where)
    levels_raw = raw.get("levels")
    if not isinstance(levels_raw, list) or not levels_raw:
        raise ConfigurationError(f"escalation: {where}.levels is a non-empty list of tables")
    try:
        severities = frozenset(ErrorSeverity(s) for s in _strings(raw, "severities", where))
    except ValueError as unknown:
        raise ConfigurationError(
            f"escalation: {where}.severities: {unknown}; known: low, medium, high, critical"
        ) from None
    group_wait_s = raw.get("group_wait_s")
    if group_wait_s is not None and (
        isinstance(group_wait_s, bool) or not isinstance(group_wait_s, int | float)
    ):
        raise ConfigurationError(f"escalation: {where}.group_wait_s is a number of seconds")
    return EscalationRule(
        name=str(raw.get("name", where)),
        severities=severities,
        error_types=_strings(raw, "error_types", where),
        group_wait_s=None if group_wait_s is None else float(group_wait_s),
        levels=tuple(_level(item, f"{where}.levels[{i}]") for i, item in enumerate(levels_raw)),
    )


def _level(raw: object, where: str) -> EscalationLevel:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"escalation: {where} is a table")
    _check_keys(raw, _LEVEL_KEYS, where)
    after_s = raw.get("after_s", 0.0)
    if isinstance(after_s, bool) or not isinstance(after_s, int | float):
        raise ConfigurationError(f"escalation: {where}.after_s is a number of seconds")
    fallback = _strings(raw, "fallback", where) if "fallback" in raw else ("console",)
    return EscalationLevel(
        after_s=float(after_s), channels=_strings(raw, "channels", where), fallback=fallback
    )


def _strings(raw: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"escalation: {where}.{key} is a list of strings")
    return tuple(value)
