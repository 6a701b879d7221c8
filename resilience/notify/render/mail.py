"""An email's subject, plain text and HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass

from resilience.notify.model import Example, Notification, NotificationStatus
from resilience.notify.render import facts as shared
from resilience.policy.retry import ErrorSeverity


@dataclass(frozen=True, slots=True)
class EmailContent:
    """An email's subject and its plain-text and HTML bodies."""

    subject: str
    text: str
    html: str


def email(n: Notification) -> EmailContent:
    """The email of a notification: the title as subject, a text and an HTML body."""
    return EmailContent(subject=shared.one_line(n.title), text=_email_text(n), html=_email_html(n))


def _email_text(n: Notification) -> str:
    lines = [n.title, ""]
    if not shared.is_firing(n):
        lines += [shared.notice_line(n), ""]
    lines += [f"{label}: {value}" for label, value in shared.summary_facts(n)]
    if shown := shared.shown(n):
        lines += ["", "Examples:"]
    for number, example in enumerate(shown, start=1):
        message = example.message.replace("\n", "\n     ")
        lines.append(f"{number:>2}. {message}")
        lines += [f"    {label}: {value}" for label, value in shared.example_facts(example)]
    if more := shared.more_line(n):
        lines += ["", more]
    if n.held_back > 0:
        lines += ["", shared.held_back_line(n)]
    if links := shared.links(n):
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
    "Idempotency key",
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
    if not shared.is_firing(n):
        parts.append(f"<p><strong>{_e(shared.notice_line(n))}</strong></p>")
    rows = "".join(
        f'<tr><th style="{_HEAD_CELL}">{_e(label)}</th><td style="{_CELL}">{_e(value)}</td></tr>'
        for label, value in shared.summary_facts(n)
    )
    parts.append(f'<table style="{_TABLE}">{rows}</table>')
    if shown := shared.shown(n):
        parts.append(_examples_table(shown))
    if more := shared.more_line(n):
        parts.append(f"<p>{_e(more)}</p>")
    if n.held_back > 0:
        parts.append(f"<p><strong>{_e(shared.held_back_line(n))}</strong></p>")
    parts += [f"<p>{_html_link(label, url)}</p>" for label, url in shared.links(n)]
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
            f'<td style="{_CELL}">{_e(e.idempotency_key or "")}</td>',
            f'<td style="{_CELL}">{_e(e.error_id)}</td>',
        )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table style="{_TABLE}"><tr>{header}</tr>{"".join(rows)}</table>'


def _html_link(label: str, url: str) -> str:
    """A link when ``url`` is a web URL, else the label and the URL as plain text."""
    if web := shared.web_url(url):
        return f'<a href="{_e(web)}">{_e(label)}</a>'
    return f"{_e(label)}: {_e(url)}"
