"""Notification settings (``worker.settings``) and the channels built from them
(``worker.channels``): from the environment and from the config file, via ``load_settings``."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from resilience.errors import ConfigurationError
from resilience.notify.alert_store import GroupTiming
from resilience.notify.channel import Delivery, FailureReason, NotificationChannel
from resilience.notify.console import ConsoleChannel
from resilience.notify.email import EmailChannel, EmailConfig
from resilience.notify.escalation_policy import DEFAULT_POLICY, EscalationLevel
from resilience.notify.escalation_table import EscalationTable, policy_from_mapping
from resilience.notify.model import Notification
from resilience.notify.pagerduty import EVENTS_URL, PagerDutyChannel, PagerDutyConfig
from resilience.notify.slack import SlackChannel, SlackConfig
from resilience.notify.sms import TWILIO_URL, SmsChannel, SmsConfig
from resilience.notify.throttle import DEFAULT_LIMITS, NotificationLimits, ThrottleLimit
from resilience.notify.webhook import WebhookChannel, WebhookConfig
from resilience.policy.context import ErrorNotificationData
from tests.fakes.http_receiver import HttpReceiver, Reply
from tests.fakes.smtp_server import SmtpServer
from worker.channels import (
    ChannelConfigs,
    UnconfiguredChannel,
    build_channels,
    channel_configs,
    unconfigured,
)
from worker.settings import CONFIG_ENV, Settings, load_settings

OUTSIDE_VARIABLES = (
    "SENTRY_DSN",
    "ALPACA_API_KEY",
    "ALPACA_SECRET_KEY",
    "ALPACA_BASE_URL",
    "ALPACA_DATA_URL",
)

# Planted secrets, looked for in every message and repr.
SMTP_PASSWORD = "Planted1-smtp-Pa55"
SLACK_URL = "https://hooks.slack.com/services/T0PLANT/B0PLANT/Planted2SlackPath"
WEBHOOK_URL = "https://hooks.alchemiser.test/in/Planted3WebhookPath"
SMS_TOKEN = "Planted4TwilioToken"
ROUTING_KEY = "Planted5RoutingKey0123456789ab"
SECRETS = (SMTP_PASSWORD, SLACK_URL, WEBHOOK_URL, SMS_TOKEN, ROUTING_KEY)

SID = "AC0123456789abcdef0123456789abcdef"
FROM = "+15005550006"
TO_A = "+447700900123"
TO_B = "+15005550009"

ENVIRONMENT = {
    "ALCHEMISER_SMTP_HOST": "smtp.alchemiser.test",
    "ALCHEMISER_SMTP_PORT": "465",
    "ALCHEMISER_SMTP_SECURITY": "tls",
    "ALCHEMISER_SMTP_USERNAME": "alerts-relay",
    "ALCHEMISER_SMTP_PASSWORD": SMTP_PASSWORD,
    "ALCHEMISER_SMTP_SENDER": "alerts@alchemiser.test",
    "ALCHEMISER_SMTP_RECIPIENTS": "ops@alchemiser.test, oncall@alchemiser.test",
    "ALCHEMISER_SMTP_TIMEOUT_S": "7.5",
    "ALCHEMISER_SLACK_WEBHOOK_URL": SLACK_URL,
    "ALCHEMISER_SLACK_TIMEOUT_S": "3",
    "ALCHEMISER_WEBHOOK_URL": WEBHOOK_URL,
    "ALCHEMISER_WEBHOOK_TIMEOUT_S": "4",
    "ALCHEMISER_SMS_ACCOUNT_SID": SID,
    "ALCHEMISER_SMS_AUTH_TOKEN": SMS_TOKEN,
    "ALCHEMISER_SMS_FROM_NUMBER": FROM,
    "ALCHEMISER_SMS_TO_NUMBERS": f"{TO_A},{TO_B}",
    "ALCHEMISER_SMS_BASE_URL": "https://twilio.alchemiser.test",
    "ALCHEMISER_SMS_TIMEOUT_S": "6",
    "ALCHEMISER_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
    "ALCHEMISER_PAGERDUTY_EVENTS_URL": "https://events.eu.pagerduty.com/v2/enqueue",
    "ALCHEMISER_PAGERDUTY_TIMEOUT_S": "2",
}

CONFIG_FILE = f"""
[smtp]
host = "smtp.alchemiser.test"
port = 465
security = "tls"
username = "alerts-relay"
password = "{SMTP_PASSWORD}"
sender = "alerts@alchemiser.test"
recipients = ["ops@alchemiser.test", "oncall@alchemiser.test"]
timeout_s = 7.5

[slack]
webhook_url = "{SLACK_URL}"
timeout_s = 3

[webhook]
url = "{WEBHOOK_URL}"
timeout_s = 4

