"""The email channel (resilience.notify.email): one notification as one email, over real SMTP.

Every send goes to a real local SMTP server (:class:`~tests.fakes.smtp_server.SmtpServer`,
aiosmtpd), plain, with AUTH, over STARTTLS or over TLS; a server that never greets
(:class:`~tests.fakes.smtp_server.SilentServer`) and a closed port stand for the failures with
no SMTP answer. smtplib is never mocked.
"""

from __future__ import annotations

import builtins
import smtplib
import socket
import ssl
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from resilience.errors import ConfigurationError
from resilience.notify.channel import Delivery, FailureReason, NotificationChannel
from resilience.notify.email import GROUP_HEADER, EmailChannel, EmailConfig, connect
from resilience.notify.model import Example, Notification, group_key
from resilience.notify.render import email as render_email
from resilience.policy.retry import ErrorSeverity
from tests.fakes.smtp_server import (
    Certificate,
    NoCertificateError,
    SilentServer,
    SmtpServer,
    self_signed_certificate,
)

SENDER = "alerts@alchemiser.test"
OPS = "ops@alchemiser.test"
ONCALL = "oncall@alchemiser.test"
USER = "alerts-relay"
PASSWORD = "s3cret-Pa55word"  # the test's own secret, looked for in every output


def notification(message: str = "buying power 120.50 below order cost 980.00") -> Notification:
    """A critical group of 3 InsufficientFundsError in ``trading`` with one example."""
    example = Example(
        error_id="err-1",
        message=message,
        task_name="tasks.trading.submit_order",
        operation="submit_order",
        occurred_at="2026-03-02T14:30:01+00:00",
        dead_letter_id="dl-1",
        idempotency_key="coid-1",
        attempts=3,
    )
    return Notification(
        key=group_key("InsufficientFundsError", "trading"),
        severity=ErrorSeverity.CRITICAL,
        error_type="InsufficientFundsError",
        component="trading",
        count=3,
        examples=(example,),
    )


