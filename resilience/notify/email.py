"""The email channel: one notification as one multipart email, sent over SMTP.

The email carries the text and the HTML body of :func:`resilience.notify.render.email` as
``multipart/alternative`` (text first), and its group key in ``X-Alchemiser-Group`` so mail
rules can sort or thread it. Each send opens its own connection (``security`` says how it is
protected: STARTTLS on a plain connection, TLS from the first byte, or none), logs in when a
username is set, sends and says QUIT; ``timeout_s`` bounds each wait on the server.

A send never raises. What the server answered, or what went wrong, becomes a
:class:`~resilience.notify.channel.Delivery`:

* an SMTP answer in 4xx ("try again later": 421 closing, 450 mailbox busy, 451 local error,
  452 out of storage) is a transient ``SERVER_ERROR``; one in 5xx is a permanent
  ``CLIENT_ERROR``; a code outside both (a server out of protocol) is a ``SERVER_ERROR``. No
  4xx is ``RATE_LIMITED``: SMTP has no code that means only "too many", and servers send 421
  and 450 for maintenance, greylisting and throttling alike, so the escalation's ordinary
  retry of a transient failure is the honest answer. When recipients are refused the worst
  code (the highest) decides; a failed login (535) is a ``CLIENT_ERROR`` "authentication
  failed";
* a message the server accepted for only some recipients is not delivered: a
  ``CLIENT_ERROR`` "SMTP refused N of M recipients" (sending again would repeat it to those
  who had it);
* a wait longer than ``timeout_s`` is a ``TIMEOUT``; no connection (refused, DNS, TLS, the
  server hanging up, or a greeting other than 220) is ``UNREACHABLE``; the server not
  offering STARTTLS or AUTH is a ``CLIENT_ERROR`` (the configuration does not fit the server);
* a message that cannot be built or encoded is a ``CLIENT_ERROR``: sending it again fails alike.

A detail is ``SMTP <code>`` or an exception's class name: never the server's text (it echoes
addresses), never the username or password.
"""

from __future__ import annotations

import math
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import formatdate, make_msgid
from typing import Literal, TypeAlias

from resilience.errors import ConfigurationError
from resilience.notify import render
from resilience.notify.channel import Delivery, FailureReason
from resilience.notify.model import Notification

__all__ = ["GROUP_HEADER", "EmailChannel", "EmailConfig", "Security", "SmtpFactory", "connect"]

GROUP_HEADER = "X-Alchemiser-Group"
Security: TypeAlias = Literal["starttls", "tls", "none"]
_SECURITIES: tuple[Security, ...] = ("starttls", "tls", "none")
# 7-bit transfer encodings only (quoted-printable or base64 for non-ASCII): the message
# reaches a server that does not offer 8BITMIME intact.
_POLICY = default_policy.clone(cte_type="7bit")


@dataclass(frozen=True, slots=True)
class EmailConfig:
    """Where and how the email channel sends; the password is left out of the repr."""

    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        # Messages name the faulty setting and its value, except the password's.
        self._check_server()
        self._check_addresses()
        if self.username is not None and not self.password:
            raise ConfigurationError("email: username without password")
        if self.password is not None and not self.username:
            raise ConfigurationError("email: password without username")
        # smtplib sends credentials as ASCII only (and would raise UnicodeEncodeError mid-send).
        if self.username is not None and not self.username.isascii():
            raise ConfigurationError("email: username is not ASCII, which SMTP AUTH cannot send")
        if self.password is not None and not self.password.isascii():
            raise ConfigurationError("email: password is not ASCII, which SMTP AUTH cannot send")

    def _check_server(self) -> None:
        if not self.host:
            raise ConfigurationError("email: host is empty")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConfigurationError(f"email: port {self.port!r} is not a whole number")
        if not 1 <= self.port <= 65535:
            raise ConfigurationError(f"email: port {self.port} is not in 1..65535")
        if self.security not in _SECURITIES:
            raise ConfigurationError(
                f"email: security {self.security!r} is not one of starttls, tls, none"
            )
        if not (isinstance(self.timeout_s, int | float) and math.isfinite(self.timeout_s)):
            raise ConfigurationError(f"email: timeout_s {self.timeout_s!r} is not a number")
        if self.timeout_s <= 0:
            raise ConfigurationError(f"email: timeout_s {self.timeout_s} is not above 0")

    def _check_addresses(self) -> None:
        _check_address("sender", self.sender)
        if isinstance(self.recipients, str):
            raise ConfigurationError("email: recipients is one string; give a tuple of addresses")
        if not self.recipients:
            raise ConfigurationError("email: recipients is empty")
        for recipient in self.recipients:
            _check_address("recipient", recipient)
            if self.recipients.count(recipient) > 1:
                raise ConfigurationError(f"email: recipient {recipient!r} is listed twice")


def _check_address(role: str, address: object) -> None:
    if not isinstance(address, str) or "@" not in address:
        raise ConfigurationError(f"email: {role} {address!r} is not an address (no @)")
    if any(ch.isspace() or not ch.isprintable() for ch in address):
        raise ConfigurationError(
            f"email: {role} {address!r} is not an address (it holds a blank or a control character)"
        )


SmtpFactory: TypeAlias = Callable[[EmailConfig, ssl.SSLContext], smtplib.SMTP]
"""Opens a connection to the configured server and reads its greeting (over TLS already
when ``security`` is ``"tls"``); the channel does STARTTLS, login, sending and QUIT."""


def connect(config: EmailConfig, ssl_context: ssl.SSLContext) -> smtplib.SMTP:
    """The default :data:`SmtpFactory`: ``smtplib.SMTP``, or ``SMTP_SSL`` for ``"tls"``."""
    if config.security == "tls":
        return smtplib.SMTP_SSL(
            config.host, config.port, timeout=config.timeout_s, context=ssl_context
        )
    return smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)


