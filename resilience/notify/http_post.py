"""One HTTP POST to a notification receiver, with a timeout, answered as a :class:`Delivery`.

Shared by the channels that speak HTTP (Slack, generic webhook, SMS, PagerDuty). Their URLs are
often their credentials (a Slack incoming webhook's is), so a URL appears in no detail and no
log: a failure is described by its status code, or by the exception's class name, never by the
exception's text (requests puts the URL in it). Redirects are not followed: a receiver that
moved is a configuration to fix, not something to resend a notification to blindly.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests

from resilience.errors import ConfigurationError
from resilience.notify.channel import Delivery, FailureReason

__all__ = ["check_http_url", "check_timeout", "parse_retry_after", "post"]

# Slack and others answer errors with a short code ("invalid_payload", "no_service"): safe and
# useful in a delivery's detail. Anything else in a body is left out.
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")
_NEVER_SENDABLE = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
)


def post(
    session: requests.Session,
    url: str,
    *,
    channel: str,
    timeout_s: float,
    json_body: Mapping[str, object] | None = None,
    form: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    wall: Callable[[], float] = time.time,
) -> Delivery:
    """POST ``json_body`` (or ``form``) to ``url``; never raises for a failed send."""
    started = clock()
    send_headers = dict(headers or {})
    data: Mapping[str, str] | bytes | None = form
    if json_body is not None:
        try:
            data = json.dumps(json_body, allow_nan=False).encode()
        except (TypeError, ValueError) as unserialisable:
            # A defect in the payload: sending it again would fail the same way.
            return Delivery.failed(
                channel,
                FailureReason.CLIENT_ERROR,
                f"payload is not JSON: {type(unserialisable).__name__}",
                0.0,
            )
        send_headers.setdefault("Content-Type", "application/json")
    try:
        # stream: the status is the answer; a body that stalls after it does not undo it.
        response = session.post(
            url,
            data=data,
            auth=auth,
            headers=send_headers,
            timeout=timeout_s,
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout as timed_out:
        return Delivery.failed(
            channel, FailureReason.TIMEOUT, type(timed_out).__name__, clock() - started
        )
    except (*_NEVER_SENDABLE, UnicodeError) as unsendable:
        # A URL, header or credential HTTP cannot carry: sending again would fail the same way.
        return Delivery.failed(
            channel, FailureReason.CLIENT_ERROR, type(unsendable).__name__, clock() - started
        )
    except requests.RequestException as unreachable:
        return Delivery.failed(
            channel, FailureReason.UNREACHABLE, type(unreachable).__name__, clock() - started
        )
    latency_s = clock() - started
    with response:
        status = response.status_code
        if 200 <= status < 300:
            return Delivery.ok(channel, latency_s)
        detail = f"HTTP {status}"
        code = _error_code(response)
        if code:
            detail = f"{detail} {code}"
        retry_after_s = parse_retry_after(response.headers.get("Retry-After"), wall())
    if status == 429:
        reason = FailureReason.RATE_LIMITED
    elif status == 408:
        reason = FailureReason.TIMEOUT
    elif status >= 500:
        reason = FailureReason.SERVER_ERROR
    else:
        reason = FailureReason.CLIENT_ERROR  # 4xx, and 3xx: a redirect is not followed
    return Delivery.failed(channel, reason, detail, latency_s, retry_after_s)


def check_http_url(channel: str, field_name: str, url: object) -> None:
    """Raise :class:`ConfigurationError` unless ``url`` is an absolute http(s) URL with a host.

    Production receivers are https; http is accepted so tests can use a local receiver. The
    message never holds the URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{channel}: {field_name} is missing")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ConfigurationError(
            f"{channel}: {field_name} must not contain whitespace or control characters"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read for its ValueError on a port out of range
    except ValueError:
        raise ConfigurationError(f"{channel}: {field_name} is not a valid URL") from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise ConfigurationError(f"{channel}: {field_name} must be an https (or http) URL")
    if not parts.hostname:
        raise ConfigurationError(f"{channel}: {field_name} has no host")


def check_timeout(channel: str, timeout_s: object) -> None:
    """Raise :class:`ConfigurationError` unless ``timeout_s`` is a finite number > 0."""
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ConfigurationError(f"{channel}: timeout_s must be seconds > 0, got {timeout_s!r}")


def _error_code(response: requests.Response) -> str | None:
    """The short error code a receiver answered with, if its body is one (read at most 64
    bytes, and nothing if the body stalls)."""
    try:
        head = next(response.iter_content(64), b"")
    except requests.RequestException:
        return None
    code = head.decode("ascii", errors="replace").strip()
    return code if _ERROR_CODE.fullmatch(code) else None


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds, or an HTTP date, RFC 9110);
    None when absent or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now_s, 0.0)