def settings(server: SmtpServer | None = None, **changes: Any) -> EmailConfig:
    """A plain (no TLS, no AUTH) config for ``server`` with one recipient, changed as given."""
    config = EmailConfig(
        host="127.0.0.1" if server is None else server.host,
        port=25 if server is None else server.port,
        sender=SENDER,
        recipients=(OPS,),
        security="none",
        timeout_s=5.0,
    )
    return replace(config, **changes)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1; the test is skipped when none can be made."""
    try:
        return self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))
    except NoCertificateError as unavailable:
        pytest.skip(str(unavailable))


def assert_failed(delivery: Delivery, reason: FailureReason, detail: str) -> None:
    """Not delivered, for ``reason``, described by ``detail``, with a latency."""
    assert (delivery.channel, delivery.delivered) == ("email", False)
    assert (delivery.reason, delivery.detail) == (reason, detail)
    assert delivery.retry_after_s is None
    assert delivery.latency_s >= 0


# --- delivered -------------------------------------------------------------------------------


def test_the_channel_is_a_notification_channel_named_email() -> None:
    """EmailChannel satisfies the NotificationChannel protocol under the name ``email``."""
    channel: NotificationChannel = EmailChannel(settings())
    assert channel.name == "email"


def test_a_notification_arrives_as_a_multipart_email(smtp: SmtpServer) -> None:
    """The server gets one multipart/alternative message, text then HTML equal to the
    renderer's, with the title as subject, From, To, Date, Message-ID and the group key in
    X-Alchemiser-Group; the envelope names the sender and every recipient."""
    n = notification()
    delivery = EmailChannel(settings(smtp, recipients=(OPS, ONCALL))).send(n)
    assert delivery == Delivery.ok("email", delivery.latency_s)
    assert delivery.latency_s > 0
    [received] = smtp.transactions
    assert received.accepted
    assert (received.mail_from, received.rcpt_tos) == (SENDER, (OPS, ONCALL))
    message = received.message
    content = render_email(n)
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content() == content.text
    assert html.get_content() == content.html
    assert message["Subject"] == content.subject == n.title
    assert message["From"] == SENDER
    assert [a.addr_spec for a in message["To"].addresses] == [OPS, ONCALL]
    assert message[GROUP_HEADER] == n.key == "InsufficientFundsError:trading"
    assert message["Date"].datetime.tzinfo is not None
    assert message["Message-ID"].endswith("@alchemiser.test>")
    assert received.login is None
    assert not received.tls


def test_each_send_has_its_own_message_id(smtp: SmtpServer) -> None:
    """Two sends of one notification are two messages with different Message-IDs."""
    channel = EmailChannel(settings(smtp))
    assert channel.send(notification()).delivered
    assert channel.send(notification()).delivered
    first, second = smtp.messages
    assert first.message["Message-ID"] != second.message["Message-ID"]


def test_non_ascii_text_arrives_intact_in_a_seven_bit_message(smtp: SmtpServer) -> None:
    """Accents, a euro sign and an em dash in an example arrive as written; the message on
    the wire is 7-bit ASCII (no reliance on the server's 8BITMIME)."""
    message = "Solde insuffisant : 120,50 € < 980,00 € — réessayer après l'ouverture"
    assert EmailChannel(settings(smtp)).send(notification(message)).delivered
    [received] = smtp.messages
    text, html = received.message.iter_parts()
    assert message in text.get_content()
    assert "Solde insuffisant : 120,50 € &lt; 980,00 € — réessayer" in html.get_content()
    assert received.raw.isascii()


def test_latency_is_measured_on_the_injected_clock(smtp: SmtpServer) -> None:
    """The latency is the injected clock's reading after the send minus before it."""
    readings = iter([100.0, 100.5])
    delivery = EmailChannel(settings(smtp), clock=readings.__next__).send(notification())
    assert delivery == Delivery.ok("email", 0.5)


def test_an_injected_factory_opens_the_connection(smtp: SmtpServer) -> None:
    """``smtp_factory`` is called once per send with the config and the TLS context, and the
    channel sends over the connection it opens."""
    calls: list[tuple[EmailConfig, ssl.SSLContext]] = []

    def factory(config: EmailConfig, context: ssl.SSLContext) -> smtplib.SMTP:
        calls.append((config, context))
        return connect(config, context)

    config = settings(smtp)
    context = ssl.create_default_context()
    channel = EmailChannel(config, smtp_factory=factory, ssl_context=context)
    assert channel.send(notification()).delivered
    assert calls == [(config, context)]
    assert len(smtp.messages) == 1


def test_the_html_alternative_shows_the_facts_of_the_text_alternative() -> None:
    """Each example's error id and why it was final, in the text part, are in the HTML part
    too (a mail client shows one alternative only, usually the HTML)."""
    n = notification()
    n = replace(n, examples=(replace(n.examples[0], reason="retries exhausted"),))
    content = render_email(n)
    for fact in ("err-1", "retries exhausted"):
        assert fact in content.text
        assert fact in content.html


# --- SMTP answers ----------------------------------------------------------------------------


def test_421_then_250_is_a_transient_failure_then_a_delivery(smtp: SmtpServer) -> None:
    """A DATA answered 421 is a transient SERVER_ERROR "SMTP 421" with nothing of the server's
    text; the next send, answered 250, is delivered."""
    smtp.reply_to_data(f"421 4.3.2 Service not available for {OPS}", "250 OK")
    channel = EmailChannel(settings(smtp))
    first = channel.send(notification())
    assert_failed(first, FailureReason.SERVER_ERROR, "SMTP 421")
    assert first.reason is not None and first.reason.transient
    second = channel.send(notification())
    assert second.delivered
    assert [t.reply.split()[0] for t in smtp.transactions] == ["421", "250"]
    assert len(smtp.messages) == 1
    assert smtp.pending_replies() == 0


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("450 4.2.1 Mailbox busy, try later", FailureReason.SERVER_ERROR),
        ("451 4.3.0 Local error in processing", FailureReason.SERVER_ERROR),
        ("452 4.3.1 Insufficient system storage", FailureReason.SERVER_ERROR),
        ("550 5.7.1 Message rejected as spam", FailureReason.CLIENT_ERROR),
        ("552 5.3.4 Message too big", FailureReason.CLIENT_ERROR),
        ("554 5.6.0 Transaction failed", FailureReason.CLIENT_ERROR),
    ],
    ids=lambda value: value.split()[0] if isinstance(value, str) else value.name,
)
def test_data_refused_4xx_is_transient_and_5xx_permanent(
    smtp: SmtpServer, reply: str, reason: FailureReason
) -> None:
    """A 4xx answer to DATA is a transient SERVER_ERROR, a 5xx a permanent CLIENT_ERROR; the
    detail is ``SMTP <code>`` alone."""
    smtp.reply_to_data(reply)
    delivery = EmailChannel(settings(smtp)).send(notification())
    assert_failed(delivery, reason, f"SMTP {reply[:3]}")
    assert smtp.messages == []


