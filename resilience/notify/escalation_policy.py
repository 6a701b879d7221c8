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
The config file's ``[escalation]`` table builds one (:mod:`resilience.notify.escalation_table`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from resilience.errors import ConfigurationError, error_class_by_name
from resilience.notify.model import Notification
from resilience.policy.retry import ErrorSeverity

__all__ = [
    "CHANNEL_NAMES",
    "DEFAULT_POLICY",
    "EscalationLevel",
    "EscalationPolicy",
    "EscalationRule",
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
                f"a level's delay is a finite number of seconds >= 0, got {self.after_s!r}"
            )
        if not self.channels:
            raise ConfigurationError("a level names at least one channel")
        unknown = sorted((set(self.channels) | set(self.fallback)) - CHANNEL_NAMES)
        if unknown:
            raise ConfigurationError(
                f"unknown channel(s) {', '.join(unknown)};"
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
            raise ConfigurationError(f"rule {self.name!r} has no levels")
        if self.group_wait_s is not None and not 0 <= self.group_wait_s < math.inf:
            raise ConfigurationError(
                f"rule {self.name!r}: group_wait_s is a finite number of seconds >= 0"
            )
        delays = [level.after_s for level in self.levels]
        if delays != sorted(delays):
            raise ConfigurationError(
                f"rule {self.name!r}: levels must come in the order of their delays"
                f" (after_s {', '.join(f'{delay:g}' for delay in delays)})"
            )
        for name in self.error_types:
            try:
                error_class_by_name(name)
            except KeyError as unknown:
                raise ConfigurationError(f"rule {self.name!r}: {unknown.args[0]}") from None

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
