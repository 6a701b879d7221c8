"""The escalation policy: which rule decides, its levels, and the config file's form."""

from __future__ import annotations

import re
from typing import Any

import pytest

from resilience.errors import ConfigurationError
from resilience.notify.escalation_policy import (
    DEFAULT_POLICY,
    EscalationLevel,
    EscalationRule,
)
from resilience.notify.escalation_table import policy_from_mapping
from resilience.notify.model import Notification
from resilience.policy.context import ErrorNotificationData
from resilience.policy.retry import ErrorSeverity


def note(error_type: str, severity: str, component: str = "trading") -> Notification:
    """A notification of one failure."""
    data: ErrorNotificationData = {
        "severity": severity,
        "priority": "P2",
        "title": f"{error_type} in {component}: op",
        "error_type": error_type,
        "error_id": "err-1",
        "message": "failed",
        "component": component,
        "operation": "op",
        "task_name": "tasks.op",
        "occurred_at": "2026-11-29T03:00:00+00:00",
    }
    return Notification.from_failure(data)


def decided(notification: Notification) -> tuple[str, float, tuple[str, ...]]:
    """(rule name, first level's delay, its channels) under the default policy."""
    rule = DEFAULT_POLICY.route(notification)
    return rule.name, rule.levels[0].after_s, rule.levels[0].channels


@pytest.mark.parametrize(
    ("error_type", "severity", "expected"),
    [
        ("InsufficientFundsError", "critical", ("critical", 0.0, ("email", "slack", "sms"))),
        ("DatabaseError", "critical", ("critical", 0.0, ("email", "slack", "sms"))),
        ("InsufficientFundsError", "high", ("trading", 60.0, ("email", "slack"))),
        ("MarketClosedError", "low", ("trading", 60.0, ("email", "slack"))),
        ("TradingClientError", "medium", ("trading", 60.0, ("email", "slack"))),
        ("MarketDataError", "high", ("high", 300.0, ("email", "slack"))),
        ("MarketDataError", "medium", ("default", 0.0, ("console",))),
        ("SomeForeignError", "low", ("default", 0.0, ("console",))),
    ],
)
def test_the_plans_rules_by_default(
    error_type: str, severity: str, expected: tuple[str, float, tuple[str, ...]]
) -> None:
    """CRITICAL at once on email + Slack + SMS; any TradingClientError (subclasses too) after
    1 minute on email + Slack; HIGH after 5 minutes on email + Slack; anything else logged."""
    assert decided(note(error_type, severity)) == expected


def test_every_default_level_falls_back_to_the_console() -> None:
    """The console channel, which always works, is every level's last fallback."""
    for rule in (*DEFAULT_POLICY.rules, DEFAULT_POLICY.default):
        assert all(level.fallback == ("console",) for level in rule.levels)


def test_a_config_with_levels_and_fallbacks() -> None:
    """Rules from the config file, in order: multi-level with delays and fallbacks; the first
    match decides; an error type rule matches subclasses."""
    policy = policy_from_mapping(
        {
            "rules": [
                {
                    "name": "orders",
                    "error_types": ["OrderExecutionError"],
                    "levels": [
                        {"after_s": 0, "channels": ["slack"], "fallback": ["email", "console"]},
                        {"after_s": 900, "channels": ["pagerduty"]},
                    ],
                },
                {
                    "name": "all-critical",
                    "severities": ["critical"],
                    "levels": [{"channels": ["sms"]}],
                },
            ],
            "default": {"levels": [{"channels": ["webhook"]}]},
        }
    )
    orders = policy.route(note("InsufficientFundsError", "critical"))
    assert orders.name == "orders"
    assert [(lv.after_s, lv.channels, lv.fallback) for lv in orders.levels] == [
        (0.0, ("slack",), ("email", "console")),
        (900.0, ("pagerduty",), ("console",)),
    ]
    assert policy.route(note("DatabaseError", "critical")).name == "all-critical"
    assert policy.route(note("DatabaseError", "low")).levels[0].channels == ("webhook",)
    assert policy_from_mapping({}) == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rules": {"name": "x"}}, "rules is a list of tables"),
        ({"rules": [{"name": "x"}]}, "escalation.rules[0].levels is required"),
        ({"rules": [{"levels": []}]}, "escalation.rules[0].levels is a non-empty list of tables"),
        ({"rules": [{"levels": [{"channels": ["pager"]}]}]}, "unknown channel(s) pager"),
        ({"rules": [{"levels": [{"channels": []}]}]}, "at least one channel"),
        ({"rules": [{"levels": [{"channels": ["sms"], "fallback": ["fax"]}]}]}, "fax"),
        (
            {"rules": [{"levels": [{"after_s": -1, "channels": ["sms"]}]}]},
            "finite number of seconds >= 0",
        ),
        ({"rules": [{"levels": [{"after_s": "soon", "channels": ["sms"]}]}]}, "number of seconds"),
        ({"rules": [{"severities": ["fatal"], "levels": [{"channels": ["sms"]}]}]}, "fatal"),
        (
            {"rules": [{"error_types": ["NoSuchError"], "levels": [{"channels": ["sms"]}]}]},
            "NoSuchError",
        ),
        (
            {
                "rules": [
                    {
                        "levels": [
                            {"after_s": 60, "channels": ["sms"]},
                            {"after_s": 0, "channels": ["sms"]},
                        ]
                    }
                ]
            },
            "order of their delays",
        ),
    ],
)
def test_a_bad_config_says_what_is_wrong(raw: dict[str, Any], message: str) -> None:
    """Each mistake is a ConfigurationError naming the place and the problem."""
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        policy_from_mapping(raw)


def test_a_rule_without_conditions_matches_everything() -> None:
    """No severities and no error types: every notification."""
    rule = EscalationRule(name="all", levels=(EscalationLevel(0.0, ("console",)),))
    assert rule.matches(note("AnyError", "low"))
    assert rule.matches(note("DatabaseError", "critical"))
    assert not EscalationRule(
        name="crit", severities=frozenset({ErrorSeverity.CRITICAL}), levels=rule.levels
    ).matches(note("DatabaseError", "high"))


def test_group_wait_per_rule() -> None:
    """The critical rule does not wait (0 s); others use the grouping default (None) unless
    the config says; a bad value is refused."""
    assert [r.group_wait_s for r in DEFAULT_POLICY.rules] == [0.0, None, None]
    policy = policy_from_mapping(
        {"rules": [{"group_wait_s": 5, "levels": [{"channels": ["sms"]}]}]}
    )
    assert policy.rules[0].group_wait_s == 5.0
    with pytest.raises(ConfigurationError, match="group_wait_s"):
        policy_from_mapping(
            {"rules": [{"group_wait_s": "soon", "levels": [{"channels": ["sms"]}]}]}
        )


def test_an_unknown_key_is_refused_not_ignored() -> None:
    """A misspelt key ("severity" for "severities") is refused: ignored, it would have made the
    rule match every notification."""
    with pytest.raises(ConfigurationError, match="unknown key"):
        policy_from_mapping({"rules": [{"severity": ["low"], "levels": [{"channels": ["sms"]}]}]})
    with pytest.raises(ConfigurationError, match="unknown key"):
        policy_from_mapping({"rules": [{"levels": [{"channel": ["sms"]}]}]})