def test_one_of_two_recipients_refused_is_not_delivered(smtp: SmtpServer) -> None:
    """A 550 at RCPT for one of two recipients is a CLIENT_ERROR saying 1 of 2 were refused,
    without the address; the other recipient got the message."""
    smtp.refuse_recipient(ONCALL, f"550 5.1.1 <{ONCALL}>: Recipient address rejected")
    delivery = EmailChannel(settings(smtp, recipients=(OPS, ONCALL))).send(notification())
    assert_failed(delivery, FailureReason.CLIENT_ERROR, "SMTP refused 1 of 2 recipients")
    assert ONCALL not in repr(delivery)
    [received] = smtp.messages
    assert received.rcpt_tos == (OPS,)


@pytest.mark.parametrize(
    ("ops_reply", "oncall_reply", "reason", "detail"),
    [
        ("450 4.2.0 Greylisted", "550 5.1.1 Unknown user", FailureReason.CLIENT_ERROR, "SMTP 550"),
        ("450 4.2.0 Greylisted", "451 4.4.0 Try again", FailureReason.SERVER_ERROR, "SMTP 451"),
    ],
    ids=["a-5xx-among-them", "all-4xx"],
)
def test_every_recipient_refused_takes_the_worst_code(
    smtp: SmtpServer, ops_reply: str, oncall_reply: str, reason: FailureReason, detail: str
) -> None:
    """When every recipient is refused, the highest code decides: any 5xx makes it permanent,
    all 4xx leave it transient; no message is sent."""
    smtp.refuse_recipient(OPS, ops_reply)
    smtp.refuse_recipient(ONCALL, oncall_reply)
    delivery = EmailChannel(settings(smtp, recipients=(OPS, ONCALL))).send(notification())
    assert_failed(delivery, reason, detail)
    assert smtp.transactions == []


# --- AUTH ------------------------------------------------------------------------------------


def test_auth_with_the_right_password_is_delivered() -> None:
    """With the right username and password the channel logs in and the message arrives
    as sent by that user."""
    with SmtpServer(login=(USER, PASSWORD)) as server:
        config = settings(server, username=USER, password=PASSWORD)
        assert EmailChannel(config).send(notification()).delivered
        [received] = server.messages
        assert received.login == USER


def test_auth_with_a_wrong_password_fails_without_the_secret() -> None:
    """A wrong password is a CLIENT_ERROR "authentication failed" and nothing is sent; neither
    password appears in the detail, the delivery's repr or the config's repr."""
    with SmtpServer(login=(USER, PASSWORD)) as server:
        wrong = "wr0ng-" + PASSWORD
        config = settings(server, username=USER, password=wrong)
        delivery = EmailChannel(config).send(notification())
        assert_failed(delivery, FailureReason.CLIENT_ERROR, "authentication failed")
        assert server.transactions == []
        for text in (delivery.detail, repr(delivery), repr(config), str(config)):
            assert PASSWORD not in text
            assert USER not in delivery.detail


def test_no_login_where_the_server_requires_one_is_a_client_error() -> None:
    """A config without credentials for a server that requires AUTH is refused at MAIL with
    530: a CLIENT_ERROR "SMTP 530"."""
    with SmtpServer(login=(USER, PASSWORD)) as server:
        delivery = EmailChannel(settings(server)).send(notification())
        assert_failed(delivery, FailureReason.CLIENT_ERROR, "SMTP 530")
        assert server.transactions == []


