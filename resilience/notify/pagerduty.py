"""The PagerDuty channel: an Events API v2 event (trigger, or resolve), POSTed to the queue.

The routing (integration) key is a secret the API wants in the event's body, so it is there and
nowhere else: not in the config's repr, a delivery's detail or a message. PagerDuty answers
202 when it queued the event, 400 to an invalid one (CLIENT_ERROR) and 429 when it throttles
(RATE_LIMITED).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from resilience.errors import ConfigurationError
from resilience.notify import render
from resilience.notify.channel import Delivery
from resilience.notify.http_post import check_http_url, check_timeout, post
from resilience.notify.model import Notification

__all__ = ["EVENTS_URL", "PagerDutyChannel", "PagerDutyConfig"]

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


@dataclass(frozen=True, slots=True)
class PagerDutyConfig:
    """The routing key (kept out of the repr), where events go, and how long to wait."""

    routing_key: str = field(repr=False)
    events_url: str = EVENTS_URL  # https in production; http only for local tests
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.routing_key, str) or not self.routing_key.strip():
            raise ConfigurationError("pagerduty: routing_key is missing")
        if not self.routing_key.isprintable() or any(ch.isspace() for ch in self.routing_key):
            raise ConfigurationError(
                "pagerduty: routing_key must not contain whitespace or control characters"
            )
        check_http_url("pagerduty", "events_url", self.events_url)
        check_timeout("pagerduty", self.timeout_s)


class PagerDutyChannel:
    """POSTs :func:`~resilience.notify.render.pagerduty` of a notification as JSON."""

    def __init__(self, config: PagerDutyConfig, session: requests.Session | None = None) -> None:
        self._config = config
        self._session = session if session is not None else requests.Session()

    @property
    def name(self) -> str:
        """``pagerduty``."""
        return "pagerduty"

    def send(self, notification: Notification) -> Delivery:
        """POST the event (``trigger`` while firing, ``resolve`` once resolved); never raises
        for a failed send."""
        return post(
            self._session,
            self._config.events_url,
            channel=self.name,
            timeout_s=self._config.timeout_s,
            json_body=render.pagerduty(notification, self._config.routing_key),
        )
