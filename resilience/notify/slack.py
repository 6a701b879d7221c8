"""The Slack channel: a notification's Block Kit message, POSTed to an incoming webhook.

An incoming webhook's URL is its credential (``https://hooks.slack.com/services/T…/B…/…``), so
it stays out of the config's repr, out of every delivery's detail and out of every message.
Slack answers 200 ``ok``; a 429 is RATE_LIMITED with its ``Retry-After``, and an error is
described by its status and Slack's short code (``HTTP 404 channel_not_found``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from resilience.notify import render
from resilience.notify.channel import Delivery
from resilience.notify.http_post import check_http_url, check_timeout, post
from resilience.notify.model import Notification

__all__ = ["SlackChannel", "SlackConfig"]


@dataclass(frozen=True, slots=True)
class SlackConfig:
    """The incoming webhook to post to (kept out of the repr) and how long to wait."""

    webhook_url: str = field(repr=False)  # https in production; http only for local tests
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        check_http_url("slack", "webhook_url", self.webhook_url)
        check_timeout("slack", self.timeout_s)


class SlackChannel:
    """POSTs :func:`~resilience.notify.render.slack` of a notification as JSON."""

    def __init__(self, config: SlackConfig, session: requests.Session | None = None) -> None:
        self._config = config
        self._session = session if session is not None else requests.Session()

    @property
    def name(self) -> str:
        """``slack``."""
        return "slack"

    def send(self, notification: Notification) -> Delivery:
        """POST the Slack message to the webhook; never raises for a failed send."""
        return post(
            self._session,
            self._config.webhook_url,
            channel=self.name,
            timeout_s=self._config.timeout_s,
            json_body=render.slack(notification),
        )
