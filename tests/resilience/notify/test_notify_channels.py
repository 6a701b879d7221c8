"""The notification channels (Slack, webhook, SMS, PagerDuty, console) and their configs.

Every HTTP send goes to a real local receiver (:class:`~tests.fakes.http_receiver.HttpReceiver`),
which logs what arrived; the console channel's log line is captured with structlog's
``capture_logs``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from resilience.errors import ConfigurationError
from resilience.notify import render
from resilience.notify.channel import Delivery, FailureReason, NotificationChannel
from resilience.notify.console import ConsoleChannel
from resilience.notify.http_post import post
from resilience.notify.model import Notification
from resilience.notify.pagerduty import PagerDutyChannel, PagerDutyConfig
from resilience.notify.slack import SlackChannel, SlackConfig
from resilience.notify.sms import SmsChannel, SmsConfig
from resilience.notify.webhook import WebhookChannel, WebhookConfig
from resilience.policy.context import ErrorNotificationData
from resilience.policy.retry import ErrorSeverity
from tests.fakes.http_receiver import HttpReceiver, ReceivedRequest, Reply, closed_port

# Planted secrets, mixed case with digits like real ones (a Slack webhook path segment, a
# bearer token, a Twilio auth token, a PagerDuty routing key).
SLACK_SECRET = "sk_live_Planted1Slack"
SLACK_PATH = f"/services/T0PLANT/B0PLANT/{SLACK_SECRET}"
HOOK_PATH_SECRET = "sk_live_Planted2Path"
HOOK_PATH = f"/hooks/{HOOK_PATH_SECRET}"
HOOK_TOKEN = "sk_live_Planted2Bearer"
SMS_TOKEN = "sk_live_Planted3Twilio"
ROUTING_KEY = "sk_live_Planted4Routing"

SID = "AC0123456789abcdef0123456789abcdef"
FROM = "+15005550006"
TO_A = "+447700900123"
TO_B = "+15005550009"
MESSAGES_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
TWILIO_CREATED = Reply(201, b'{"sid": "SM0001", "status": "queued"}', {"Content-Type": "json"})
PD_ACCEPTED = Reply(202, b'{"status": "success", "message": "Event processed"}')


def notification(severity: ErrorSeverity = ErrorSeverity.CRITICAL) -> Notification:
    """A firing group of 4 InsufficientFundsError failures in ``trading``, 2 as examples."""
    failures: list[ErrorNotificationData] = [
        {
            "severity": severity.value,
            "priority": "p1",
            "title": "Order rejected",
            "error_type": "InsufficientFundsError",
            "error_id": f"err-{i}",
            "message": f"buying power 120.50 below order cost 980.00 (order {i}) & <more>",
            "component": "trading",
            "operation": "submit_order",
            "task_name": "tasks.trading.submit_order",
            "occurred_at": f"2026-03-02T14:30:0{i}+00:00",
            "dead_letter_id": f"dl-{i}",
            "idempotency_key": f"coid-{i}",
            "attempts": 3,
        }
        for i in (1, 2)
    ]
    return Notification.for_group(
        failures, count=4, runbook_url="https://runbooks.example.com/funds"
    ).with_held_back(2)


# --- channels on a receiver ----------------------------------------------------------------

Maker = Callable[[str, requests.Session], NotificationChannel]


def slack_at(base: str, session: requests.Session) -> SlackChannel:
    """A Slack channel posting to ``base`` + :data:`SLACK_PATH`."""
    return SlackChannel(SlackConfig(webhook_url=f"{base}{SLACK_PATH}"), session)


def webhook_at(base: str, session: requests.Session) -> WebhookChannel:
    """A webhook channel posting to ``base`` + :data:`HOOK_PATH` with a bearer token."""
    headers = (("Authorization", f"Bearer {HOOK_TOKEN}"), ("X-Alchemiser-Env", "paper"))
    return WebhookChannel(WebhookConfig(url=f"{base}{HOOK_PATH}", headers=headers), session)


def sms_at(
    base: str, session: requests.Session, to_numbers: tuple[str, ...] = (TO_A,)
) -> SmsChannel:
    """An SMS channel posting to a Twilio API at ``base``."""
    config = SmsConfig(
        account_sid=SID,
        auth_token=SMS_TOKEN,
        from_number=FROM,
        to_numbers=to_numbers,
        base_url=base,
    )
    return SmsChannel(config, session)


def pagerduty_at(base: str, session: requests.Session) -> PagerDutyChannel:
    """A PagerDuty channel posting to an Events API v2 at ``base``."""
    config = PagerDutyConfig(routing_key=ROUTING_KEY, events_url=f"{base}/v2/enqueue")
    return PagerDutyChannel(config, session)


HTTP_CHANNELS: dict[str, Maker] = {
    "slack": slack_at,
    "webhook": webhook_at,
    "sms": sms_at,
    "pagerduty": pagerduty_at,
}


def basic_auth(request: ReceivedRequest) -> str:
    """The ``user:password`` of a request's ``Authorization: Basic`` header."""
    scheme, _, credentials = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(credentials).decode()