[sms]
account_sid = "{SID}"
auth_token = "{SMS_TOKEN}"
from_number = "{FROM}"
to_numbers = ["{TO_A}", "{TO_B}"]
base_url = "https://twilio.alchemiser.test"
timeout_s = 6

[pagerduty]
routing_key = "{ROUTING_KEY}"
events_url = "https://events.eu.pagerduty.com/v2/enqueue"
timeout_s = 2
"""

EXPECTED = ChannelConfigs(
    email=EmailConfig(
        host="smtp.alchemiser.test",
        port=465,
        security="tls",
        username="alerts-relay",
        password=SMTP_PASSWORD,
        sender="alerts@alchemiser.test",
        recipients=("ops@alchemiser.test", "oncall@alchemiser.test"),
        timeout_s=7.5,
    ),
    slack=SlackConfig(webhook_url=SLACK_URL, timeout_s=3.0),
    webhook=WebhookConfig(url=WEBHOOK_URL, timeout_s=4.0),
    sms=SmsConfig(
        account_sid=SID,
        auth_token=SMS_TOKEN,
        from_number=FROM,
        to_numbers=(TO_A, TO_B),
        base_url="https://twilio.alchemiser.test",
        timeout_s=6.0,
    ),
    pagerduty=PagerDutyConfig(
        routing_key=ROUTING_KEY,
        events_url="https://events.eu.pagerduty.com/v2/enqueue",
        timeout_s=2.0,
    ),
)

ESCALATION_TOML = """
[[escalation.rules]]
name = "orders"
error_types = ["OrderExecutionError"]
levels = [
  { after_s = 0, channels = ["slack"], fallback = ["email", "console"] },
  { after_s = 900, channels = ["pagerduty"] },
]

[escalation.default]
levels = [{ channels = ["webhook"] }]
"""
ESCALATION_TABLE: dict[str, Any] = {
    "rules": [
        {
            "name": "orders",
            "error_types": ["OrderExecutionError"],
            "levels": [
                {"after_s": 0, "channels": ["slack"], "fallback": ["email", "console"]},
                {"after_s": 900, "channels": ["pagerduty"]},
            ],
        }
    ],
    "default": {"levels": [{"channels": ["webhook"]}]},
}
ESCALATION_JSON = (
    '{"rules": [{"name": "orders", "error_types": ["OrderExecutionError"], "levels": ['
    '{"after_s": 0, "channels": ["slack"], "fallback": ["email", "console"]}, '
    '{"after_s": 900, "channels": ["pagerduty"]}]}], '
    '"default": {"levels": [{"channels": ["webhook"]}]}}'
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment the tests run in."""
    for name in list(os.environ):
        if name.upper().startswith("ALCHEMISER_") or name.upper() in OUTSIDE_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A started HTTP receiver on a free loopback port; stopped afterwards."""
    with HttpReceiver() as started:
        yield started


def set_environment(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    """Set every variable of ``variables``."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    """A TOML config file named by ``ALCHEMISER_CONFIG``."""
    path = tmp_path / "alchemiser.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    return path


def load_refused() -> str:
    """The message of the ``ConfigurationError`` that ``load_settings`` raises."""
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    return refused.value.message


def build_refused(settings: Settings) -> str:
    """The message of the ``ConfigurationError`` that ``build_channels`` raises (and
    ``channel_configs`` alike)."""
    with pytest.raises(ConfigurationError) as configs_refused:
        channel_configs(settings)
    with pytest.raises(ConfigurationError) as refused:
        build_channels(settings)
    assert configs_refused.value.message == refused.value.message
    return refused.value.message


def notification() -> Notification:
    """A critical group of one InsufficientFundsError in ``trading``."""
    failure: ErrorNotificationData = {
        "severity": "critical",
        "priority": "p1",
        "title": "Order rejected",
        "error_type": "InsufficientFundsError",
        "error_id": "err-1",
        "message": "buying power 120.50 below order cost 980.00",
        "component": "trading",
        "operation": "submit_order",
        "task_name": "tasks.trading.submit_order",
        "occurred_at": "2026-03-02T14:30:01+00:00",
    }
    return Notification.for_group([failure], count=1)


class CountingSession(requests.Session):
    """A session that counts its POSTs."""

    def __init__(self) -> None:
        super().__init__()
        self.posts = 0

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Count, then POST."""
        self.posts += 1
        return super().post(*args, **kwargs)


# --- nothing set ------------------------------------------------------------------------------


