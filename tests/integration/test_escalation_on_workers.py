"""Escalation end to end on real workers: a dead letter reaches people through real local peers
(an SMTP server, a Slack receiver, an SMS receiver in Twilio's REST shape)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from resilience.chaos import ChaosRule
from tests.fakes.http_receiver import HttpReceiver
from tests.fakes.smtp_server import SmtpServer
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration

SECRET = "sk_live_Planted9Escalation"
SLACK_PATH = "/services/T000/B000/SlackSecret42"
SMS_TOKEN = "TwilioToken9Secret"
ACCOUNT = "AC0123456789abcdef"


@pytest.fixture
def peers() -> Iterator[tuple[SmtpServer, HttpReceiver, HttpReceiver]]:
    with SmtpServer() as smtp, HttpReceiver() as slack, HttpReceiver() as sms:
        yield smtp, slack, sms


def test_a_critical_dead_letter_reaches_email_slack_and_sms_without_its_secrets(
    deployment_factory: Callable[..., Deployment],
    peers: tuple[SmtpServer, HttpReceiver, HttpReceiver],
) -> None:
    """An order refused as a SecurityError (CRITICAL, never retried) is dead-lettered; the
    escalation task tells email, Slack and SMS at once (no group_wait for critical), each
    exactly once, with the dead letter's id; a secret planted in the broker's error message,
    the SMS token and the Slack webhook's path appear in none of the payloads, byte for byte."""
    smtp, slack, sms = peers
    deployment = deployment_factory(
        ALPACA_SECRET_KEY=SECRET,
        ALCHEMISER_SMTP_HOST=smtp.host,
        ALCHEMISER_SMTP_PORT=str(smtp.port),
        ALCHEMISER_SMTP_SECURITY="none",
        ALCHEMISER_SMTP_SENDER="alchemiser@example.com",
        ALCHEMISER_SMTP_RECIPIENTS="oncall@example.com",
        ALCHEMISER_SLACK_WEBHOOK_URL=f"{slack.url}{SLACK_PATH}",
        ALCHEMISER_SMS_ACCOUNT_SID=ACCOUNT,
        ALCHEMISER_SMS_AUTH_TOKEN=SMS_TOKEN,
        ALCHEMISER_SMS_FROM_NUMBER="+15550001111",
        ALCHEMISER_SMS_TO_NUMBERS="+15550002222",
        ALCHEMISER_SMS_BASE_URL=sms.url,
    )
    deployment.runtime.chaos.inject(
        ChaosRule(
            "broker.submit_order", "SecurityError", message=f"key rejected: {SECRET}", count=1
        )
    )
    deployment.start_workers(concurrency=2)
    order = order_kwargs("MSFT", 2)
    task_id = deployment.submit(order)
    entry = deployment.dead_letter(task_id, 60)
    assert entry.error_type == "SecurityError"

    wait_for(
        lambda: len(smtp.messages) >= 1 and len(slack.requests) >= 1 and len(sms.requests) >= 1,
        60,
        "email, Slack and SMS",
    )
    (mail,) = smtp.messages
    (slack_post,) = slack.requests
    (sms_post,) = sms.requests
    assert mail.rcpt_tos == ("oncall@example.com",)
    assert "SecurityError" in str(mail.message["Subject"])
    assert "[CRITICAL]" in str(mail.message["Subject"])
    assert slack_post.path == SLACK_PATH
    assert json.loads(slack_post.body)["text"].startswith("[CRITICAL] SecurityError")
    assert sms_post.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert sms_post.form()["Body"].startswith("CRITICAL SecurityError")
    assert entry.id in mail.raw.decode()
    assert entry.id in slack_post.body.decode()

    for payload in (mail.raw, slack_post.body, sms_post.body):
        assert SECRET.encode() not in payload
        assert SMS_TOKEN.encode() not in payload
        assert b"SlackSecret42" not in payload