class EmailChannel:
    """Sends each notification as one email to every configured recipient; see the module."""

    def __init__(
        self,
        config: EmailConfig,
        *,
        smtp_factory: SmtpFactory | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._config = config
        self._connect: SmtpFactory = smtp_factory or connect
        # Verifies the server's certificate and host name unless a test trusts its own.
        self._ssl_context = ssl.create_default_context() if ssl_context is None else ssl_context
        self._clock = clock

    @property
    def name(self) -> str:
        """``email``."""
        return "email"

    def _message(self, notification: Notification) -> EmailMessage:
        """The email a send of ``notification`` carries (a fresh Date and Message-ID)."""
        config = self._config
        content = render.email(notification)
        message = EmailMessage(policy=_POLICY)
        message["From"] = config.sender
        message["To"] = ", ".join(config.recipients)
        message["Subject"] = content.subject
        message["Date"] = formatdate(usegmt=True)
        # The sender's domain, not make_msgid's default getfqdn(), which may wait on DNS.
        message["Message-ID"] = make_msgid(domain=config.sender.rpartition("@")[2])
        message[GROUP_HEADER] = _one_line(notification.key)
        message.set_content(content.text)
        message.add_alternative(content.html, subtype="html")
        return message

    def send(self, notification: Notification) -> Delivery:
        """Send the notification's email; never raises for a failed send."""
        try:
            message = self._message(notification)
        except (ValueError, UnicodeError) as unbuildable:  # sending it again fails the same way
            return Delivery.failed(
                self.name,
                FailureReason.CLIENT_ERROR,
                f"message not built: {type(unbuildable).__name__}",
                0.0,
            )
        started = self._clock()
        try:
            refused = self._transact(message)
        except OSError as error:  # smtplib's errors are OSErrors too
            reason, detail = _classify(error)
            return Delivery.failed(self.name, reason, detail, self._clock() - started)
        except ValueError as error:  # what smtplib cannot encode: sending again fails alike
            return Delivery.failed(
                self.name,
                FailureReason.CLIENT_ERROR,
                type(error).__name__,
                self._clock() - started,
            )
        latency_s = self._clock() - started
        if refused:
            return Delivery.failed(
                self.name,
                FailureReason.CLIENT_ERROR,
                f"SMTP refused {len(refused)} of {len(self._config.recipients)} recipients",
                latency_s,
            )
        return Delivery.ok(self.name, latency_s)

    def _transact(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """Connect, secure, log in, send; the recipients the server refused (the message went
        to the others)."""
        config = self._config
        smtp = self._connect(config, self._ssl_context)
        try:
            if config.security == "starttls":
                smtp.starttls(context=self._ssl_context)
            if config.username is not None and config.password is not None:
                smtp.login(config.username, config.password)
            refused = smtp.send_message(
                message, from_addr=config.sender, to_addrs=list(config.recipients)
            )
        except BaseException as error:
            _hang_up(smtp, polite=_still_answering(error))
            raise
        _hang_up(smtp, polite=True)
        return refused


def _classify(error: OSError) -> tuple[FailureReason, str]:
    """The reason and detail of a send that raised ``error``; see the module."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code = _worst(error.recipients)
        return _reason_for_code(code), f"SMTP {code}"
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return FailureReason.CLIENT_ERROR, "authentication failed"
    if isinstance(error, smtplib.SMTPConnectError):  # a greeting other than 220
        return FailureReason.UNREACHABLE, type(error).__name__
    if isinstance(error, smtplib.SMTPResponseException):  # sender, data or command refused
        return _reason_for_code(error.smtp_code), f"SMTP {error.smtp_code}"
    if isinstance(error, smtplib.SMTPServerDisconnected) or not isinstance(
        error, smtplib.SMTPException
    ):
        return _no_connection(error)  # timeout, refused, DNS, TLS, hung up
    return FailureReason.CLIENT_ERROR, type(error).__name__  # no STARTTLS, no AUTH offered


def _still_answering(error: BaseException) -> bool:
    """Whether the server answered the command that failed (so QUIT is worth saying)."""
    return isinstance(error, smtplib.SMTPException) and not isinstance(
        error, smtplib.SMTPServerDisconnected
    )


def _reason_for_code(code: int) -> FailureReason:
    """A refusing SMTP answer's reason: 5xx permanent, anything else (4xx) transient."""
    if 500 <= code < 600:
        return FailureReason.CLIENT_ERROR
    return FailureReason.SERVER_ERROR


def _worst(recipients: Mapping[str, tuple[int, bytes]]) -> int:
    """The highest code among refused recipients (a 5xx outranks a 4xx)."""
    return max((code for code, _ in recipients.values()), default=0)


def _no_connection(error: BaseException) -> tuple[FailureReason, str]:
    """TIMEOUT when ``error`` is, or was raised while handling, a timeout; else UNREACHABLE.

    smtplib turns a read that timed out into ``SMTPServerDisconnected`` raised in the
    ``except`` of the timeout, so the timeout is found on the context chain.
    """
    cause: BaseException | None = error
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, TimeoutError):
            return FailureReason.TIMEOUT, type(cause).__name__
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return FailureReason.UNREACHABLE, type(error).__name__


def _hang_up(smtp: smtplib.SMTP, *, polite: bool) -> None:
    """QUIT when the server still answers, then close; nothing here changes the outcome."""
    try:
        if polite and smtp.sock is not None:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass  # the message was accepted or refused already
    finally:
        smtp.close()


def _one_line(text: str) -> str:
    """``text`` with control characters as blanks: a header value holds no line break."""
    return "".join(ch if ch.isprintable() else " " for ch in text)
