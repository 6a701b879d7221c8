"""A Slack incoming-webhook payload (Block Kit), escaped for mrkdwn."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from resilience.notify.model import Example, Notification
from resilience.notify.render import facts as shared

SLACK_HEADER_MAX_CHARS = 150

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
        {"type": "section", "fields": [_slack_field(k, v) for k, v in shared.summary_facts(n)]},
    ]
    if not shared.is_firing(n):
        blocks.append(_slack_section(_slack_fit(shared.notice_line(n), _SLACK_TEXT_MAX)))
    # Room for the blocks around the examples (at most six), whatever MAX_EXAMPLES becomes.
    blocks += [_slack_section(_slack_example(e)) for e in shared.shown(n)[: _SLACK_MAX_BLOCKS - 6]]
    maybe_notes = (shared.more_line(n), shared.held_back_line(n) if n.held_back > 0 else None)
    notes = [note for note in maybe_notes if note]
    if notes:
        elements = [_slack_mrkdwn(_slack_fit(note, _SLACK_TEXT_MAX)) for note in notes]
        blocks.append({"type": "context", "elements": elements})
    if links := shared.links(n):
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
    used = len(shared.ELLIPSIS)
    for ch in text:
        piece = escapes.get(ch, ch)
        if used + len(piece) > limit:
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces) + shared.ELLIPSIS


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
        f"{label}: {_slack_fit(value, _SLACK_FACT_MAX)}" for label, value in shared.example_facts(e)
    )
    room = _SLACK_TEXT_MAX - len(facts) - 1
    return f"{_slack_fit(e.message, room)}\n{facts}"


def _slack_link(label: str, url: str) -> str:
    """A mrkdwn link when ``url`` is a web URL Slack can carry, else the URL as text."""
    web = shared.web_url(url)
    escaped = _slack_escape(web, _SLACK_ESCAPES) if web else ""
    if web and "|" not in web and len(escaped) <= _SLACK_LINK_MAX:
        return f"<{escaped}|{label}>"
    return f"{label}: {_slack_fit(url, _SLACK_LINK_MAX)}"
