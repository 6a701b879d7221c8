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
import socket
import ssl
import urllib.error
from collections.abc import Callable
from typing import Any, TypeAlias

from pydantic_core import ValidationError as PydanticValidationError
from redis import exceptions as redis_exceptions

from resilience.errors import (
    AlchemiserError,
    ConfigurationError,
    DatabaseError,
    FileOperationError,
    RateLimitError,
    SecurityError,
    ValidationError,
)
from resilience.policy.domain import ClassifierDomain, Component
from resilience.policy.http_facts import (
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


# --- the domain --------------------------------------------------------------------------------


class _DefaultRules:
    """The default rules, reading the families and body rules of one domain."""

    __slots__ = ("_domain", "_network_roots")

    def __init__(self, domain: ClassifierDomain) -> None:
        self._domain = domain
        self._network_roots = _NETWORK_ROOTS | domain.network_packages

    def probe(self, exc: BaseException, component: Component) -> AlchemiserError | None:
        """HTTP status first, then the identity of an HTTP client library's exception."""
        if not isinstance(exc, Exception):
            return None
        status = http_status(exc)
        if status is not None and status >= 400:
            return self._from_status(exc, status, component)
        if isinstance(exc, json.JSONDecodeError):
            return _build(self._domain.families(component).garbled, exc)
        return self._from_client_library(exc, component)

    def transient(self, exc: BaseException, component: Component) -> AlchemiserError | None:
        return _build(self._domain.families(component).transient, exc)

    def garbled(self, exc: BaseException, component: Component) -> AlchemiserError | None:
        return _build(self._domain.families(component).garbled, exc)

    def os_error(self, exc: BaseException, component: Component) -> AlchemiserError | None:
        if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
            return self.transient(exc, component)
        return _build(FileOperationError, exc)

    def _from_body(
        self, exc: BaseException, status: int, component: Component
    ) -> type[AlchemiserError] | None:
        rules = [r for r in self._domain.body_rules if r.status == status]
        if not rules:
            return None
        body = body_text(exc)
        for rule in rules:
            if rule.matches(status, body, component):
                return rule.error
        return None

    def _from_status(
        self, exc: BaseException, status: int, component: Component
    ) -> AlchemiserError:
        families = self._domain.families(component)
        wait_s: float | None = None
        cls = self._from_body(exc, status, component)
        if cls is not None:
            return _build(cls, exc)
        if status == 429:
            cls, wait_s = RateLimitError, retry_after_s(exc)
        elif status == 408 or status >= 500:
            cls, wait_s = families.transient, retry_after_s(exc, rate_limited=False)
        elif status == 403:
            cls = SecurityError
        else:
            cls = _STATUS_CLASSES.get(status) or families.refused
        return _build(cls, exc, retry_after_s=wait_s)

    def _from_client_library(
        self, exc: BaseException, component: Component
    ) -> AlchemiserError | None:
        roots = self._network_roots
        classes = [cls for cls in type(exc).__mro__ if cls.__module__.split(".")[0] in roots]
        if not classes:
            return None
        families = self._domain.families(component)
        for cls in classes:  # leaf first: requests' ConnectTimeout is a Timeout before anything
            name = cls.__name__
            if name in _CONFIG_NAMES:
                return _build(ConfigurationError, exc)
            if name in _BUG_NAMES:
                return _build(AlchemiserError, exc)
            if name in _GARBLED_NAMES:
                return _build(families.garbled, exc)
            if name.endswith(_TIMEOUT_SUFFIXES):
                return _build(families.transient, exc)
        # Anything else an HTTP client raises without a status is trouble on the wire.
        return _build(families.transient, exc)


_STATUS_CLASSES: dict[int, type[AlchemiserError]] = {400: ValidationError, 401: SecurityError}


# --- default rules ---------------------------------------------------------------------------


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


def _redis(exc: BaseException, component: Component) -> AlchemiserError | None:
    if isinstance(exc, _REDIS_AUTH):  # wrong password or ACL: retrying cannot fix it
        return _build(SecurityError, exc)
    if isinstance(exc, redis_exceptions.DataError):  # the client passed a bad value
        return _build(ValidationError, exc)
    return _build(DatabaseError, exc)


def _default_rules(
    domain: _DefaultRules,
) -> tuple[tuple[type[BaseException], ClassifierRule], ...]:
    return (
        (TimeoutError, domain.transient),  # also socket.timeout, asyncio and futures ones
        (ConnectionError, domain.transient),
        (socket.gaierror, domain.transient),
        (socket.herror, domain.transient),
        (urllib.error.URLError, domain.transient),  # HTTPError has a status: the probe takes it
        (http.client.HTTPException, domain.transient),
        (asyncio.IncompleteReadError, domain.transient),
        (ssl.SSLError, domain.transient),
        (ssl.SSLCertVerificationError, _security),
        (PermissionError, _security),
        (OSError, domain.os_error),
        (json.JSONDecodeError, domain.garbled),
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

    def classify(self, exc: BaseException, *, component: Component = "default") -> AlchemiserError:
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


def default_classifier(domain: ClassifierDomain | None = None) -> Classifier:
    """A fresh :class:`Classifier` holding the default rules (see the module docstring), with
    ``domain``'s families, body rules and client packages (none: generic families)."""
    rules = _DefaultRules(domain or ClassifierDomain())
    defaults = _default_rules(rules)
    classifier = Classifier()
    classifier.register(BaseException, rules.probe)
    for exc_type, rule in defaults:
        classifier.register(exc_type, rule)
    # Client libraries subclass built-ins (requests' errors are OSErrors, urllib's HTTPError is
    # a URLError): let the HTTP/transport probe speak before each built-in rule.
    for exc_type in dict.fromkeys(exc_type for exc_type, _ in defaults):
        classifier.register(exc_type, rules.probe, first=True)
    return classifier
