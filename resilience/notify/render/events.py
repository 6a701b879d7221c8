"""Machine-read events: the generic webhook's JSON document and PagerDuty's Events API v2."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict
from types import MappingProxyType
from typing import Final

from resilience.notify.model import Notification, NotificationStatus
from resilience.notify.render import facts as shared
from resilience.policy.retry import ErrorSeverity

WEBHOOK_VERSION = "1"

PAGERDUTY_SEVERITY: Final[Mapping[ErrorSeverity, str]] = MappingProxyType(
    {
        ErrorSeverity.CRITICAL: "critical",
        ErrorSeverity.HIGH: "error",
        ErrorSeverity.MEDIUM: "warning",
        ErrorSeverity.LOW: "info",
    }
)


def webhook(n: Notification) -> dict[str, object]:
    """A generic, versioned JSON document of the notification (``json.dumps`` takes it)."""
    return {
        "version": WEBHOOK_VERSION,
        "status": n.status.value,
        "key": n.key,
        "severity": n.severity.value,
        "error_type": n.error_type,
        "component": n.component,
        "count": n.count,
        "held_back": n.held_back,
        "title": n.title,
        "first_at": n.first_at,
        "runbook_url": n.runbook_url,
        "dead_letter_url": n.dead_letter_url,
        "examples": [asdict(e) for e in shared.shown(n)],
    }


# --- PagerDuty ---------------------------------------------------------------------------------

PAGERDUTY_SOURCE = "alchemiser"
_PAGERDUTY_ACTIONS = {
    NotificationStatus.FIRING: "trigger",
    NotificationStatus.ACKNOWLEDGED: "acknowledge",
    NotificationStatus.RESOLVED: "resolve",
}
_PAGERDUTY_SUMMARY_MAX = 1024
_PAGERDUTY_DEDUP_MAX = 255  # Events API v2 refuses a longer dedup_key


def pagerduty(n: Notification, routing_key: str) -> dict[str, object]:
    """A PagerDuty Events API v2 event: trigger while firing, acknowledge once acknowledged,
    resolve once resolved (the last two name the incident by its dedup_key alone)."""
    event: dict[str, object] = {
        "routing_key": routing_key,
        "event_action": _PAGERDUTY_ACTIONS[n.status],
        "dedup_key": _dedup_key(n.key),
    }
    if not shared.is_firing(n):
        return event
    payload: dict[str, object] = {
        "summary": shared.fit(n.title, _PAGERDUTY_SUMMARY_MAX),
        "source": PAGERDUTY_SOURCE,
        "severity": PAGERDUTY_SEVERITY[n.severity],
        "component": n.component,
        "group": n.component,
        "class": n.error_type,
        "custom_details": {
            "count": n.count,
            "held_back": n.held_back,
            "examples": [asdict(e) for e in shared.shown(n)],
        },
    }
    payload["timestamp"] = n.first_at
    event["payload"] = payload
    links = [
        {"href": web, "text": label}
        for label, url in shared.links(n)
        if (web := shared.web_url(url))
    ]
    if links:
        event["links"] = links
    return event


def _dedup_key(key: str) -> str:
    """The group key, or for one PagerDuty would refuse as too long, its prefix and a digest
    (the same for the trigger and the resolve, so they still pair)."""
    if len(key) <= _PAGERDUTY_DEDUP_MAX:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{key[: _PAGERDUTY_DEDUP_MAX - len(digest) - 1]}#{digest}"