def test_nothing_set_keeps_the_defaults() -> None:
    """No channel settings: the plan's policy, Alertmanager's timing, the default limits, no
    secrets; console built, email/Slack/SMS named by the policy but unconfigured."""
    settings = load_settings()
    assert settings.escalation_policy == DEFAULT_POLICY
    assert settings.grouping_timing == GroupTiming()
    assert settings.grouping_timing == GroupTiming(30.0, 300.0, 14400.0, 300.0)
    assert settings.notification_limits_config == dict(DEFAULT_LIMITS)
    assert settings.secret_values() == []
    assert channel_configs(settings) == ChannelConfigs()
    assert unconfigured(settings) == ["email", "slack", "sms"]
    channels = build_channels(settings)
    assert list(channels) == ["console", "email", "slack", "sms"]
    assert isinstance(channels["console"], ConsoleChannel)
    assert channels["email"] == UnconfiguredChannel("email")
    assert channels["slack"] == UnconfiguredChannel("slack")
    assert channels["sms"] == UnconfiguredChannel("sms")


def test_channel_setting_defaults() -> None:
    """Ports, security, endpoints and timeouts default to the channel configs' own defaults."""
    settings = load_settings()
    assert (settings.smtp_port, settings.smtp_security, settings.smtp_timeout_s) == (
        587,
        "starttls",
        10.0,
    )
    assert (settings.smtp_recipients, settings.sms_to_numbers) == ([], [])
    assert (settings.sms_base_url, settings.pagerduty_events_url) == (TWILIO_URL, EVENTS_URL)
    assert settings.pagerduty_events_url == "https://events.pagerduty.com/v2/enqueue"
    assert (settings.slack_timeout_s, settings.webhook_timeout_s) == (5.0, 5.0)
    assert (settings.sms_timeout_s, settings.pagerduty_timeout_s) == (5.0, 5.0)
    assert settings.escalation == EscalationTable()
    assert settings.notification_limits == NotificationLimits({})


# --- every channel configured -----------------------------------------------------------------


@pytest.mark.parametrize("source", ["environment", "config file"])
def test_every_channel_is_built_with_its_settings(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every channel's settings, from the environment or from the file, make its config
    field for field; each channel is built and none is unconfigured."""
    if source == "environment":
        set_environment(monkeypatch, ENVIRONMENT)
    else:
        write_config(tmp_path, monkeypatch, CONFIG_FILE)
    settings = load_settings()
    assert channel_configs(settings) == EXPECTED
    channels = build_channels(settings)
    assert {name: type(channel) for name, channel in channels.items()} == {
        "console": ConsoleChannel,
        "email": EmailChannel,
        "slack": SlackChannel,
        "webhook": WebhookChannel,
        "sms": SmsChannel,
        "pagerduty": PagerDutyChannel,
    }
    assert all(name == channel.name for name, channel in channels.items())
    assert unconfigured(settings) == []


def test_the_environment_wins_over_the_file_per_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable replaces the file's value of that one setting; the rest come from the file."""
    write_config(tmp_path, monkeypatch, CONFIG_FILE)
    monkeypatch.setenv("ALCHEMISER_SMTP_RECIPIENTS", "desk@alchemiser.test")
    monkeypatch.setenv("ALCHEMISER_SLACK_TIMEOUT_S", "9")
    configs = channel_configs(load_settings())
    assert configs.email is not None and configs.slack is not None
    assert configs.email.recipients == ("desk@alchemiser.test",)
    assert configs.email.host == "smtp.alchemiser.test"
    assert (configs.slack.timeout_s, configs.slack.webhook_url) == (9.0, SLACK_URL)


def test_http_channels_post_to_their_settings_through_the_given_session(
    receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The built Slack, webhook, SMS and PagerDuty channels POST where their settings say, with
    the Twilio credentials and the routing key, all through the one session given."""
    set_environment(
        monkeypatch,
        {
            "ALCHEMISER_SLACK_WEBHOOK_URL": f"{receiver.url}/services/T0/B0/Planted2",
            "ALCHEMISER_WEBHOOK_URL": f"{receiver.url}/in/hook",
            "ALCHEMISER_SMS_ACCOUNT_SID": SID,
            "ALCHEMISER_SMS_AUTH_TOKEN": SMS_TOKEN,
            "ALCHEMISER_SMS_FROM_NUMBER": FROM,
            "ALCHEMISER_SMS_TO_NUMBERS": f"{TO_A},{TO_B}",
            "ALCHEMISER_SMS_BASE_URL": receiver.url,
            "ALCHEMISER_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "ALCHEMISER_PAGERDUTY_EVENTS_URL": f"{receiver.url}/v2/enqueue",
        },
    )
    receiver.default = Reply(202, b"")
    with CountingSession() as session:
        channels = build_channels(load_settings(), session=session)
        n = notification()
        for name in ("slack", "webhook", "sms", "pagerduty"):
            assert channels[name].send(n).delivered, name
        assert session.posts == 5  # one each, and one per SMS recipient
    paths = [request.path for request in receiver.requests]
    messages = f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert paths == ["/services/T0/B0/Planted2", "/in/hook", messages, messages, "/v2/enqueue"]
    assert [r.form()["To"] for r in receiver.requests[2:4]] == [TO_A, TO_B]
    assert receiver.requests[4].json()["routing_key"] == ROUTING_KEY


def test_the_built_email_channel_sends_to_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built email channel sends from the configured sender to every configured recipient
    on the configured server."""
    with SmtpServer() as smtp:
        set_environment(
            monkeypatch,
            {
                "ALCHEMISER_SMTP_HOST": smtp.host,
                "ALCHEMISER_SMTP_PORT": str(smtp.port),
                "ALCHEMISER_SMTP_SECURITY": "none",
                "ALCHEMISER_SMTP_SENDER": "alerts@alchemiser.test",
                "ALCHEMISER_SMTP_RECIPIENTS": "ops@alchemiser.test,oncall@alchemiser.test",
            },
        )
        delivery = build_channels(load_settings())["email"].send(notification())
        assert delivery.delivered, delivery
        [sent] = smtp.messages
    assert sent.mail_from == "alerts@alchemiser.test"
    assert sent.rcpt_tos == ("ops@alchemiser.test", "oncall@alchemiser.test")


# --- lists ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ops@x.test", ["ops@x.test"]),
        ("ops@x.test,oncall@x.test", ["ops@x.test", "oncall@x.test"]),
        (" ops@x.test , oncall@x.test ,", ["ops@x.test", "oncall@x.test"]),
        ('["ops@x.test", "oncall@x.test"]', ["ops@x.test", "oncall@x.test"]),
        ("", []),
    ],
)
def test_list_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    """A list variable is comma-separated (blanks and empty items dropped) or a JSON list."""
    monkeypatch.setenv("ALCHEMISER_SMTP_RECIPIENTS", value)
    monkeypatch.setenv("ALCHEMISER_SMS_TO_NUMBERS", value)
    settings = load_settings()
    assert settings.smtp_recipients == expected
    assert settings.sms_to_numbers == expected