def test_a_password_is_in_no_delivery_of_any_failure() -> None:
    """Whatever the failure with credentials set (refused login, refused data, no server), the
    password is in no detail and no repr."""
    deliveries = []
    with SmtpServer(login=(USER, PASSWORD)) as server:
        config = settings(server, username=USER, password=PASSWORD)
        server.reply_to_data(f"554 5.7.1 {USER}:{PASSWORD} rejected")
        deliveries.append(EmailChannel(config).send(notification()))
        server.refuse_recipient(OPS, f"550 5.1.1 {PASSWORD}")
        deliveries.append(EmailChannel(config).send(notification()))
    config = settings(username=USER, password=PASSWORD, port=closed_port())
    deliveries.append(EmailChannel(config).send(notification()))
    assert [d.detail for d in deliveries] == ["SMTP 554", "SMTP 550", "ConnectionRefusedError"]
    for delivery in deliveries:
        assert PASSWORD not in repr(delivery)


# --- TLS -------------------------------------------------------------------------------------


def test_starttls_with_a_trusted_certificate_is_delivered(certificate: Certificate) -> None:
    """Over STARTTLS, with a context trusting the test certificate, the channel upgrades,
    logs in (the server allows AUTH only over TLS) and the message arrives encrypted."""
    with SmtpServer(login=(USER, PASSWORD), certificate=certificate) as server:
        config = settings(server, security="starttls", username=USER, password=PASSWORD)
        channel = EmailChannel(config, ssl_context=certificate.client_context())
        assert channel.send(notification()).delivered
        [received] = server.messages
        assert (received.tls, received.login) == (True, USER)


def test_implicit_tls_with_a_trusted_certificate_is_delivered(certificate: Certificate) -> None:
    """With security "tls" the channel speaks TLS from the first byte (SMTP_SSL) and the
    message arrives encrypted."""
    with SmtpServer(certificate=certificate, implicit_tls=True) as server:
        channel = EmailChannel(
            settings(server, security="tls"), ssl_context=certificate.client_context()
        )
        assert channel.send(notification()).delivered
        [received] = server.messages
        assert received.tls


@pytest.mark.parametrize("implicit_tls", [False, True], ids=["starttls", "tls"])
def test_an_untrusted_certificate_is_unreachable(
    certificate: Certificate, implicit_tls: bool
) -> None:
    """With the default context (system CAs), the self-signed certificate fails verification:
    UNREACHABLE "SSLCertVerificationError", and no credential or message is sent."""
    with SmtpServer(
        login=(USER, PASSWORD), certificate=certificate, implicit_tls=implicit_tls
    ) as server:
        security = "tls" if implicit_tls else "starttls"
        config = settings(server, security=security, username=USER, password=PASSWORD)
        delivery = EmailChannel(config).send(notification())
        assert_failed(delivery, FailureReason.UNREACHABLE, "SSLCertVerificationError")
        assert server.transactions == []


def test_starttls_where_the_server_offers_none_is_a_client_error(smtp: SmtpServer) -> None:
    """A server without STARTTLS is no place to send in the clear for a starttls config: a
    CLIENT_ERROR naming smtplib's SMTPNotSupportedError, and nothing is sent."""
    delivery = EmailChannel(settings(smtp, security="starttls")).send(notification())
    assert_failed(delivery, FailureReason.CLIENT_ERROR, "SMTPNotSupportedError")
    assert smtp.transactions == []


# --- no answer -------------------------------------------------------------------------------


def test_a_server_that_never_greets_is_a_timeout() -> None:
    """A server that accepts the connection and never greets is a TIMEOUT of a 0.3 s send,
    which returns within 1.5 s."""
    with SilentServer() as silent:
        config = settings(port=silent.port, timeout_s=0.3)
        started = time.perf_counter()
        delivery = EmailChannel(config).send(notification())
        elapsed_s = time.perf_counter() - started
        assert silent.accepted == 1
    assert_failed(delivery, FailureReason.TIMEOUT, "TimeoutError")
    assert delivery.reason is not None and delivery.reason.transient
    assert 0.3 * 0.9 <= delivery.latency_s < 1.5
    assert elapsed_s < 1.5


