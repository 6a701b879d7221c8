"""What each channel sends for a :class:`~resilience.notify.model.Notification`: pure functions.

Every renderer shows the same facts (status and severity, error type, component, how many
failed, the first :data:`~resilience.notify.model.MAX_EXAMPLES` examples, how many
notifications the rate limits held back, the runbook and dead-letter links) in its channel's
form and within its channel's limits. Renderers read nothing but the notification: no
settings, no environment, no clock, so what goes out is exactly what the (already scrubbed)
notification holds. Text is escaped for where it lands (HTML, Slack mrkdwn), and only
``http``/``https`` URLs ever become links; any other URL is shown as text.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

from resilience.notify.model import MAX_EXAMPLES, Example, Notification, NotificationStatus
from resilience.policy import ErrorSeverity

__all__ = [
    "PAGERDUTY_SEVERITY",
    "PAGERDUTY_SOURCE",
    "SLACK_HEADER_MAX_CHARS",
    "SMS_MAX_CHARS",
    "WEBHOOK_VERSION",
    "EmailContent",
    "email",
    "pagerduty",
    "slack",
    "sms",
    "webhook",
]

_ELLIPSIS = "…"
WEBHOOK_VERSION = "1"
SMS_MAX_CHARS = 160  # one GSM-7 segment
SLACK_HEADER_MAX_CHARS = 150

PAGERDUTY_SEVERITY: Final[Mapping[ErrorSeverity, str]] = MappingProxyType(
    {
        ErrorSeverity.CRITICAL: "critical",
        ErrorSeverity.HIGH: "error",
        ErrorSeverity.MEDIUM: "warning",
        ErrorSeverity.LOW: "info",
    }
)


# --- shared facts ------------------------------------------------------------------------------


def _shown(n: Notification) -> tuple[Example, ...]:
    """The examples every channel shows (the model already holds at most MAX_EXAMPLES)."""
    return n.examples[:MAX_EXAMPLES]


def _is_resolved(n: Notification) -> bool:
    return n.status is NotificationStatus.RESOLVED


def _is_firing(n: Notification) -> bool:
    return n.status is NotificationStatus.FIRING


def _status_word(n: Notification) -> str:
    return n.status.value.upper()


def _notice_line(n: Notification) -> str:
    """What a resolved or acknowledged notice says (a firing one says nothing of the kind)."""
    if _is_resolved(n):
        return f"Resolved: {n.error_type} in {n.component} has stopped failing."
    return f"Acknowledged: someone is on {n.error_type} in {n.component}; no further escalation."


def _held_back_line(n: Notification) -> str:
    if n.held_back == 1:
        return "1 more notification of this kind was held back by rate limits since the last one."
    return (
        f"{n.held_back} more notifications of this kind were held back by rate limits "
        "since the last one."
    )


def _more_line(n: Notification) -> str | None:
    """Says how many failures the examples leave out, when they leave any out."""
    shown = len(_shown(n))
    return f"Showing the first {shown} of {n.count} failures." if n.count > shown else None


def _example_facts(e: Example) -> list[tuple[str, str]]:
    """An example's facts besides its message, as (label, value), the optional ones when set."""
    facts = [("When", e.occurred_at), ("Operation", e.operation), ("Task", e.task_name)]
    if e.dead_letter_id:
        facts.append(("Dead letter", e.dead_letter_id))
    if e.client_order_id:
        facts.append(("Client order id", e.client_order_id))
    if e.attempts > 0:
        facts.append(("Attempts", str(e.attempts)))
    if e.reason:
        facts.append(("Why final", e.reason))
    facts.append(("Error id", e.error_id))
    return facts


def _links(n: Notification) -> list[tuple[str, str]]:
    """The (label, url) of each link the notification carries, web or not."""
    links = [("Runbook", n.runbook_url), ("Dead letters", n.dead_letter_url)]
    return [(label, url) for label, url in links if url]


def _web_url(url: str) -> str | None:
    """``url`` when it is an absolute http(s) URL safe to link to, else ``None``."""
    # Whitespace and control characters are refused outright: browsers strip them, which is
    # how "java\tscript:" style URLs slip past a scheme check.
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    return url if parts.scheme.lower() in {"http", "https"} and parts.netloc else None


