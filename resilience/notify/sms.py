"""The SMS channel, in Twilio's REST shape: one message per recipient, all or nothing.

Each recipient gets its own POST of the form ``To``, ``From``, ``Body`` (:func:`render.sms
<resilience.notify.render.sms>`) to ``{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json``
with basic auth ``account_sid:auth_token``. Every recipient is tried, whatever the others
answered (so a send takes at most ``len(to_numbers) * timeout_s``); the notification is
delivered only when every message was. Otherwise the answer is the first failure's reason and
Retry-After, its detail prefixed with how many recipients failed (``1 of 2 recipients: HTTP
400``). The auth token travels only in the ``Authorization`` header; numbers appear in no
detail or message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import requests

from resilience.errors import ConfigurationError
from resilience.notify import render
from resilience.notify.channel import Delivery
from resilience.notify.http_post import check_http_url, check_timeout, post
from resilience.notify.model import Notification

__all__ = ["TWILIO_URL", "SmsChannel", "SmsConfig"]

TWILIO_URL = "https://api.twilio.com"

_E164 = re.compile(r"\+[0-9]{8,15}")
_SID = re.compile(r"[A-Za-z0-9]+")  # Twilio's are "AC" and 32 hex digits; it goes in a path
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: basic auth cannot carry anything else


@dataclass(frozen=True, slots=True)
class SmsConfig:
    """The Twilio account (its token kept out of the repr), sender, recipients, API and
    timeout."""

    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str
    to_numbers: tuple[str, ...]
    base_url: str = TWILIO_URL  # https in production; http only for local tests
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.account_sid, str) or not self.account_sid:
            raise ConfigurationError("sms: account_sid is missing")
        if not _SID.fullmatch(self.account_sid):
            raise ConfigurationError("sms: account_sid must be letters and digits only")
        if not isinstance(self.auth_token, str) or not self.auth_token:
            raise ConfigurationError("sms: auth_token is missing")
        if not _TOKEN.fullmatch(self.auth_token):
            raise ConfigurationError("sms: auth_token must be printable ASCII without spaces")
        _check_number("from_number", self.from_number)
        if isinstance(self.to_numbers, str) or not isinstance(self.to_numbers, tuple):
            raise ConfigurationError("sms: to_numbers must be a tuple of numbers")
        if not self.to_numbers:
            raise ConfigurationError("sms: to_numbers is empty: give at least one recipient")
        for number, to_number in enumerate(self.to_numbers):
            _check_number(f"to_numbers[{number}]", to_number)
            if to_number in self.to_numbers[:number]:
                first = self.to_numbers.index(to_number)
                raise ConfigurationError(f"sms: to_numbers[{number}] repeats to_numbers[{first}]")
        check_http_url("sms", "base_url", self.base_url)
        check_timeout("sms", self.timeout_s)

    @property
    def messages_url(self) -> str:
        """Twilio's Messages resource of the account."""
        base = self.base_url.rstrip("/")
        return f"{base}/2010-04-01/Accounts/{self.account_sid}/Messages.json"


def _check_number(field_name: str, value: object) -> None:
    """A phone number is E.164: ``+`` and 8 to 15 digits (the message does not repeat it)."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"sms: {field_name} is missing")
    if not _E164.fullmatch(value):
        raise ConfigurationError(
            f"sms: {field_name} must be an E.164 number: '+' and 8 to 15 digits"
        )


class SmsChannel:
    """Texts :func:`~resilience.notify.render.sms` of a notification to every recipient."""

    def __init__(self, config: SmsConfig, session: requests.Session | None = None) -> None:
        self._config = config
        self._session = session if session is not None else requests.Session()

    @property
    def name(self) -> str:
        """``sms``."""
        return "sms"

    def send(self, notification: Notification) -> Delivery:
        """Send one message per recipient; delivered only if every one was, never raises for
        a failed send."""
        config = self._config
        body = render.sms(notification)
        deliveries = [
            post(
                self._session,
                config.messages_url,
                channel=self.name,
                timeout_s=config.timeout_s,
                form={"To": to_number, "From": config.from_number, "Body": body},
                auth=(config.account_sid, config.auth_token),
            )
            for to_number in config.to_numbers
        ]
        latency_s = sum(d.latency_s for d in deliveries)
        failures = [d for d in deliveries if not d.delivered]
        if not failures:
            return Delivery.ok(self.name, latency_s)
        first = failures[0]  # its reason and Retry-After answer for the whole send
        detail = f"{len(failures)} of {len(deliveries)} recipients: {first.detail}"
        return replace(first, detail=detail, latency_s=latency_s)
