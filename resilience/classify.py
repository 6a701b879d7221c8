"""Map foreign exceptions (HTTP clients, sockets, Redis, parsers) into the Alchemiser hierarchy.

A :class:`Classifier` holds rules registered per exception type. For an exception it walks the
type's MRO, most specific class first, and tries that class's rules in order; the first rule
that returns an error wins, a rule returning ``None`` falls through to the next candidate. An
exception no rule claims becomes a plain :class:`~resilience.errors.AlchemiserError`, which its
policy never retries.

HTTP client libraries are recognised by duck typing (status, headers and body attributes, the
class name and module of the exception), so none of them is imported here. Many of them subclass
built-ins (every ``requests`` error is an ``OSError``), so in :func:`default_classifier` the
HTTP/transport probe runs before the built-in rule of each type that has one.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import json
import logging
import re
import socket
import ssl
import urllib.error
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

from pydantic_core import ValidationError as PydanticValidationError
from redis import exceptions as redis_exceptions

from resilience.errors import (
    AlchemiserError,
    ConfigurationError,
    DatabaseError,
    DataProviderError,
    DuplicateOrderError,
    FileOperationError,
    InsufficientFundsError,
    MarketDataError,
    OrderExecutionError,
    PositionValidationError,
    RateLimitError,
    SecurityError,
    TradingClientError,
    ValidationError,
)
from resilience.http_facts import (
    body_text,
    http_status,
    parse_retry_after,
    retry_after_s,
    safe_str,
)

__all__ = [
    "Classifier",
    "ClassifierRule",
    "Component",
    "default_classifier",
    "is_timeout",
    "parse_retry_after",
    "pydantic_problems",
]

Component: TypeAlias = Literal["trading", "market_data"]
ClassifierRule: TypeAlias = Callable[[BaseException, Component], AlchemiserError | None]

_log = logging.getLogger(__name__)

_MAX_MESSAGE_CHARS = 500

# Top-level packages of HTTP and streaming clients whose errors mean "the remote side failed".
_NETWORK_ROOTS = frozenset(
    {
        "requests",
        "urllib3",
        "httpx",
        "httpcore",
        "h11",
        "h2",
        "aiohttp",
        "websocket",
        "websockets",
        "alpaca",
    }
)
_CONFIG_NAMES = frozenset(
    {
        "InvalidURL",
        "InvalidSchema",
        "MissingSchema",
        "URLRequired",
        "InvalidProxyURL",
        "UnsupportedProtocol",
        "LocationValueError",
        "LocationParseError",
        "URLSchemeUnknown",
        "ProxySchemeUnknown",
        "ProxySchemeUnsupported",
    }
)
_BUG_NAMES = frozenset(
    {
        "LocalProtocolError",
        "InvalidHeader",
        "CookieConflict",
        "StreamError",
        "StreamConsumed",
        "StreamConsumedError",
        "StreamClosed",
        "ResponseNotRead",
        "RequestNotRead",
        "UnrewindableBodyError",
        "TooManyRedirects",
    }
)
_GARBLED_NAMES = frozenset(
    {"JSONDecodeError", "InvalidJSONError", "DecodingError", "ContentDecodingError", "DecodeError"}
)
_TIMEOUT_SUFFIXES = ("Timeout", "TimeoutError", "TimeoutException")


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc``, or what caused it, is a timeout (builtin, socket, requests, httpx...)."""
    seen: BaseException | None = exc
    for _ in range(8):  # bounded: exception chains can be cyclic
        if seen is None:
            return False
        if isinstance(seen, TimeoutError) or type(seen).__name__.endswith(_TIMEOUT_SUFFIXES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ECONNABORTED",
        "ECONNRESET",
        "ECONNREFUSED",
        "ETIMEDOUT",
        "EPIPE",
    )
    if hasattr(errno, name)
)

_REDIS_AUTH = (
    redis_exceptions.AuthenticationError,
    redis_exceptions.AuthorizationError,
    redis_exceptions.AuthenticationWrongNumberOfArgsError,
    redis_exceptions.NoPermissionError,
)

_INSUFFICIENT_RE = re.compile(
    r"insufficient[\s_]+(buying|funds?|balance|cash|margin|equity|qty|quantity|shares|position|day)"
)
_REFUSED_ORDER_RE = re.compile(
    r"wash[\s_-]+trade|pattern[\s_]+day[\s_]+trad|not[\s_]+tradable|not[\s_]+shortable"
)
_DUPLICATE_RE = re.compile(
    r"client[\s_]?order[\s_]?id\W{0,4}\w*\W{0,4}(must[\s_]+be[\s_]+unique|unique|duplicate|"
    r"already)|duplicate[\s_]+(client[\s_]+)?order"
)
_POSITION_RE = re.compile(
    r"insufficient[\s_]+(qty|quantity|position|shares)|\bposition\b|qty[\s_]+available"
)


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _message(exc: BaseException) -> str:
    text = safe_str(exc)
    message = f"{type(exc).__qualname__}: {text}" if text else type(exc).__qualname__
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 3] + "..."
    return message


