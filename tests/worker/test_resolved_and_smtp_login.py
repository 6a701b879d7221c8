"""Channel settings added with the escalation's delivery: which channels are sent resolved
notices (``<channel>_send_resolved``, wired by ``build_escalation``), and the refusal of an SMTP
login sent in clear beyond this host."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from resilience.errors import ConfigurationError
from resilience.notify.channel import NotificationChannel
from resilience.notify.model import NotificationStatus
from resilience.policy.context import ErrorNotificationData
from resilience.storage.keys import KeySpace
from tests.builders import final_failure
from tests.fakes.channels import ScriptedChannel
from worker import runtime
from worker.channels import ChannelConfigs, build_channels, channel_configs, resolved_to
from worker.settings import CONFIG_ENV, Settings, load_settings

SMTP_PASSWORD = "Planted1-smtp-Pa55"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment the tests run in."""
    for name in list(os.environ):
        if name.upper().startswith("ALCHEMISER_"):
            monkeypatch.delenv(name)


# --- send_resolved ----------------------------------------------------------------------------


def test_every_channel_but_sms_is_sent_resolved_notices_by_default() -> None:
    """Nothing set: email, Slack, the webhook, PagerDuty and the console; not SMS."""
    settings = load_settings()
    assert resolved_to(settings) == {"email", "slack", "webhook", "pagerduty", "console"}
    assert (settings.smtp_send_resolved, settings.sms_send_resolved) == (True, False)


def test_send_resolved_from_the_environment_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file turns Slack and PagerDuty off and SMS on; the environment turns email off and
    wins over the file for PagerDuty; the console is always sent them."""
    path = tmp_path / "alchemiser.toml"
    path.write_text(
        "[slack]\nsend_resolved = false\n[sms]\nsend_resolved = true\n"
        "[pagerduty]\nsend_resolved = false\n",
        encoding="utf-8",
    )
    monkeypatch.setenv(CONFIG_ENV, str(path))
    monkeypatch.setenv("ALCHEMISER_SMTP_SEND_RESOLVED", "false")
    monkeypatch.setenv("ALCHEMISER_PAGERDUTY_SEND_RESOLVED", "true")
    assert resolved_to(load_settings()) == {"webhook", "sms", "pagerduty", "console"}


def test_send_resolved_alone_does_not_make_a_channel_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ALCHEMISER_SMS_SEND_RESOLVED=true and SMTP's false, with nothing else: no channel is
    given, so none is refused as incomplete; SMS is still unconfigured."""
    monkeypatch.setenv("ALCHEMISER_SMS_SEND_RESOLVED", "true")
    monkeypatch.setenv("ALCHEMISER_SMTP_SEND_RESOLVED", "false")
    settings = load_settings()
    assert channel_configs(settings) == ChannelConfigs()
    assert sorted(build_channels(settings)) == ["console", "email", "slack", "sms"]


def failure() -> ErrorNotificationData:
    """One critical final failure."""
    return final_failure(dead_letter_id=None)