def test_a_closed_port_is_unreachable() -> None:
    """A refused connection is a transient UNREACHABLE described by the exception's class
    name only."""
    delivery = EmailChannel(settings(port=closed_port())).send(notification())
    assert delivery.reason is FailureReason.UNREACHABLE
    assert delivery.reason.transient
    assert delivery.detail == "ConnectionRefusedError"
    assert issubclass(getattr(builtins, delivery.detail), OSError)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"recipients": ()}, "email: recipients is empty"),
        ({"username": USER, "password": None}, "email: username without password"),
        ({"username": None, "password": PASSWORD}, "email: password without username"),
        ({"port": 0}, "email: port 0 is not in 1..65535"),
        ({"port": 65536}, "email: port 65536 is not in 1..65535"),
        ({"port": "587"}, "email: port '587' is not a whole number"),
        ({"host": ""}, "email: host is empty"),
        ({"sender": "alerts"}, "email: sender 'alerts' is not an address (no @)"),
        (
            {"recipients": (OPS, "oncall")},
            "email: recipient 'oncall' is not an address (no @)",
        ),
        (
            {"recipients": (f"{OPS}\r\nBcc: x@evil.test",)},
            f"email: recipient '{OPS}\\r\\nBcc: x@evil.test' is not an address (it holds a"
            " blank or a control character)",
        ),
        ({"recipients": OPS}, "email: recipients is one string; give a tuple of addresses"),
        ({"recipients": (OPS, OPS)}, f"email: recipient '{OPS}' is listed twice"),
        ({"security": "ssl"}, "email: security 'ssl' is not one of starttls, tls, none"),
        ({"timeout_s": 0}, "email: timeout_s 0 is not above 0"),
        ({"timeout_s": float("nan")}, "email: timeout_s nan is not a number"),
        (
            {"username": USER, "password": "pässword"},
            "email: password is not ASCII, which SMTP AUTH cannot send",
        ),
    ],
)
def test_a_wrong_setting_is_named_exactly(changes: dict[str, Any], message: str) -> None:
    """Each wrong setting raises ConfigurationError saying exactly what is wrong."""
    base = {
        "host": "smtp.alchemiser.test",
        "sender": SENDER,
        "recipients": (OPS,),
        "username": USER,
        "password": PASSWORD,
    }
    with pytest.raises(ConfigurationError) as raised:
        EmailConfig(**(base | changes))
    assert str(raised.value) == message
    assert PASSWORD not in str(raised.value)


def test_the_password_is_in_no_repr_of_the_config() -> None:
    """The config's repr names the username and leaves the password out; the defaults are
    port 587, STARTTLS and 10 s."""
    config = EmailConfig(
        host="smtp.alchemiser.test",
        sender=SENDER,
        recipients=(OPS,),
        username=USER,
        password=PASSWORD,
    )
    assert PASSWORD not in repr(config)
    assert USER in repr(config)
    assert (config.port, config.security, config.timeout_s) == (587, "starttls", 10.0)


# --- the server itself -----------------------------------------------------------------------


def test_server_answers_its_script_in_order_then_250(smtp: SmtpServer) -> None:
    """Scripted DATA replies answer one DATA each, in order, then 250 OK; a malformed reply is
    refused when scripted."""
    smtp.reply_to_data("451 4.3.0 Later", "554 5.6.0 No")
    channel = EmailChannel(settings(smtp))
    details = [channel.send(notification()).detail for _ in range(3)]
    assert details == ["SMTP 451", "SMTP 554", ""]
    assert [t.accepted for t in smtp.transactions] == [False, False, True]
    with pytest.raises(ValueError, match="not an SMTP reply"):
        smtp.reply_to_data("OK")


def test_a_certificate_is_written_as_pem_files(certificate: Certificate) -> None:
    """The generated certificate and key are PEM files a server context loads."""
    assert Path(certificate.cert_path).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in Path(certificate.key_path).read_text()
    assert certificate.server_context().protocol is ssl.PROTOCOL_TLS_SERVER