def _build(cls: type[AlchemiserError], exc: BaseException, **kwargs: Any) -> AlchemiserError:
    return cls(_message(exc), **kwargs)


# --- families --------------------------------------------------------------------------------


def _transient_family(component: Component) -> type[AlchemiserError]:
    return MarketDataError if component == "market_data" else TradingClientError


def _garbled_family(component: Component) -> type[AlchemiserError]:
    return DataProviderError if component == "market_data" else TradingClientError


def _refused_family(component: Component) -> type[AlchemiserError]:
    return ValidationError if component == "market_data" else OrderExecutionError


_STATUS_CLASSES: dict[int, type[AlchemiserError]] = {400: ValidationError, 401: SecurityError}


def _forbidden_class(exc: BaseException, component: Component) -> type[AlchemiserError]:
    body = body_text(exc)
    if _INSUFFICIENT_RE.search(body):
        return InsufficientFundsError
    if component == "trading" and _REFUSED_ORDER_RE.search(body):
        return OrderExecutionError  # a refused order, not an intrusion: do not page security
    return SecurityError


def _unprocessable_class(exc: BaseException, component: Component) -> type[AlchemiserError]:
    body = body_text(exc)
    if _DUPLICATE_RE.search(body):
        return DuplicateOrderError
    if _POSITION_RE.search(body):
        return PositionValidationError
    return _refused_family(component)


def _from_status(exc: BaseException, status: int, component: Component) -> AlchemiserError:
    wait_s: float | None = None
    cls: type[AlchemiserError]
    if status == 429:
        cls, wait_s = RateLimitError, retry_after_s(exc)
    elif status == 408 or status >= 500:
        cls, wait_s = _transient_family(component), retry_after_s(exc, rate_limited=False)
    elif status == 403:
        cls = _forbidden_class(exc, component)
    elif status == 422:
        cls = _unprocessable_class(exc, component)
    else:
        cls = _STATUS_CLASSES.get(status) or _refused_family(component)
    return _build(cls, exc, retry_after_s=wait_s)


def _from_client_library(exc: BaseException, component: Component) -> AlchemiserError | None:
    classes = [cls for cls in type(exc).__mro__ if cls.__module__.split(".")[0] in _NETWORK_ROOTS]
    if not classes:
        return None
    for cls in classes:  # leaf first: requests' ConnectTimeout is a Timeout before anything
        name = cls.__name__
        if name in _CONFIG_NAMES:
            return _build(ConfigurationError, exc)
        if name in _BUG_NAMES:
            return _build(AlchemiserError, exc)
        if name in _GARBLED_NAMES:
            return _build(_garbled_family(component), exc)
        if name.endswith(_TIMEOUT_SUFFIXES):
            return _build(_transient_family(component), exc)
    # Anything else an HTTP client raises without a status is trouble on the wire.
    return _build(_transient_family(component), exc)


# --- default rules ---------------------------------------------------------------------------


def _probe(exc: BaseException, component: Component) -> AlchemiserError | None:
    """HTTP status first, then the identity of an HTTP client library's exception."""
    if not isinstance(exc, Exception):
        return None
    status = http_status(exc)
    if status is not None and status >= 400:
        return _from_status(exc, status, component)
    if isinstance(exc, json.JSONDecodeError):
        return _build(_garbled_family(component), exc)
    return _from_client_library(exc, component)


def _transient(exc: BaseException, component: Component) -> AlchemiserError | None:
    return _build(_transient_family(component), exc)


def _garbled(exc: BaseException, component: Component) -> AlchemiserError | None:
    return _build(_garbled_family(component), exc)


def _security(exc: BaseException, component: Component) -> AlchemiserError | None:
    return _build(SecurityError, exc)


def _validation(exc: BaseException, component: Component) -> AlchemiserError | None:
    return _build(ValidationError, exc)


