"""Error messages as templates: the parts that change from one occurrence to the next (numbers,
ids, quoted values, and what an application registers, such as ticker symbols) masked, so
"same error, other order id" is one template."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["DEFAULT_MASKS", "TEMPLATE_LIMIT", "MessageTemplater"]

TEMPLATE_LIMIT = 200

# Most specific first: a UUID is not three numbers.
DEFAULT_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    # An identifier with a digit in it (alc-123-abc, ord_9f2e, 0x1f): an id, not a word.
    (re.compile(r"\b(?=[\w.-]*\d)[A-Za-z][\w.-]*[\w]\b|\b0x[0-9a-fA-F]+\b"), "<id>"),
    (re.compile(r"[-+]?\d+(?:[.,]\d+)*"), "<n>"),
)


class MessageTemplater:
    """Turns messages into templates with the default masks and an application's own."""

    def __init__(self, extra: Iterable[tuple[str, str]] = ()) -> None:
        # The application's masks run first: they know what its words mean.
        self._masks = (
            *((re.compile(pattern), replacement) for pattern, replacement in extra),
            *DEFAULT_MASKS,
        )

    def template(self, message: str) -> str:
        """``message`` with its variable parts masked, whitespace collapsed, bounded."""
        text = message
        for pattern, replacement in self._masks:
            text = pattern.sub(replacement, text)
        return " ".join(text.split())[:TEMPLATE_LIMIT]