def test_a_broken_json_list_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list variable that opens a JSON list and is not one names the setting."""
    monkeypatch.setenv("ALCHEMISER_SMS_TO_NUMBERS", '["+15005550006",')
    message = load_refused()
    assert "sms_to_numbers" in message
    assert "neither a comma-separated list nor a JSON list" in message


# --- partly given -----------------------------------------------------------------------------

EMAIL_BASE = {
    "ALCHEMISER_SMTP_HOST": "smtp.alchemiser.test",
    "ALCHEMISER_SMTP_SENDER": "alerts@alchemiser.test",
    "ALCHEMISER_SMTP_RECIPIENTS": "ops@alchemiser.test",
}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {
                "ALCHEMISER_SMTP_HOST": "smtp.alchemiser.test",
                "ALCHEMISER_SMTP_SENDER": "alerts@alchemiser.test",
                "ALCHEMISER_SMTP_USERNAME": "alerts-relay",
                "ALCHEMISER_SMTP_PASSWORD": SMTP_PASSWORD,
            },
            "email: ALCHEMISER_SMTP_RECIPIENTS ([smtp] recipients) is not set",
        ),
        (
            {"ALCHEMISER_SMTP_HOST": "smtp.alchemiser.test"},
            "email: ALCHEMISER_SMTP_SENDER ([smtp] sender) is not set; "
            "email: ALCHEMISER_SMTP_RECIPIENTS ([smtp] recipients) is not set",
        ),
        (
            {"ALCHEMISER_SMTP_PORT": "25"},
            "email: ALCHEMISER_SMTP_HOST ([smtp] host) is not set; "
            "email: ALCHEMISER_SMTP_SENDER ([smtp] sender) is not set; "
            "email: ALCHEMISER_SMTP_RECIPIENTS ([smtp] recipients) is not set",
        ),
        (
            {**EMAIL_BASE, "ALCHEMISER_SMTP_PASSWORD": SMTP_PASSWORD},
            "email: ALCHEMISER_SMTP_USERNAME ([smtp] username) is not set",
        ),
        (
            {**EMAIL_BASE, "ALCHEMISER_SMTP_USERNAME": "alerts-relay"},
            "email: ALCHEMISER_SMTP_PASSWORD ([smtp] password) is not set",
        ),
        (
            {"ALCHEMISER_SLACK_TIMEOUT_S": "3"},
            "slack: ALCHEMISER_SLACK_WEBHOOK_URL ([slack] webhook_url) is not set",
        ),
        (
            {"ALCHEMISER_WEBHOOK_TIMEOUT_S": "3"},
            "webhook: ALCHEMISER_WEBHOOK_URL ([webhook] url) is not set",
        ),
        (
            {"ALCHEMISER_SMS_ACCOUNT_SID": SID, "ALCHEMISER_SMS_AUTH_TOKEN": SMS_TOKEN},
            "sms: ALCHEMISER_SMS_FROM_NUMBER ([sms] from_number) is not set; "
            "sms: ALCHEMISER_SMS_TO_NUMBERS ([sms] to_numbers) is not set",
        ),
        (
            {"ALCHEMISER_SMS_AUTH_TOKEN": SMS_TOKEN, "ALCHEMISER_SMS_FROM_NUMBER": FROM},
            "sms: ALCHEMISER_SMS_ACCOUNT_SID ([sms] account_sid) is not set; "
            "sms: ALCHEMISER_SMS_TO_NUMBERS ([sms] to_numbers) is not set",
        ),
        (
            {"ALCHEMISER_PAGERDUTY_EVENTS_URL": "https://events.eu.pagerduty.com/v2/enqueue"},
            "pagerduty: ALCHEMISER_PAGERDUTY_ROUTING_KEY ([pagerduty] routing_key) is not set",
        ),
        (
            {
                "ALCHEMISER_SLACK_TIMEOUT_S": "3",
                "ALCHEMISER_PAGERDUTY_TIMEOUT_S": "3",
                "ALCHEMISER_WEBHOOK_URL": WEBHOOK_URL,
            },
            "slack: ALCHEMISER_SLACK_WEBHOOK_URL ([slack] webhook_url) is not set; "
            "pagerduty: ALCHEMISER_PAGERDUTY_ROUTING_KEY ([pagerduty] routing_key) is not set",
        ),
    ],
)
def test_a_partly_given_channel_is_refused_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    """Each missing setting is named by its variable and its config key, every problem of
    every channel in one message, and no secret in it; the settings themselves load."""
    set_environment(monkeypatch, variables)
    settings = load_settings()  # other commands (dlq list, ...) still work
    refused = build_refused(settings)
    assert refused == message
    assert not any(secret in refused for secret in SECRETS)


def test_a_partly_given_channel_in_the_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same check applies to settings from the config file."""
    write_config(
        tmp_path,
        monkeypatch,
        f'[smtp]\nhost = "smtp.alchemiser.test"\nsender = "a@x.test"\n'
        f'[sms]\naccount_sid = "{SID}"\nfrom_number = "{FROM}"\nto_numbers = ["{TO_A}"]\n'
        f'auth_token = "{SMS_TOKEN}"\n',
    )
    assert build_refused(load_settings()) == (
        "email: ALCHEMISER_SMTP_RECIPIENTS ([smtp] recipients) is not set"
    )


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"ALCHEMISER_SLACK_WEBHOOK_URL": "ftp://hooks.alchemiser.test/Planted2SlackPath"},
            "slack: webhook_url must be an https (or http) URL",
        ),
        (
            {"ALCHEMISER_WEBHOOK_URL": "https://hooks.alchemiser.test/Planted3 Webhook"},
            "webhook: url must not contain whitespace or control characters",
        ),
        (
            {
                "ALCHEMISER_SMS_ACCOUNT_SID": SID,
                "ALCHEMISER_SMS_AUTH_TOKEN": "Planted4 Twilio",
                "ALCHEMISER_SMS_FROM_NUMBER": FROM,
                "ALCHEMISER_SMS_TO_NUMBERS": TO_A,
            },
            "sms: auth_token must be printable ASCII without spaces",
        ),
        (
            {"ALCHEMISER_PAGERDUTY_ROUTING_KEY": "Planted5 Routing"},
            "pagerduty: routing_key must not contain whitespace or control characters",
        ),
        (
            {**EMAIL_BASE, "ALCHEMISER_SMTP_RECIPIENTS": "ops@alchemiser.test,ops@alchemiser.test"},
            "email: recipient 'ops@alchemiser.test' is listed twice",
        ),
    ],
)
def test_an_invalid_channel_setting_is_refused_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    """A complete but invalid channel is refused with its config's message, no secret in it."""
    set_environment(monkeypatch, variables)
    refused = build_refused(load_settings())
    assert refused == message
    assert "Planted" not in refused


