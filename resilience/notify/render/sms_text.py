"""An SMS: the essentials in one GSM-7 segment."""

from __future__ import annotations

from resilience.notify.model import Notification
from resilience.notify.render import facts as shared

SMS_MAX_CHARS = 160  # one GSM-7 segment

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
    status = n.severity.value.upper() if shared.is_firing(n) else shared.status_word(n)
    times = f" x{n.count}" if n.count > 1 and shared.is_firing(n) else ""
    error_type = _sms_fit(n.error_type, _SMS_ERROR_TYPE_MAX)
    head = _sms_fit(
        f"{status} {error_type}{times} {_sms_fit(where, _SMS_WHERE_MAX)}", _SMS_HEAD_MAX
    )
    if shared.is_resolved(n):
        return _sms_fit(f"{head}: stopped failing", SMS_MAX_CHARS)
    if not shared.is_firing(n):
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