# --- what each channel sends ---------------------------------------------------------------


def test_slack_posts_the_rendered_message_as_json_to_the_webhook(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """Slack gets exactly ``render.slack(n)`` as JSON at the webhook's path; 200 is delivered."""
    n = notification()
    delivery = slack_at(receiver.url, session).send(n)
    assert delivery == Delivery.ok("slack", delivery.latency_s)
    [received] = receiver.requests
    assert (received.method, received.path) == ("POST", SLACK_PATH)
    assert received.headers["content-type"] == "application/json"
    assert received.json() == render.slack(n)


def test_webhook_posts_the_rendered_document_with_its_custom_headers(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """The webhook gets exactly ``render.webhook(n)`` as JSON, with the configured headers."""
    n = notification()
    delivery = webhook_at(receiver.url, session).send(n)
    assert delivery == Delivery.ok("webhook", delivery.latency_s)
    [received] = receiver.requests
    assert (received.method, received.path) == ("POST", HOOK_PATH)
    assert received.headers["content-type"] == "application/json"
    assert received.headers["authorization"] == f"Bearer {HOOK_TOKEN}"
    assert received.headers["x-alchemiser-env"] == "paper"
    assert received.json() == render.webhook(n)


def test_sms_posts_one_twilio_form_per_recipient_with_basic_auth(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """Each recipient gets one form POST (To, From, Body = ``render.sms(n)``) to the account's
    Messages resource, basic auth ``sid:token``; all 201 is delivered."""
    receiver.reply_with(TWILIO_CREATED, TWILIO_CREATED)
    n = notification()
    delivery = sms_at(receiver.url, session, (TO_A, TO_B)).send(n)
    assert delivery == Delivery.ok("sms", delivery.latency_s)
    requests_made = receiver.requests
    assert [(r.method, r.path) for r in requests_made] == [("POST", MESSAGES_PATH)] * 2
    for received, to_number in zip(requests_made, (TO_A, TO_B), strict=True):
        assert received.headers["content-type"] == "application/x-www-form-urlencoded"
        assert received.form() == {"To": to_number, "From": FROM, "Body": render.sms(n)}
        assert basic_auth(received) == f"{SID}:{SMS_TOKEN}"


def test_sms_base_url_with_a_trailing_slash_makes_no_double_slash(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """``base_url`` ending in ``/`` still posts to ``/2010-04-01/Accounts/{sid}/...``."""
    sms_at(f"{receiver.url}/", session).send(notification())
    assert [r.path for r in receiver.requests] == [MESSAGES_PATH]


@pytest.mark.parametrize("resolved", [False, True], ids=["trigger", "resolve"])
def test_pagerduty_posts_the_rendered_event_and_202_is_delivered(
    receiver: HttpReceiver, session: requests.Session, resolved: bool
) -> None:
    """PagerDuty gets exactly ``render.pagerduty(n, routing_key)`` (a trigger, or a resolve for
    a resolved group) at ``/v2/enqueue``; its 202 is delivered."""
    receiver.reply_with(PD_ACCEPTED)
    n = notification().resolved() if resolved else notification()
    delivery = pagerduty_at(receiver.url, session).send(n)
    assert delivery == Delivery.ok("pagerduty", delivery.latency_s)
    [received] = receiver.requests
    assert (received.method, received.path) == ("POST", "/v2/enqueue")
    assert received.headers["content-type"] == "application/json"
    assert received.json() == render.pagerduty(n, ROUTING_KEY)
    assert received.json()["event_action"] == ("resolve" if resolved else "trigger")


# --- how each channel fails ----------------------------------------------------------------


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Reply(429, b"rate_limited", {"Retry-After": "7"}),
            (FailureReason.RATE_LIMITED, "HTTP 429 rate_limited", 7.0),
        ),
        (Reply(500, b""), (FailureReason.SERVER_ERROR, "HTTP 500", None)),
        (
            Reply(400, b'{"status": "invalid event"}'),
            (FailureReason.CLIENT_ERROR, "HTTP 400", None),
        ),
    ],
    ids=["429", "500", "400"],
)
def test_a_refusal_is_answered_with_its_reason(
    receiver: HttpReceiver,
    session: requests.Session,
    kind: str,
    reply: Reply,
    expected: tuple[FailureReason, str, float | None],
) -> None:
    """A 429 with Retry-After is RATE_LIMITED with that delay, a 500 a SERVER_ERROR, a 400 a
    CLIENT_ERROR (SMS's detail counting the recipients); send answers, it does not raise."""
    reason, detail, retry_after_s = expected
    receiver.reply_with(reply)
    delivery = HTTP_CHANNELS[kind](receiver.url, session).send(notification())
    assert (delivery.channel, delivery.delivered, delivery.reason) == (kind, False, reason)
    assert delivery.retry_after_s == retry_after_s
    assert delivery.detail == (f"1 of 1 recipients: {detail}" if kind == "sms" else detail)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
def test_a_receiver_nobody_listens_on_is_unreachable(session: requests.Session, kind: str) -> None:
    """A refused connection is UNREACHABLE (transient), not an exception."""
    delivery = HTTP_CHANNELS[kind](f"http://127.0.0.1:{closed_port()}", session).send(
        notification()
    )
    assert (delivery.channel, delivery.delivered) == (kind, False)
    assert delivery.reason is FailureReason.UNREACHABLE


def test_sms_is_not_delivered_when_one_of_two_recipients_is_refused(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """The second recipient's 400 makes the send a CLIENT_ERROR "1 of 2 recipients: HTTP 400";
    both messages were posted."""
    receiver.reply_with(TWILIO_CREATED, Reply(400, b'{"code": 21211}'))
    delivery = sms_at(receiver.url, session, (TO_A, TO_B)).send(notification())
    assert (delivery.delivered, delivery.reason) == (False, FailureReason.CLIENT_ERROR)
    assert delivery.detail == "1 of 2 recipients: HTTP 400"
    assert [r.form()["To"] for r in receiver.requests] == [TO_A, TO_B]


def test_sms_answers_the_first_failure_and_still_texts_the_others(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """A 429 for the first recipient does not stop the second; the answer is the 429's reason
    and Retry-After, counted "1 of 2"."""
    receiver.reply_with(Reply(429, b"", {"Retry-After": "30"}), TWILIO_CREATED)
    delivery = sms_at(receiver.url, session, (TO_A, TO_B)).send(notification())
    assert (delivery.reason, delivery.retry_after_s) == (FailureReason.RATE_LIMITED, 30.0)
    assert delivery.detail == "1 of 2 recipients: HTTP 429"
    assert [r.form()["To"] for r in receiver.requests] == [TO_A, TO_B]


def test_sms_counts_every_failed_recipient(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """Two failures of two are "2 of 2", with the first one's reason and detail."""
    receiver.reply_with(Reply(500, b""), Reply(400, b""))
    delivery = sms_at(receiver.url, session, (TO_A, TO_B)).send(notification())
    assert (delivery.reason, delivery.detail) == (
        FailureReason.SERVER_ERROR,
        "2 of 2 recipients: HTTP 500",
    )


# --- console -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        (ErrorSeverity.CRITICAL, "critical"),
        (ErrorSeverity.HIGH, "error"),
        (ErrorSeverity.MEDIUM, "warning"),
        (ErrorSeverity.LOW, "warning"),
    ],
)
def test_console_logs_the_notification_at_its_severitys_level(
    severity: ErrorSeverity, level: str
) -> None:
    """One ``notification`` event at the severity's level with title, key, count, held_back,
    status and the email text; delivered with the injected clock's latency."""
    n = notification(severity)
    readings = iter([3.0, 3.25])
    channel = ConsoleChannel(clock=readings.__next__)
    with capture_logs() as logs:
        delivery = channel.send(n)
    assert delivery == Delivery.ok("console", 0.25)
    assert channel.name == "console"
    assert logs == [
        {
            "event": "notification",
            "log_level": level,
            "title": n.title,
            "key": n.key,
            "count": 4,
            "held_back": 2,
            "status": "firing",
            "body": render.email(n).text,
        }
    ]


def test_console_answers_a_broken_log_stream_instead_of_raising() -> None:
    """A logger that raises makes a SERVER_ERROR delivery naming the exception class."""

    class Broken:
        def critical(self, event: str, **fields: Any) -> None:
            raise ValueError("I/O operation on closed file")

        error = warning = critical

    delivery = ConsoleChannel(Broken()).send(notification())
    assert (delivery.delivered, delivery.reason) == (False, FailureReason.SERVER_ERROR)
    assert delivery.detail == "ValueError"


# --- secrets -------------------------------------------------------------------------------

SECRETS = {
    "slack": (SLACK_SECRET,),
    "webhook": (HOOK_PATH_SECRET, HOOK_TOKEN),
    "sms": (SMS_TOKEN,),
    "pagerduty": (ROUTING_KEY,),
}


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b"ok"),
        Reply(400, b"echo"),  # the body is replaced by the secrets below
        Reply(429, b"echo", {"Retry-After": "1"}),
        Reply(500, b"echo"),
        None,
    ],
    ids=["ok", "400", "429", "500", "unreachable"],
)
def test_config_secrets_stay_out_of_details_and_request_bodies(
    receiver: HttpReceiver, session: requests.Session, kind: str, reply: Reply | None
) -> None:
    """No secret of the config is in a delivery's detail or repr, whatever the receiver echoes,
    nor in the body it got (the PagerDuty routing key only in its ``routing_key`` field)."""
    secrets = SECRETS[kind]
    if reply is None:
        base = f"http://127.0.0.1:{closed_port()}"
    else:
        base = receiver.url
        echoed = " ".join(secrets).encode()
        receiver.reply_with(
            Reply(reply.status, echoed, reply.headers) if reply.body == b"echo" else reply
        )
    delivery = HTTP_CHANNELS[kind](base, session).send(notification())
    for secret in secrets:
        assert secret not in delivery.detail
        assert secret not in repr(delivery)
    for received in receiver.requests:
        body = received.body.decode()
        if kind == "pagerduty":
            assert body.count(ROUTING_KEY) == 1
            assert received.json()["routing_key"] == ROUTING_KEY
            assert ROUTING_KEY not in received.path + received.query
            assert all(ROUTING_KEY not in value for value in received.headers.values())
        else:
            assert all(secret not in body for secret in secrets)