@pytest.mark.parametrize(
    "name",
    ["ALCHEMISER_SMTP_HOST", "ALCHEMISER_SLACK_WEBHOOK_URL", "ALCHEMISER_SMS_AUTH_TOKEN"],
)
def test_an_empty_value_counts_as_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """``VAR=`` (a compose file passing an unset variable through) configures nothing."""
    monkeypatch.setenv(name, "")
    settings = load_settings()
    assert channel_configs(settings) == ChannelConfigs()
    assert unconfigured(settings) == ["email", "slack", "sms"]
    assert settings.secret_values() == []


@pytest.mark.parametrize(
    ("name", "value", "setting"),
    [
        ("ALCHEMISER_SMTP_SECURITY", "ssl", "smtp_security"),
        ("ALCHEMISER_SMTP_PORT", "0", "smtp_port"),
        ("ALCHEMISER_SMTP_PORT", "70000", "smtp_port"),
        ("ALCHEMISER_SLACK_TIMEOUT_S", "0", "slack_timeout_s"),
        ("ALCHEMISER_SMS_TIMEOUT_S", "inf", "sms_timeout_s"),
        ("ALCHEMISER_PAGERDUTY_TIMEOUT_S", "nan", "pagerduty_timeout_s"),
    ],
)
def test_an_invalid_channel_value_stops_loading(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, setting: str
) -> None:
    """A value no channel could use (a security mode, a port, a timeout) names the setting."""
    monkeypatch.setenv(name, value)
    message = load_refused()
    assert message.startswith("invalid settings: ")
    assert setting in message