@pytest.mark.parametrize(
    ("sms_send_resolved", "resolved_on"), [(False, ["email"]), (True, ["email", "sms"])]
)
def test_build_escalation_sends_resolved_notices_as_settings_say(
    sms_send_resolved: bool,
    resolved_on: list[str],
    client: redis.Redis,
    keys: KeySpace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An alert on a level of email and SMS, told firing on both, then resolved (quiet, 0 s
    resolve_after): the resolved notice reaches email, and SMS only with sms_send_resolved."""
    channels = {name: ScriptedChannel(name) for name in ("email", "sms", "console")}

    def scripted(_: Settings) -> dict[str, NotificationChannel]:
        return dict(channels)

    monkeypatch.setattr(runtime, "build_channels", scripted)
    settings = Settings(
        escalation={
            "rules": [],
            "default": {"group_wait_s": 0, "levels": [{"channels": ["email", "sms"]}]},
        },
        grouping_group_interval_s=0.05,
        grouping_resolve_after_s=0.0,
        sms_send_resolved=sms_send_resolved,
    )
    service = runtime.build_escalation(settings, client, keys)
    [first] = service.note(failure())
    _, notified, [second] = service.flush(**first.kwargs)
    assert notified is not None and notified.delivered_to == ("email", "sms")
    time.sleep(second.countdown_s + 0.05)  # Redis time past the flush's due time
    resolve, report, _ = service.flush(**second.kwargs)
    assert resolve.action == "resolve" and report is not None
    assert list(report.delivered_to) == resolved_on
    told = {name: [n.status for n in channel.sent] for name, channel in channels.items()}
    firing, resolved = NotificationStatus.FIRING, NotificationStatus.RESOLVED
    assert told == {
        "email": [firing, resolved],
        "sms": [firing, resolved] if sms_send_resolved else [firing],
        "console": [],
    }


# --- an SMTP login in clear -------------------------------------------------------------------


def email_environment(monkeypatch: pytest.MonkeyPatch, host: str, security: str) -> None:
    """A complete email channel with a login, on ``host`` with ``security``."""
    for name, value in {
        "ALCHEMISER_SMTP_HOST": host,
        "ALCHEMISER_SMTP_SECURITY": security,
        "ALCHEMISER_SMTP_USERNAME": "alerts-relay",
        "ALCHEMISER_SMTP_PASSWORD": SMTP_PASSWORD,
        "ALCHEMISER_SMTP_SENDER": "alerts@alchemiser.test",
        "ALCHEMISER_SMTP_RECIPIENTS": "ops@alchemiser.test",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("host", ["smtp.alchemiser.test", "10.0.0.25", "2001:db8::25"])
def test_a_login_in_clear_beyond_this_host_is_refused(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """security none with a username and password to a server elsewhere is refused by
    build_channels, saying what is wrong and what to do, without the password."""
    email_environment(monkeypatch, host, "none")
    settings = load_settings()
    with pytest.raises(ConfigurationError) as refused:
        build_channels(settings)
    assert refused.value.message == (
        f"email: ALCHEMISER_SMTP_SECURITY ([smtp] security) is none, so the login to {host!r} "
        "would cross the network in clear; set it to starttls or tls, or drop "
        "ALCHEMISER_SMTP_USERNAME ([smtp] username) and ALCHEMISER_SMTP_PASSWORD ([smtp] "
        "password) (only a relay on this host, localhost, 127.0.0.0/8 or ::1, may take a login "
        "without TLS)"
    )
    assert SMTP_PASSWORD not in refused.value.message


def test_a_login_in_clear_is_reported_with_the_other_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Alongside an incomplete Slack, both problems are named in one refusal."""
    email_environment(monkeypatch, "smtp.alchemiser.test", "none")
    monkeypatch.setenv("ALCHEMISER_SLACK_TIMEOUT_S", "3")
    with pytest.raises(ConfigurationError) as refused:
        channel_configs(load_settings())
    problems = refused.value.message.split("; ")
    assert problems[0].startswith("email: ALCHEMISER_SMTP_SECURITY ([smtp] security) is none")
    assert problems[-1] == "slack: ALCHEMISER_SLACK_WEBHOOK_URL ([slack] webhook_url) is not set"


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "127.0.0.1", "127.10.20.30", "::1"])
def test_a_login_in_clear_to_this_host_is_allowed(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay on this host (Mailpit, a local MTA) may take a login without TLS."""
    email_environment(monkeypatch, host, "none")
    email = channel_configs(load_settings()).email
    assert email is not None and (email.host, email.security, email.username) == (
        host,
        "none",
        "alerts-relay",
    )


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_login_over_tls_to_any_host_is_allowed(
    security: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """starttls or tls protect the login: a remote server is fine."""
    email_environment(monkeypatch, "smtp.alchemiser.test", security)
    email = channel_configs(load_settings()).email
    assert email is not None and email.security == security


def test_no_login_in_clear_to_a_remote_host_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """security none without credentials (an open relay on the network) sends no secret."""
    email_environment(monkeypatch, "smtp.alchemiser.test", "none")
    monkeypatch.delenv("ALCHEMISER_SMTP_USERNAME")
    monkeypatch.delenv("ALCHEMISER_SMTP_PASSWORD")
    email = channel_configs(load_settings()).email
    assert email is not None and (email.username, email.password) == (None, None)