# --- configs -------------------------------------------------------------------------------

OK_URL = "https://hooks.example.com/x"


def sms_config(**changes: Any) -> SmsConfig:
    """An SMS config with :data:`SMS_TOKEN`, ``changes`` replacing fields."""
    fields: dict[str, Any] = {
        "account_sid": SID,
        "auth_token": SMS_TOKEN,
        "from_number": FROM,
        "to_numbers": (TO_A,),
    }
    return SmsConfig(**(fields | changes))


@pytest.mark.parametrize(
    ("config", "secrets"),
    [
        (SlackConfig(webhook_url=f"https://hooks.slack.com{SLACK_PATH}"), (SLACK_SECRET,)),
        (
            WebhookConfig(
                url=f"https://hooks.example.com{HOOK_PATH}",
                headers=(("Authorization", f"Bearer {HOOK_TOKEN}"),),
            ),
            (HOOK_PATH_SECRET, HOOK_TOKEN),
        ),
        (sms_config(), (SMS_TOKEN,)),
        (PagerDutyConfig(routing_key=ROUTING_KEY), (ROUTING_KEY,)),
    ],
    ids=["slack", "webhook", "sms", "pagerduty"],
)
def test_a_configs_repr_hides_its_secrets(config: object, secrets: tuple[str, ...]) -> None:
    """``repr`` of a config (what a log of it shows) holds none of its secrets, yet says what it
    is."""
    text = repr(config)
    assert text.startswith(type(config).__name__)
    assert all(secret not in text for secret in secrets)