def _fit(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def _one_line(text: str) -> str:
    """``text`` without line breaks or control characters (for headers such as a subject)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


# --- email -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailContent:
    """An email's subject and its plain-text and HTML bodies."""

    subject: str
    text: str
    html: str


def email(n: Notification) -> EmailContent:
    """The email of a notification: the title as subject, a text and an HTML body."""
    return EmailContent(subject=_one_line(n.title), text=_email_text(n), html=_email_html(n))


def _summary_facts(n: Notification) -> list[tuple[str, str]]:
    facts = [
        ("Status", _status_word(n)),
        ("Severity", n.severity.value.upper()),
        ("Error type", n.error_type),
        ("Component", n.component),
    ]
    if n.count > 1:
        facts.append(("Failures", str(n.count)))
    return facts


def _email_text(n: Notification) -> str:
    lines = [n.title, ""]
    if not _is_firing(n):
        lines += [_notice_line(n), ""]
    lines += [f"{label}: {value}" for label, value in _summary_facts(n)]
    if shown := _shown(n):
        lines += ["", "Examples:"]
    for number, example in enumerate(shown, start=1):
        message = example.message.replace("\n", "\n     ")
        lines.append(f"{number:>2}. {message}")
        lines += [f"    {label}: {value}" for label, value in _example_facts(example)]
    if more := _more_line(n):
        lines += ["", more]
    if n.held_back > 0:
        lines += ["", _held_back_line(n)]
    if links := _links(n):
        lines.append("")
        lines += [f"{label}: {url}" for label, url in links]
    return "\n".join(lines) + "\n"


_CELL = "padding:4px 8px;border:1px solid #d0d7de;text-align:left;vertical-align:top"
_HEAD_CELL = _CELL + ";background:#f6f8fa"
_MESSAGE_CELL = _CELL + ";white-space:pre-wrap;font-family:monospace"
_TABLE = "border-collapse:collapse;margin:8px 0"
_EXAMPLE_COLUMNS = (
    "When",
    "Operation",
    "Task",
    "Message",
    "Why final",
    "Dead letter",
    "Client order id",
    "Error id",
)
_BANNER_COLOURS = {
    ErrorSeverity.CRITICAL: "#b60205",
    ErrorSeverity.HIGH: "#d93f0b",
    ErrorSeverity.MEDIUM: "#fbca04",
    ErrorSeverity.LOW: "#0e8a16",
}
_STATUS_COLOURS = {
    NotificationStatus.RESOLVED: "#0e8a16",
    NotificationStatus.ACKNOWLEDGED: "#0969da",
}


def _e(value: object) -> str:
    """HTML-escaped text of ``value`` (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def _email_html(n: Notification) -> str:
    colour = _STATUS_COLOURS.get(n.status) or _BANNER_COLOURS[n.severity]
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(n.title)}</title></head>",
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#24292f">',
        f'<h2 style="margin:0 0 8px;padding:8px;color:#ffffff;background:{colour}">'
        f"{_e(n.title)}</h2>",
    ]
    if not _is_firing(n):
        parts.append(f"<p><strong>{_e(_notice_line(n))}</strong></p>")
    rows = "".join(
        f'<tr><th style="{_HEAD_CELL}">{_e(label)}</th><td style="{_CELL}">{_e(value)}</td></tr>'
        for label, value in _summary_facts(n)
    )
    parts.append(f'<table style="{_TABLE}">{rows}</table>')
    if shown := _shown(n):
        parts.append(_examples_table(shown))
    if more := _more_line(n):
        parts.append(f"<p>{_e(more)}</p>")
    if n.held_back > 0:
        parts.append(f"<p><strong>{_e(_held_back_line(n))}</strong></p>")
    parts += [f"<p>{_html_link(label, url)}</p>" for label, url in _links(n)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _examples_table(examples: tuple[Example, ...]) -> str:
    header = "".join(f'<th style="{_HEAD_CELL}">{_e(c)}</th>' for c in _EXAMPLE_COLUMNS)
    rows = []
    for e in examples:
        task = f"{e.task_name} ({e.attempts} attempts)" if e.attempts > 0 else e.task_name
        cells = (
            f'<td style="{_CELL}">{_e(e.occurred_at)}</td>',
            f'<td style="{_CELL}">{_e(e.operation)}</td>',
            f'<td style="{_CELL}">{_e(task)}</td>',
            f'<td style="{_MESSAGE_CELL}">{_e(e.message)}</td>',
            f'<td style="{_CELL}">{_e(e.reason)}</td>',
            f'<td style="{_CELL}">{_e(e.dead_letter_id or "")}</td>',
            f'<td style="{_CELL}">{_e(e.client_order_id or "")}</td>',
            f'<td style="{_CELL}">{_e(e.error_id)}</td>',
        )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table style="{_TABLE}"><tr>{header}</tr>{"".join(rows)}</table>'


def _html_link(label: str, url: str) -> str:
    """A link when ``url`` is a web URL, else the label and the URL as plain text."""
    if web := _web_url(url):
        return f'<a href="{_e(web)}">{_e(label)}</a>'
    return f"{_e(label)}: {_e(url)}"


# --- Slack -------------------------------------------------------------------------------------

_SLACK_TEXT_MAX = 3000  # a section's text
_SLACK_FIELD_MAX = 2000  # one field of a section
_SLACK_FACT_MAX = 200  # an example's facts besides its message, each
_SLACK_LINK_MAX = 1000  # a link's escaped URL; a longer one is shown as text
_SLACK_MAX_BLOCKS = 50
# Slack's own escapes: what every text needs (plain text and link URLs included).
_SLACK_ESCAPES: Final = MappingProxyType({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# mrkdwn has no escape for its markers (*bold*, _italic_, `code`, ~strike~): a zero-width space
# on each side of one leaves it without the word boundary that would open or close formatting.
_ZWSP = "\u200b"
_SLACK_MRKDWN_ESCAPES: Final = MappingProxyType(
    {**_SLACK_ESCAPES, **{ch: f"{_ZWSP}{ch}{_ZWSP}" for ch in "*_`~"}}
)


def slack(n: Notification) -> dict[str, object]:
    """A Slack incoming-webhook payload: Block Kit ``blocks`` and a ``text`` fallback."""
    failures = "1 failure" if n.count == 1 else f"{n.count} failures"
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": _slack_plain(n.title, SLACK_HEADER_MAX_CHARS)},
        {"type": "section", "fields": [_slack_field(k, v) for k, v in _summary_facts(n)]},
    ]
    if not _is_firing(n):
        blocks.append(_slack_section(_slack_fit(_notice_line(n), _SLACK_TEXT_MAX)))
    # Room for the blocks around the examples (at most six), whatever MAX_EXAMPLES becomes.
    blocks += [_slack_section(_slack_example(e)) for e in _shown(n)[: _SLACK_MAX_BLOCKS - 6]]
    maybe_notes = (_more_line(n), _held_back_line(n) if n.held_back > 0 else None)
    notes = [note for note in maybe_notes if note]
    if notes:
        elements = [_slack_mrkdwn(_slack_fit(note, _SLACK_TEXT_MAX)) for note in notes]
        blocks.append({"type": "context", "elements": elements})
    if links := _links(n):
        text = " · ".join(_slack_link(label, url) for label, url in links)
        blocks.append(_slack_section(text))
    return {"text": _slack_fit(f"{n.title} ({failures})", _SLACK_TEXT_MAX), "blocks": blocks}


def _slack_escape(text: str, escapes: Mapping[str, str] = _SLACK_MRKDWN_ESCAPES) -> str:
    return "".join(escapes.get(ch, ch) for ch in text)


def _slack_fit(text: str, limit: int, escapes: Mapping[str, str] = _SLACK_MRKDWN_ESCAPES) -> str:
    """``text`` escaped for Slack (mrkdwn unless told) in at most ``limit`` characters, never
    cutting an escape."""
    escaped = _slack_escape(text, escapes)
    if len(escaped) <= limit:
        return escaped
    pieces: list[str] = []
    used = len(_ELLIPSIS)
    for ch in text:
        piece = escapes.get(ch, ch)
        if used + len(piece) > limit:
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces) + _ELLIPSIS


def _slack_plain(text: str, limit: int) -> dict[str, object]:
    return {"type": "plain_text", "text": _slack_fit(text, limit, _SLACK_ESCAPES), "emoji": False}


def _slack_mrkdwn(escaped: str) -> dict[str, object]:
    return {"type": "mrkdwn", "text": escaped}


def _slack_section(escaped: str) -> dict[str, object]:
    return {"type": "section", "text": _slack_mrkdwn(escaped)}


def _slack_field(label: str, value: str) -> dict[str, object]:
    head = f"*{label}*\n"
    return _slack_mrkdwn(head + _slack_fit(value, _SLACK_FIELD_MAX - len(head)))


def _slack_example(e: Example) -> str:
    """An example's section text: its facts, each bounded, and as much message as fits."""
    facts = " · ".join(
        f"{label}: {_slack_fit(value, _SLACK_FACT_MAX)}" for label, value in _example_facts(e)
    )
    room = _SLACK_TEXT_MAX - len(facts) - 1
    return f"{_slack_fit(e.message, room)}\n{facts}"


def _slack_link(label: str, url: str) -> str:
    """A mrkdwn link when ``url`` is a web URL Slack can carry, else the URL as text."""
    web = _web_url(url)
    escaped = _slack_escape(web, _SLACK_ESCAPES) if web else ""
    if web and "|" not in web and len(escaped) <= _SLACK_LINK_MAX:
        return f"<{escaped}|{label}>"
    return f"{label}: {_slack_fit(url, _SLACK_LINK_MAX)}"


# --- SMS ---------------------------------------------------------------------------------------

_SMS_ELLIPSIS = "..."  # ASCII, so the message stays one GSM-7 segment
_SMS_HEAD_MAX = 100  # severity, error type, count and where; the message gets the rest
_SMS_ERROR_TYPE_MAX = 48
_SMS_WHERE_MAX = 40
_SMS_HELD_MAX = 30
_SMS_MIN_MESSAGE = 20  # the dead letter id goes only if this much message still fits


def sms(n: Notification) -> str:
    """The essentials in at most :data:`SMS_MAX_CHARS` ASCII characters."""
    first = n.examples[0]
    where = f"{n.component}/{first.operation}"
    status = n.severity.value.upper() if _is_firing(n) else _status_word(n)
    times = f" x{n.count}" if n.count > 1 and _is_firing(n) else ""
    error_type = _sms_fit(n.error_type, _SMS_ERROR_TYPE_MAX)
    head = _sms_fit(
        f"{status} {error_type}{times} {_sms_fit(where, _SMS_WHERE_MAX)}", _SMS_HEAD_MAX
    )
    if _is_resolved(n):
        return _sms_fit(f"{head}: stopped failing", SMS_MAX_CHARS)
    if not _is_firing(n):
        return _sms_fit(f"{head}: acknowledged, no further escalation", SMS_MAX_CHARS)
    held = " " + _sms_fit(f"+{n.held_back} held back", _SMS_HELD_MAX - 1) if n.held_back > 0 else ""
    dead_letter = f" dl:{_ascii(first.dead_letter_id)}" if first.dead_letter_id else ""
    if len(head) + len(dead_letter) + len(held) + 2 + _SMS_MIN_MESSAGE > SMS_MAX_CHARS:
        dead_letter = ""
    room = SMS_MAX_CHARS - len(head) - len(dead_letter) - len(held) - 2  # 2 for ": "
    message = _sms_fit(first.message, room) if first and room > len(_SMS_ELLIPSIS) else ""
    return f"{head}: {message}{dead_letter}{held}" if message else f"{head}{dead_letter}{held}"


def _ascii(text: str) -> str:
    """``text`` on one line in printable ASCII: whitespace runs become one space, the rest "?"."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in " ".join(text.split()))


def _sms_fit(text: str, limit: int) -> str:
    text = _ascii(text)
    if len(text) <= limit:
        return text
    return text[: limit - len(_SMS_ELLIPSIS)] + _SMS_ELLIPSIS


# --- webhook -----------------------------------------------------------------------------------


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
        "examples": [asdict(e) for e in _shown(n)],
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
    if not _is_firing(n):
        return event
    payload: dict[str, object] = {
        "summary": _fit(n.title, _PAGERDUTY_SUMMARY_MAX),
        "source": PAGERDUTY_SOURCE,
        "severity": PAGERDUTY_SEVERITY[n.severity],
        "component": n.component,
        "group": n.component,
        "class": n.error_type,
        "custom_details": {
            "count": n.count,
            "held_back": n.held_back,
            "examples": [asdict(e) for e in _shown(n)],
        },
    }
    payload["timestamp"] = n.first_at
    event["payload"] = payload
    links = [{"href": web, "text": label} for label, url in _links(n) if (web := _web_url(url))]
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