def test_a_misspelt_channel_key_in_the_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[smtp] hots`` is refused as ``smtp_hots`` rather than ignored."""
    write_config(tmp_path, monkeypatch, '[smtp]\nhots = "smtp.alchemiser.test"\n')
    assert "smtp_hots" in load_refused()


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["environment", "config file"])
def test_channel_secrets_are_known_and_never_shown(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SMTP password, Slack and webhook URLs, SMS token and routing key are in
    secret_values() and in no repr or str of the settings, the configs or the channels."""
    if source == "environment":
        set_environment(monkeypatch, ENVIRONMENT)
    else:
        write_config(tmp_path, monkeypatch, CONFIG_FILE)
    settings = load_settings()
    assert set(SECRETS) <= set(settings.secret_values())
    configs = channel_configs(settings)
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(configs)]
    shown += [repr(config) for config in (configs.email, configs.slack, configs.webhook)]
    shown += [repr(config) for config in (configs.sms, configs.pagerduty)]
    shown += [repr(channel) for channel in build_channels(settings).values()]
    for text in shown:
        for secret in SECRETS:
            assert secret not in text


# --- escalation -------------------------------------------------------------------------------


def test_an_escalation_table_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``[escalation]`` is kept whole and read by policy_from_mapping; its channels that are
    not configured are listed and built as unconfigured."""
    write_config(tmp_path, monkeypatch, ESCALATION_TOML)
    settings = load_settings()
    assert settings.escalation == EscalationTable.model_validate(ESCALATION_TABLE)
    policy = settings.escalation_policy
    assert policy == policy_from_mapping(ESCALATION_TABLE)
    assert [(lv.after_s, lv.channels, lv.fallback) for lv in policy.rules[0].levels] == [
        (0.0, ("slack",), ("email", "console")),
        (900.0, ("pagerduty",), ("console",)),
    ]
    assert unconfigured(settings) == ["slack", "email", "pagerduty", "webhook"]
    assert sorted(build_channels(settings)) == [
        "console",
        "email",
        "pagerduty",
        "slack",
        "webhook",
    ]


def test_escalation_as_json_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ALCHEMISER_ESCALATION`` is JSON of the same shape, and replaces the file's table."""
    write_config(tmp_path, monkeypatch, '[[escalation.rules]]\nlevels = [{channels = ["sms"]}]\n')
    monkeypatch.setenv("ALCHEMISER_ESCALATION", ESCALATION_JSON)
    monkeypatch.setenv("ALCHEMISER_SLACK_WEBHOOK_URL", SLACK_URL)
    settings = load_settings()
    assert settings.escalation == EscalationTable.model_validate(ESCALATION_TABLE)
    assert settings.escalation_policy == policy_from_mapping(ESCALATION_TABLE)
    assert unconfigured(settings) == ["email", "pagerduty", "webhook"]


@pytest.mark.parametrize(
    ("source", "value", "message"),
    [
        ("env", "{rules: []}", "invalid settings: ALCHEMISER_ESCALATION is not JSON ("),
        ("env", "[]", "ALCHEMISER_ESCALATION is not a JSON object"),
        (
            "env",
            '{"rules": [{"levels": [{"channels": ["teams"]}]}]}',
            "escalation.rules[0].levels[0]: unknown channel(s) teams; known: console, email,"
            " pagerduty, slack, sms, webhook",
        ),
        (
            "env",
            '{"rule": []}',
            "escalation: unknown key(s) rule; known: default, rules",
        ),
        (
            "file",
            '[[escalation.rules]]\nseverity = ["critical"]\nlevels = [{channels = ["sms"]}]\n',
            "escalation.rules[0]: unknown key(s) severity; known: error_types, group_wait_s,"
            " levels, name, severities",
        ),
        (
            "file",
            '[escalation.default]\nseverities = ["low"]\nlevels = [{channels = ["sms"]}]\n',
            "escalation.default: unknown key(s) severities; known: group_wait_s, levels, name",
        ),
        (
            "file",
            '[[escalation.rules]]\nlevels = [{after_s = 60, channel = ["sms"]}]\n',
            "escalation.rules[0].levels[0]: unknown key(s) channel; known: after_s, channels,"
            " fallback",
        ),
        (
            "file",
            '[[escalation.rules]]\nlevels = [{after_s = inf, channels = ["sms"]}]\n',
            "escalation.rules[0].levels[0].after_s is a finite number of seconds >= 0, got inf",
        ),
        (
            "file",
            '[[escalation.rules]]\ngroup_wait_s = nan\nlevels = [{channels = ["sms"]}]\n',
            "escalation.rules[0].group_wait_s is a finite number of seconds >= 0, got nan",
        ),
        (
            "file",
            '[[escalation.rules]]\nseverities = ["fatal"]\nlevels = [{channels = ["sms"]}]\n',
            "escalation.rules[0].severities: unknown severity fatal; known: critical, high, low,"
            " medium",
        ),
    ],
)
def test_an_invalid_escalation_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, value: str, message: str
) -> None:
    """A bad ``[escalation]`` table or ``ALCHEMISER_ESCALATION`` stops loading, saying what
    and where."""
    if source == "env":
        monkeypatch.setenv("ALCHEMISER_ESCALATION", value)
    else:
        write_config(tmp_path, monkeypatch, value)
    refused = load_refused()
    assert refused.startswith("invalid settings: ")
    assert message in refused