def test_a_channel_repr_hides_its_configs_secrets(session: requests.Session) -> None:
    """Nor does the repr of a channel hold its config's secrets."""
    for kind, make in HTTP_CHANNELS.items():
        text = repr(make("https://hooks.example.com", session))
        assert all(secret not in text for secret in SECRETS[kind])


BAD = "sk_live_Planted9Bad"  # planted in each invalid value that could carry a secret


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SlackConfig(webhook_url=""), "slack: webhook_url is missing"),
        (
            lambda: SlackConfig(webhook_url=f"ftp://hooks.slack.com/{BAD}"),
            "slack: webhook_url must be an https (or http) URL",
        ),
        (
            lambda: SlackConfig(webhook_url=f"hooks.slack.com/services/{BAD}"),
            "slack: webhook_url must be an https (or http) URL",
        ),
        (lambda: SlackConfig(webhook_url=f"https:///{BAD}"), "slack: webhook_url has no host"),
        (
            lambda: SlackConfig(webhook_url=f"https://hooks.slack.com/ {BAD}"),
            "slack: webhook_url must not contain whitespace or control characters",
        ),
        (
            lambda: SlackConfig(webhook_url=f"https://hooks.slack.com:99999/{BAD}"),
            "slack: webhook_url is not a valid URL",
        ),
        (
            lambda: SlackConfig(webhook_url=OK_URL, timeout_s=0),
            "slack: timeout_s must be seconds > 0, got 0",
        ),
        (
            lambda: WebhookConfig(url=f"mailto:{BAD}@example.com"),
            "webhook: url must be an https (or http) URL",
        ),
        (
            lambda: WebhookConfig(url=OK_URL, headers=(("Authorization", f"Bearer {BAD}\r\nX:"),)),
            "webhook: the value of header 'Authorization' must be printable ASCII on one line",
        ),
        (
            lambda: WebhookConfig(url=OK_URL, headers=(("Authorization", f"Bearer {BAD}€"),)),
            "webhook: the value of header 'Authorization' must be printable ASCII on one line",
        ),
        (
            lambda: WebhookConfig(url=OK_URL, headers=(("X Token", BAD),)),
            "webhook: headers[0] has no valid header name (letters, digits, and !#$%&'*+-.^_`|~)",
        ),
        (
            lambda: WebhookConfig(url=OK_URL, headers=(("X-A", "1"), ("x-a", BAD))),
            "webhook: header 'x-a' is given twice",
        ),
        (
            lambda: WebhookConfig(url=OK_URL, headers=(("Authorization", BAD, "x"),)),  # type: ignore[arg-type]
            "webhook: headers[0] must be a (name, value) pair of strings",
        ),
        (
            lambda: WebhookConfig(url=OK_URL, headers=[("Authorization", BAD)]),  # type: ignore[arg-type]
            "webhook: headers must be a tuple of (name, value) pairs",
        ),
        (
            lambda: WebhookConfig(url=OK_URL, timeout_s=float("nan")),
            "webhook: timeout_s must be seconds > 0, got nan",
        ),
        (lambda: sms_config(auth_token=""), "sms: auth_token is missing"),
        (
            lambda: sms_config(auth_token=f"{BAD} x"),
            "sms: auth_token must be printable ASCII without spaces",
        ),
        (
            lambda: sms_config(auth_token=f"{BAD}€"),
            "sms: auth_token must be printable ASCII without spaces",
        ),
        (lambda: sms_config(account_sid=""), "sms: account_sid is missing"),
        (
            lambda: sms_config(account_sid=f"{SID}/../x"),
            "sms: account_sid must be letters and digits only",
        ),
        (
            lambda: sms_config(from_number="5005550006"),
            "sms: from_number must be an E.164 number: '+' and 8 to 15 digits",
        ),
        (
            lambda: sms_config(to_numbers=()),
            "sms: to_numbers is empty: give at least one recipient",
        ),
        (lambda: sms_config(to_numbers=TO_A), "sms: to_numbers must be a tuple of numbers"),
        (
            lambda: sms_config(to_numbers=(TO_A, "+1234567")),
            "sms: to_numbers[1] must be an E.164 number: '+' and 8 to 15 digits",
        ),
        (
            lambda: sms_config(to_numbers=(TO_A, "+1234567890123456")),
            "sms: to_numbers[1] must be an E.164 number: '+' and 8 to 15 digits",
        ),
        (
            lambda: sms_config(to_numbers=(TO_A, TO_B, TO_A)),
            "sms: to_numbers[2] repeats to_numbers[0]",
        ),
        (
            lambda: sms_config(base_url=f"api.twilio.com/{BAD}"),
            "sms: base_url must be an https (or http) URL",
        ),
        (lambda: PagerDutyConfig(routing_key=""), "pagerduty: routing_key is missing"),
        (
            lambda: PagerDutyConfig(routing_key=f"{BAD} "),
            "pagerduty: routing_key must not contain whitespace or control characters",
        ),
        (
            lambda: PagerDutyConfig(routing_key=BAD, events_url="events.pagerduty.com/v2/enqueue"),
            "pagerduty: events_url must be an https (or http) URL",
        ),
        (
            lambda: PagerDutyConfig(routing_key=BAD, timeout_s=-1.0),
            "pagerduty: timeout_s must be seconds > 0, got -1.0",
        ),
    ],
)
def test_an_invalid_config_says_what_is_wrong_without_the_secret(
    build: Callable[[], object], message: str
) -> None:
    """An invalid config raises ConfigurationError naming the channel, the field and the
    problem, and never the secret value it was given."""
    with pytest.raises(ConfigurationError) as raised:
        build()
    assert str(raised.value) == message
    assert BAD not in str(raised.value)