def pydantic_problems(invalid: PydanticValidationError) -> str:
    """Where and what each problem of ``invalid`` is (``qty: Input should be ...; ...``), never
    the input: pydantic's own text echoes every input value, a mistyped secret field included,
    where the scrubber cannot tell it is a secret."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(input)'}: {error['msg']}"
        for error in invalid.errors(include_url=False, include_context=False, include_input=False)
    )


def _pydantic_validation(exc: BaseException, component: Component) -> AlchemiserError | None:
    assert isinstance(exc, PydanticValidationError)
    count = exc.error_count()
    noun = "error" if count == 1 else "errors"
    problems = pydantic_problems(exc)
    message = f"ValidationError: {count} validation {noun} for {exc.title}: {problems}"
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 3] + "..."
    return ValidationError(message)


def _os_error(exc: BaseException, component: Component) -> AlchemiserError | None:
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return _build(_transient_family(component), exc)
    return _build(FileOperationError, exc)


def _redis(exc: BaseException, component: Component) -> AlchemiserError | None:
    if isinstance(exc, _REDIS_AUTH):  # wrong password or ACL: retrying cannot fix it
        return _build(SecurityError, exc)
    if isinstance(exc, redis_exceptions.DataError):  # the client passed a bad value
        return _build(ValidationError, exc)
    return _build(DatabaseError, exc)


_DEFAULT_RULES: tuple[tuple[type[BaseException], ClassifierRule], ...] = (
    (TimeoutError, _transient),  # also socket.timeout, asyncio and concurrent.futures ones
    (ConnectionError, _transient),
    (socket.gaierror, _transient),
    (socket.herror, _transient),
    (urllib.error.URLError, _transient),  # HTTPError carries a status: the probe takes it
    (http.client.HTTPException, _transient),
    (asyncio.IncompleteReadError, _transient),
    (ssl.SSLError, _transient),
    (ssl.SSLCertVerificationError, _security),
    (PermissionError, _security),
    (OSError, _os_error),
    (json.JSONDecodeError, _garbled),
    (PydanticValidationError, _pydantic_validation),
    (ValueError, _validation),
    (ArithmeticError, _validation),
    (redis_exceptions.RedisError, _redis),
)


class Classifier:
    """Turns any exception into an :class:`AlchemiserError` by rules registered per type."""

    __slots__ = ("_rules",)

    def __init__(self) -> None:
        self._rules: dict[type[BaseException], list[ClassifierRule]] = {}

    def register(
        self, exc_type: type[BaseException], rule: ClassifierRule, *, first: bool = False
    ) -> None:
        """Add ``rule`` for ``exc_type`` and its subclasses, after (or with ``first``, before)
        the rules already registered for that exact type."""
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise TypeError(f"exc_type must be an exception class, got {exc_type!r}")
        if not callable(rule):
            raise TypeError(f"rule must be callable, got {rule!r}")
        rules = self._rules.setdefault(exc_type, [])
        if first:
            rules.insert(0, rule)
        else:
            rules.append(rule)

    def classify(self, exc: BaseException, *, component: Component = "trading") -> AlchemiserError:
        """The hierarchy error for ``exc``; never raises.

        An :class:`AlchemiserError` comes back unchanged. Otherwise the result has ``exc`` as
        ``__cause__`` and ``details["foreign_type"]`` (plus ``details["http_status"]`` when the
        exception carries one); an exception no rule claims becomes a plain ``AlchemiserError``.
        """
        if isinstance(exc, AlchemiserError):
            return exc
        result = self._apply_rules(exc, component)
        if result is None:
            try:
                result = _build(AlchemiserError, exc)
            except Exception:
                result = AlchemiserError("unclassifiable exception")
        try:
            result.__cause__ = exc
            result.__suppress_context__ = True
            result.details["foreign_type"] = _qualified_name(type(exc))
            status = http_status(exc)
            if status is not None:
                result.details.setdefault("http_status", status)
        except Exception:
            _log.warning("could not annotate the classification of %r", type(exc), exc_info=True)
        return result

    def _apply_rules(self, exc: BaseException, component: Component) -> AlchemiserError | None:
        for cls in type(exc).__mro__:
            for rule in tuple(self._rules.get(cls, ())):
                try:
                    candidate = rule(exc, component)
                except Exception:
                    _log.warning(
                        "classifier rule %r raised on %s; trying the next rule",
                        rule,
                        cls.__qualname__,
                        exc_info=True,
                    )
                    continue
                if isinstance(candidate, AlchemiserError):
                    return candidate
                if candidate is not None:
                    _log.warning("classifier rule %r returned %r; ignored", rule, candidate)
        return None


def default_classifier() -> Classifier:
    """A fresh :class:`Classifier` holding the default rules (see the module docstring)."""
    classifier = Classifier()
    classifier.register(BaseException, _probe)
    for exc_type, rule in _DEFAULT_RULES:
        classifier.register(exc_type, rule)
    # Client libraries subclass built-ins (requests' errors are OSErrors, urllib's HTTPError is
    # a URLError): let the HTTP/transport probe speak before each built-in rule.
    for exc_type in dict.fromkeys(exc_type for exc_type, _ in _DEFAULT_RULES):
        classifier.register(exc_type, _probe, first=True)
    return classifier
