"""The generic webhook channel: the versioned JSON document of a notification, POSTed to a URL.

Also home of the configuration checks every HTTP channel shares (:func:`check_http_url`,
:func:`check_timeout`): Slack, SMS and PagerDuty are webhooks of a known shape. A check's
message names the channel and the field and says what is wrong, never the value of a secret
field (a webhook's URL is often its credential).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import requests

from resilience.errors import ConfigurationError
from resilience.notify import render
from resilience.notify.channel import Delivery
from resilience.notify.http_post import check_http_url, check_timeout, post
from resilience.notify.model import Notification

__all__ = ["WebhookChannel", "WebhookConfig", "check_http_url", "check_timeout"]

# RFC 9110 field-name: one or more tchar.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII, space and tab: no line break (header injection), nothing http.client cannot
# encode (post() would raise on it, see the report on http_post).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where the generic webhook posts, with which extra headers (an ``Authorization`` one,
    say), and how long it waits; ``url`` and ``headers`` stay out of the repr."""

    url: str = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        check_http_url("webhook", "url", self.url)
        check_timeout("webhook", self.timeout_s)
        if not isinstance(self.headers, tuple):
            raise ConfigurationError("webhook: headers must be a tuple of (name, value) pairs")
        seen: set[str] = set()
        for number, pair in enumerate(self.headers):
            if not (
                isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            ):
                raise ConfigurationError(
                    f"webhook: headers[{number}] must be a (name, value) pair of strings"
                )
            name, value = pair
            if not _HEADER_NAME.fullmatch(name):
                raise ConfigurationError(
                    f"webhook: headers[{number}] has no valid header name (letters, digits, "
                    "and !#$%&'*+-.^_`|~)"
                )
            if not _HEADER_VALUE.fullmatch(value):
                raise ConfigurationError(
                    f"webhook: the value of header {name!r} must be printable ASCII on one line"
                )
            if name.lower() in seen:
                raise ConfigurationError(f"webhook: header {name!r} is given twice")
            seen.add(name.lower())


class WebhookChannel:
    """POSTs :func:`~resilience.notify.render.webhook` of a notification as JSON."""

    def __init__(self, config: WebhookConfig, session: requests.Session | None = None) -> None:
        self._config = config
        self._session = session if session is not None else requests.Session()

    @property
    def name(self) -> str:
        """``webhook``."""
        return "webhook"

    def send(self, notification: Notification) -> Delivery:
        """POST the notification's JSON document with the configured headers; never raises
        for a failed send."""
        return post(
            self._session,
            self._config.url,
            channel=self.name,
            timeout_s=self._config.timeout_s,
            json_body=render.webhook(notification),
            headers=dict(self._config.headers),
        )