def test_an_empty_rule_list_logs_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """``rules = []`` is a policy of the default rule alone: the console, nothing unconfigured."""
    monkeypatch.setenv("ALCHEMISER_ESCALATION", '{"rules": []}')
    settings = load_settings()
    assert settings.escalation_policy.rules == ()
    assert settings.escalation_policy.default == DEFAULT_POLICY.default
    assert unconfigured(settings) == []
    assert list(build_channels(settings)) == ["console"]


# --- unconfigured channels --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["email", "slack", "sms", "webhook", "pagerduty"])
def test_an_unconfigured_channel_answers_not_configured(name: str) -> None:
    """Every send fails for good as NOT_CONFIGURED, so the fallback takes over."""
    channel: NotificationChannel = UnconfiguredChannel(name)
    delivery = channel.send(notification())
    assert channel.name == name
    assert delivery == Delivery.failed(name, FailureReason.NOT_CONFIGURED, "not configured", 0.0)
    assert delivery.reason is not None and not delivery.reason.transient


def test_a_configured_channel_is_not_listed_as_unconfigured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With Slack configured, the default policy still lacks email and SMS."""
    monkeypatch.setenv("ALCHEMISER_SLACK_WEBHOOK_URL", SLACK_URL)
    settings = load_settings()
    assert unconfigured(settings) == ["email", "sms"]
    channels = build_channels(settings)
    assert isinstance(channels["slack"], SlackChannel)
    assert channels["sms"] == UnconfiguredChannel("sms")


# --- grouping and notification limits ---------------------------------------------------------


def test_grouping_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[grouping]`` keys become ``grouping_*`` settings; a variable wins over the file."""
    write_config(
        tmp_path,
        monkeypatch,
        "[grouping]\ngroup_wait_s = 10\ngroup_interval_s = 120\nrepeat_interval_s = 3600\n",
    )
    monkeypatch.setenv("ALCHEMISER_GROUPING_RESOLVE_AFTER_S", "60")
    monkeypatch.setenv("ALCHEMISER_GROUPING_GROUP_WAIT_S", "15")
    assert load_settings().grouping_timing == GroupTiming(15.0, 120.0, 3600.0, 60.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALCHEMISER_GROUPING_GROUP_INTERVAL_S", "0"),
        ("ALCHEMISER_GROUPING_GROUP_WAIT_S", "-1"),
        ("ALCHEMISER_GROUPING_REPEAT_INTERVAL_S", "inf"),
        ("ALCHEMISER_GROUPING_RESOLVE_AFTER_S", "nan"),
    ],
)
def test_invalid_grouping_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A negative, zero interval or non-finite grouping time names the setting."""
    monkeypatch.setenv(name, value)
    assert name.removeprefix("ALCHEMISER_").lower() in load_refused()


def test_notification_limits_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``[notification_limits.<class>]`` tables are kept whole and merged over the defaults; a
    table may give only one of limit and window_s."""
    write_config(
        tmp_path,
        monkeypatch,
        "[notification_limits.critical]\nlimit = 3\nwindow_s = 60\n"
        "[notification_limits.warning]\nlimit = 50\n",
    )
    settings = load_settings()
    assert settings.notification_limits.model_dump(exclude_unset=True) == {
        "critical": {"limit": 3, "window_s": 60},
        "warning": {"limit": 50},
    }
    assert settings.notification_limits_config == {
        "critical": ThrottleLimit(limit=3, window_s=60.0),
        "error": DEFAULT_LIMITS["error"],
        "warning": ThrottleLimit(limit=50, window_s=3600.0),
    }


