"""Facts read off a foreign exception by duck typing: HTTP status, headers, body, Retry-After.

HTTP client libraries (requests, httpx, urllib, alpaca-py) are not imported: their errors are
read through the attributes they share (``status_code``/``status``/``code``, ``headers``,
``response``, ``body``). Every accessor survives properties and ``__str__`` that raise.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "body_text",
    "header",
    "http_status",
    "parse_retry_after",
    "retry_after_s",
    "safe_attr",
    "safe_str",
]

_MAX_BODY_CHARS = 4000
_EPOCH_S_MIN = 1e9  # 2001-09-09: smaller "reset" values are delta seconds, not timestamps
_EPOCH_MS_MIN = 1e11  # larger "reset" values are epoch milliseconds
_DELTA_SECONDS_RE = re.compile(r"\d+(\.\d+)?")


# --- safe accessors: foreign objects may raise from properties or __str__ ------------------


def safe_attr(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # a property that raises (alpaca's ``code``, httpx's ``request``)
        return None


def safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__qualname__}>"


def _as_status(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 100 <= value <= 599:
        return int(value)
    return None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, by duck typing; ``None`` when it has none."""
    if not isinstance(exc, Exception):  # SystemExit.code is an exit code, not a status
        return None
    for name in ("status_code", "status", "code"):
        status = _as_status(safe_attr(exc, name))
        if status is not None:
            return status
    response = safe_attr(exc, "response")
    if response is None:
        return None
    for name in ("status_code", "status"):
        status = _as_status(safe_attr(response, name))
        if status is not None:
            return status
    return None


def _lookup_header(headers: object, name: str) -> str | None:
    if headers is None:
        return None
    try:
        getter = getattr(headers, "get", None)
        value = getter(name) if callable(getter) else None
        if value is None and hasattr(headers, "items"):
            wanted = name.lower()
            value = next(
                (v for k, v in headers.items() if isinstance(k, str) and k.lower() == wanted), None
            )
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def header(exc: BaseException, name: str) -> str | None:
    for headers in (safe_attr(exc, "headers"), safe_attr(safe_attr(exc, "response"), "headers")):
        value = _lookup_header(headers, name)
        if value is not None:
            return value
    return None


def body_text(exc: BaseException) -> str:
    """Lower-cased text of the response body, the exception's ``body`` and its message."""
    parts: list[str] = []
    for raw in (
        safe_attr(safe_attr(exc, "response"), "text"),
        safe_attr(exc, "body"),
        safe_str(exc),
    ):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if isinstance(text, str) and text:
            parts.append(text[:_MAX_BODY_CHARS])
    return "\n".join(parts).lower()


# --- Retry-After and rate-limit reset ------------------------------------------------------


def parse_retry_after(
    value: str | float | int | None, *, now_s: float | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3).

    Accepts delta-seconds (``"120"``, leniently ``"1.5"``) and HTTP-dates in the three formats
    RFC 9110 allows; a number is taken as seconds. ``None`` when absent or unparseable; a date in
    the past or a negative number gives ``0.0``, never a negative delay.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if _DELTA_SECONDS_RE.fullmatch(text):
            seconds = float(text)
        else:
            until = _seconds_until_http_date(text, time.time() if now_s is None else now_s)
            if until is None:
                return None
            seconds = until
    else:
        return None
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _seconds_until_http_date(text: str, now_s: float) -> float | None:
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except Exception:  # ValueError, TypeError, IndexError, OverflowError by Python version
        return None
    if moment.tzinfo is None:  # asctime form carries no zone; HTTP dates are always GMT
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() - now_s


def _seconds_until_reset(value: str | None, now_s: float) -> float | None:
    """``X-RateLimit-Reset``: Unix seconds (Alpaca); epoch ms and small deltas also accepted."""
    if value is None:
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(reset):
        return None
    if reset >= _EPOCH_MS_MIN:
        reset /= 1000.0
    if reset >= _EPOCH_S_MIN:
        return max(reset - now_s, 0.0)
    return max(reset, 0.0)


def retry_after_s(exc: BaseException, *, rate_limited: bool = True) -> float | None:
    """How long the server asked to wait, in seconds, if it said.

    After a 429 that is the later of ``Retry-After`` and the rate-limit window's reset (a
    retry before the reset is refused again). Other answers carry the reset on every response
    (Alpaca does) without it meaning "wait": only ``Retry-After`` counts for them.
    """
    now_s = time.time()
    waits = [parse_retry_after(header(exc, "Retry-After"), now_s=now_s)]
    if rate_limited:
        waits += [
            _seconds_until_reset(header(exc, name), now_s)
            for name in ("X-RateLimit-Reset", "RateLimit-Reset")
        ]
    given = [w for w in waits if w is not None]
    return max(given) if given else None
