"""Secret scrubbing for everything that leaves a process: logs, dead letters, notifications.

Three nets, because each alone misses things: keys whose names say "secret" (recursively, at
any depth), known secret values (the process's own credentials, matched literally anywhere in
any string), and patterns of well-known secret shapes (credentials in URLs, bearer tokens,
Slack webhook paths, Alpaca keys, values given to secret-named keys in text). A pattern removes
values, never words: in pydantic's "api_key: Extra inputs are not permitted" the key has no
value, and the text stays as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FILTERED", "MAX_TEXT_CHARS", "SECRET_KEY_PARTS", "Scrubber"]

FILTERED = "[Filtered]"

SECRET_KEY_PARTS: tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "authorization",
    "auth",
    "cookie",
    "session_key",
    "credential",
    "signature",
    "dsn",
    "webhook",
)

# The names of secret assignments in text (password=..., "api_key": ...), up to 40 more name
# characters (broker_password, api_key_id).
_SECRET_NAME = (
    r"(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|auth)"
    r"[\w-]{0,40}+"
)

# What gives a secret name a quoted value: a colon (after the name's closing quote, if any) or
# an equals sign, then the opening quote of a string or of a bytes literal.
_QUOTED_SEP = r"(?:['\"]?\s*:|\s*=)\s*b?"

# Every pattern starts at a literal or behind a lookbehind and its repeats are bounded, so
# scrubbing is linear in the text (the naive forms are quadratic on a 10 MB string).
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host -> keep the user, drop the password
    (
        re.compile(
            r"(?<![a-zA-Z0-9+.-])(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]{0,30}+://[^\s:/@]{0,256}+:)[^\s@/]{1,512}+(?=@)"
        ),
        r"\g<pre>[Filtered]",
    ),
    # A scheme and its credentials; a plain lowercase word after it is prose ("token mismatch"),
    # and a secret name given a value is left to the rules below ("token private_key=x")
    (
        re.compile(
            r"(?i)\b(bearer|basic|token)\s+(?-i:(?![a-z]++(?![A-Za-z0-9._~+/=-])))"
            rf"(?!{_SECRET_NAME}['\"]?\s*[=:])[A-Za-z0-9._~+/=-]{{8,}}"
        ),
        r"\1 [Filtered]",
    ),
    (
        re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),
        "https://hooks.slack.com/services/[Filtered]",
    ),
    (re.compile(r"\b(?:PK|AK|CK)[A-Z0-9]{16,}\b"), FILTERED),
    (re.compile(r"(?i)\b(?:sk|xox[abpr])[-_][A-Za-z0-9-]{10,}\b"), FILTERED),
    # Stripe (sk_live_, rk_test_...), GitHub (ghp_, github_pat_...), Slack (xoxb-, xapp-...)
    # tokens and AWS access key ids, whole: their prefixes never start a word of prose.
    (
        re.compile(
            r"(?<![A-Za-z0-9])(?:"
            r"[spr]k_(?:live|test)_[A-Za-z0-9]{8,255}+"
            r"|gh[pousr]_[A-Za-z0-9]{20,255}+"
            r"|github_pat_[A-Za-z0-9_]{20,255}+"
            r"|(?:xox[abposr]|xapp)-[A-Za-z0-9-]{8,255}+"
            r"|A(?:KI|SI)A[A-Z0-9]{16}(?![A-Za-z0-9])"
            r")"
        ),
        FILTERED,
    ),
    # A quoted value, whole, given by a colon or an equals sign: {"api_key": "abc"},
    # {'password': b'two words'}, Conn(password='hunter 2'), token="x"
    (
        re.compile(
            rf"(?i)(?P<name>{_SECRET_NAME})(?P<sep>{_QUOTED_SEP}\")(?:[^\"\\\n]|\\.){{1,512}}+"
        ),
        r"\g<name>\g<sep>[Filtered]",
    ),
    (
        re.compile(
            rf"(?i)(?P<name>{_SECRET_NAME})(?P<sep>{_QUOTED_SEP}')(?:[^'\\\n]|\\.){{1,512}}+"
        ),
        r"\g<name>\g<sep>[Filtered]",
    ),
    # A quoted key's bare value (a number, a name) in a repr or JSON: {'secret': 12345}
    (
        re.compile(
            rf"(?i)(?P<name>{_SECRET_NAME})(?P<sep>['\"]\s*:\s*)"
            r"(?!(?:none|null|true|false)\b|b['\"])[\w.+/=-]{1,512}+"
        ),
        r"\g<name>\g<sep>[Filtered]",
    ),
    # key=value always assigns: api_key=abc123 (a quoted one is filtered above)
    (
        re.compile(rf"(?i)(?P<name>{_SECRET_NAME})(?P<sep>\s*=\s*)(?!b['\"])[^\s&,;\"']+"),
        r"\g<name>\g<sep>[Filtered]",
    ),
    # key: value, where the value may follow an auth scheme (Authorization: Bearer xyz). Words
    # after the colon are prose, not a value ("api_key: Extra inputs are not permitted" is
    # pydantic saying the field is not allowed): a value is one token that is not a plain
    # word, or a plain word that is not followed by another one.
    (
        re.compile(
            rf"(?i)(?P<name>{_SECRET_NAME})(?P<sep>\s*:\s*(?:(?:bearer|basic|digest|token)[ \t]+)?)"
            r"(?![a-z]++[ \t]++[a-z]++(?![\w=:-]))[^\s&,;\"']+"
        ),
        r"\g<name>\g<sep>[Filtered]",
    ),
    # pydantic's errors: the field's name on one line, its input on the next
    (
        re.compile(
            rf"(?i)(?P<head>{_SECRET_NAME}\n[^\n]{{0,200}}?input_value=)"
            r"(?P<value>'[^'\n]{0,512}'|[^,\]\n]{1,512})"
        ),
        r"\g<head>[Filtered]",
    ),
)
# Longer text is cut before scrubbing: nothing this long belongs in a log or a dead letter.
MAX_TEXT_CHARS = 100_000

_MIN_SECRET_LEN = 4


class Scrubber:
    """Removes secrets from JSON-shaped values; never mutates its input."""

    def __init__(
        self,
        secret_values: Iterable[str] = (),
        *,
        extra_key_parts: Iterable[str] = (),
    ) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._values = sorted(
            {v for v in secret_values if v and len(v) >= _MIN_SECRET_LEN}, key=len, reverse=True
        )
        self._key_parts = tuple(p.lower() for p in (*SECRET_KEY_PARTS, *extra_key_parts))

    def with_values(self, more: Iterable[str]) -> Scrubber:
        """A scrubber that also knows ``more`` secret values."""
        scrubber = Scrubber((*self._values, *more))
        scrubber._key_parts = self._key_parts
        return scrubber

    def is_secret_key(self, key: str) -> bool:
        """Whether a mapping key names a secret (case-insensitive substring match)."""
        lowered = key.lower().replace("-", "_")
        return any(part in lowered for part in self._key_parts)

    def text(self, value: str) -> str:
        """``value`` (cut to ``MAX_TEXT_CHARS``) with known secrets and secret shapes replaced."""
        # Known secrets go first, on the whole text: a cut must not split one and leak its head.
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, FILTERED)
        if len(value) > MAX_TEXT_CHARS:
            cut = len(value) - MAX_TEXT_CHARS
            value = f"{value[:MAX_TEXT_CHARS]}...[truncated {cut} characters]"
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def __call__(self, value: Any) -> Any:
        """A scrubbed deep copy of a JSON-shaped value (dicts, lists, tuples, scalars)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            scrubbed: dict[str, Any] = {}
            for k, v in value.items():
                key = self.text(str(k))
                # Keys that differ only in a secret would collide: keep every entry.
                unique, n = key, 1
                while unique in scrubbed:
                    n += 1
                    unique = f"{key}#{n}"
                secret = self.is_secret_key(str(k)) and v not in (None, "")
                scrubbed[unique] = FILTERED if secret else self(v)
            return scrubbed
        if isinstance(value, list | tuple | set | frozenset):
            return [self(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.text(repr(value))
