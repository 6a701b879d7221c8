"""The URL settings' checks: a scheme the client accepts and the client's own parser's
verdict, refused at start with the setting's variable and never the URL (it may carry a
password)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from kombu.utils.url import parse_url as parse_broker_url
from pydantic_core import PydanticCustomError
from redis.connection import parse_url as parse_redis_url

__all__ = ["check_broker_url", "check_http_url", "check_redis_url", "either", "url_password"]

# What redis-py and kombu accept; anything else fails at the first connection, not at start.
REDIS_SCHEMES = ("redis", "rediss", "unix")
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
HTTP_SCHEMES = ("https", "http")


def either(choices: Iterable[str]) -> str:
    """``a, b or c``."""
    *rest, last = choices
    return f"{', '.join(rest)} or {last}" if rest else last


def _needs_host(url: str) -> None:
    if not urlsplit(url).hostname:
        raise ValueError("it names no host")


def _parse_redis_url(url: str) -> None:
    parse_redis_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    _check_redis_db(url)


def _parse_broker_url(url: str) -> None:
    parse_broker_url(url)
    if url.partition("://")[0].lower() in ("redis", "rediss"):
        _check_redis_db(url)


def _check_redis_db(url: str) -> None:
    """Refuse a database path that is not a number: redis-py reads ``/abc`` as database 0."""
    split = urlsplit(url)
    if split.scheme.lower() in ("redis", "rediss"):
        db = split.path.replace("/", "")
        if db and not (db.isascii() and db.isdigit()):
            raise ValueError(f"its path names database {db!r}, not a number")


def _check(
    url: str, schemes: tuple[str, ...], variable: str, parse: Callable[[str], object]
) -> None:
    """Refuse ``url`` unless its scheme is one of ``schemes`` and ``parse`` (the client's own
    URL parser) accepts it; the message names ``variable`` and never holds the URL, which
    may carry a password."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        found = f"its scheme is {scheme!r}" if sep else "it has no scheme"
        raise PydanticCustomError(
            "url_scheme",
            "{variable} must be a URL starting with {allowed} ({found})",
            {
                "variable": variable,
                "allowed": either(f"{s}://" for s in schemes),
                "found": found,
            },
        )
    try:
        parse(url)
    except ValueError as bad:
        raise PydanticCustomError(
            "url",
            "{variable} is not a valid URL ({reason})",
            {"variable": variable, "reason": str(bad)},
        ) from None


def url_password(url: str) -> str | None:
    """The password in ``url``, if it has one (for the scrubber)."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def check_redis_url(url: str, variable: str) -> None:
    """A Redis URL redis-py accepts, with a numeric database."""
    _check(url, REDIS_SCHEMES, variable, _parse_redis_url)


def check_broker_url(url: str, variable: str) -> None:
    """A Celery broker URL kombu accepts (Redis or AMQP)."""
    _check(url, BROKER_SCHEMES, variable, _parse_broker_url)


def check_http_url(url: str, variable: str) -> None:
    """An http(s) URL that names a host."""
    _check(url, HTTP_SCHEMES, variable, _needs_host)