def test_notification_limits_as_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ALCHEMISER_NOTIFICATION_LIMITS`` is JSON of the same shape."""
    monkeypatch.setenv("ALCHEMISER_NOTIFICATION_LIMITS", '{"error": {"window_s": 1800}}')
    assert load_settings().notification_limits_config["error"] == ThrottleLimit(10, 1800.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            '{"fatal": {"limit": 1}}',
            "notification_limits: unknown class 'fatal'; known: critical, error, warning",
        ),
        ('{"critical": 5}', "notification_limits.critical is a table of limit and window_s"),
        (
            '{"critical": {"limits": 5}}',
            "notification_limits.critical: unknown key(s) limits; known: limit, window_s",
        ),
        ('{"critical": {"limit": 0}}', "notification_limits.critical.limit is a whole number"),
        ('{"critical": {"limit": 2.5}}', "notification_limits.critical.limit is a whole number"),
        ('{"error": {"window_s": -1}}', "notification_limits.error.window_s is finite seconds > 0"),
        (
            '{"error": {"window_s": "1h"}}',
            "notification_limits.error.window_s is finite seconds > 0",
        ),
        (
            '{"error": {"window_s": Infinity}}',
            "notification_limits.error.window_s is finite seconds > 0",
        ),
        ("critical=5", "ALCHEMISER_NOTIFICATION_LIMITS is not JSON ("),
    ],
)
def test_an_invalid_notification_limit_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    """A bad limit stops loading, naming its place."""
    monkeypatch.setenv("ALCHEMISER_NOTIFICATION_LIMITS", value)
    refused = load_refused()
    assert refused.startswith("invalid settings: ")
    assert message in refused


def test_a_bad_escalation_and_a_bad_limit_are_reported_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both problems are in one message."""
    monkeypatch.setenv("ALCHEMISER_ESCALATION", '{"rules": [{"levels": [{"channels": ["x"]}]}]}')
    monkeypatch.setenv("ALCHEMISER_NOTIFICATION_LIMITS", '{"critical": {"limit": 0}}')
    refused = load_refused()
    assert "unknown channel(s) x" in refused
    assert "notification_limits.critical.limit" in refused


# --- the configuration reference -------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "CONFIGURATION.md"


def docs_section() -> str:
    """The "Notification channels and escalation" section of docs/CONFIGURATION.md."""
    text = DOCS.read_text(encoding="utf-8")
    return text[text.index("## Notification channels and escalation") :]


def test_every_toml_example_of_the_docs_loads_and_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each TOML block of the section is valid; the defaults written out are DEFAULT_POLICY."""
    blocks = re.findall(r"```toml\n(.*?)```", docs_section(), re.DOTALL)
    assert len(blocks) >= 5
    for block in blocks:
        write_config(tmp_path, monkeypatch, block)
        build_channels(load_settings())
    [defaults] = [block for block in blocks if 'name = "critical"' in block]
    write_config(tmp_path, monkeypatch, defaults)
    assert load_settings().escalation_policy == DEFAULT_POLICY


def test_every_variable_in_the_docs_is_a_setting() -> None:
    """Each ``ALCHEMISER_*`` variable the section names is a field of Settings, and each new
    field is named."""
    named = set(re.findall(r"`(ALCHEMISER_[A-Z_]+)`", docs_section()))
    fields = {f"ALCHEMISER_{name.upper()}" for name in Settings.model_fields}
    assert named <= fields
    prefixes = ("smtp_", "slack_", "webhook_", "sms_", "pagerduty_", "grouping_")
    notification_fields = {
        f"ALCHEMISER_{name.upper()}"
        for name in Settings.model_fields
        if name.startswith(prefixes) or name in {"escalation", "notification_limits"}
    }
    assert notification_fields <= named


# --- bugs found while writing these tests (each failed before its fix) ----------------------


def test_bad_json_in_alchemiser_resources_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ALCHEMISER_RESOURCES='{bad'`` is refused like every other bad setting."""
    monkeypatch.setenv("ALCHEMISER_RESOURCES", "{bad")
    assert load_refused().startswith("invalid settings: ALCHEMISER_RESOURCES is not JSON (")


def test_policy_from_mapping_refuses_an_unknown_key() -> None:
    """``severity`` (for ``severities``) is refused, not read as "no condition"."""
    with pytest.raises(ConfigurationError):
        policy_from_mapping({"rules": [{"severity": ["low"], "levels": [{"channels": ["sms"]}]}]})


def test_an_infinite_escalation_delay_is_refused() -> None:
    """A level's delay is a finite number of seconds."""
    with pytest.raises(ConfigurationError):
        EscalationLevel(after_s=math.inf, channels=("sms",))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_grouping_time_is_refused(value: float) -> None:
    """Every grouping time is a finite number of seconds."""
    with pytest.raises(ConfigurationError):
        GroupTiming(repeat_interval_s=value)


def test_an_infinite_notification_window_is_refused() -> None:
    """A notification window is a finite number of seconds."""
    with pytest.raises(ConfigurationError):
        ThrottleLimit(limit=1, window_s=math.inf)