def test_valid_configs_take_their_defaults() -> None:
    """Production endpoints are Twilio's and PagerDuty's https URLs; every timeout is 5 s."""
    assert sms_config().base_url == "https://api.twilio.com"
    assert PagerDutyConfig(ROUTING_KEY).events_url == "https://events.pagerduty.com/v2/enqueue"
    timeouts = {
        SlackConfig(OK_URL).timeout_s,
        WebhookConfig(OK_URL).timeout_s,
        sms_config().timeout_s,
        PagerDutyConfig(ROUTING_KEY).timeout_s,
    }
    assert timeouts == {5.0}


def test_every_channel_has_its_escalation_name(session: requests.Session) -> None:
    """Each channel answers to the name the escalation policy uses."""
    channels: list[NotificationChannel] = [
        make("https://hooks.example.com", session) for make in HTTP_CHANNELS.values()
    ]
    channels.append(ConsoleChannel())
    assert [c.name for c in channels] == ["slack", "webhook", "sms", "pagerduty", "console"]


# --- known bugs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [{"auth": ("AC1", "tok€n")}, {"headers": {"Authorization": "Bearer tok€n"}}],
    ids=["basic-auth", "header"],
)
def test_post_answers_a_credential_http_cannot_encode(
    receiver: HttpReceiver, session: requests.Session, credentials: dict[str, Any]
) -> None:
    """A credential HTTP cannot carry is a CLIENT_ERROR delivery, not an exception (the
    channels' configs refuse such values, so only a direct caller of post() meets it)."""
    delivery = post(
        session, receiver.url, channel="sms", timeout_s=1.0, form={"To": TO_A}, **credentials
    )
    assert (delivery.delivered, delivery.reason) == (False, FailureReason.CLIENT_ERROR)
