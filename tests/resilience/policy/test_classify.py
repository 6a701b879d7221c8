"""Tests of ``resilience.policy.classify``: foreign exceptions mapped into the Alchemiser
hierarchy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import decimal
import email.message
import errno
import http.client
import json
import socket
import ssl
import time
import urllib.error
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pydantic
import pytest
import redis.exceptions as redis_exc
import requests
import urllib3.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.errors import (
    AlchemiserError,
    DatabaseError,
    MarketDataError,
    OrderExecutionError,
    RateLimitError,
    SecurityError,
    TradingClientError,
    ValidationError,
)
from resilience.policy.classify import (
    Classifier,
    Component,
    is_timeout,
    parse_retry_after,
)
from tasks.classification import trading_classifier

NOW_S = 1_700_000_000.0  # 2023-11-14T22:13:20Z, a fixed "now" for pure date arithmetic

# --- builders of real foreign exceptions ------------------------------------------------------


def _raised(fn: Callable[[], object]) -> BaseException:
    """The exception ``fn`` raises (so instances carry whatever their library sets on raise)."""
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("expected an exception")


def _urllib_http_error(status: int, headers: Mapping[str, str] | None = None) -> BaseException:
    message = email.message.Message()
    for name, value in (headers or {}).items():
        message[name] = value
    return urllib.error.HTTPError("https://api.example/v2/orders", status, "err", message, None)


def _requests_response(
    status: int, body: str = "", headers: Mapping[str, str] | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()  # the documented way to fake a body in tests
    response.headers.update(headers or {})
    response.url = "https://api.example/v2/orders"
    response.request = requests.Request("POST", response.url).prepare()
    return response


def _requests_http_error(
    status: int, body: str = "", headers: Mapping[str, str] | None = None
) -> requests.HTTPError:
    response = _requests_response(status, body, headers)
    return requests.HTTPError(f"{status} Error for url: {response.url}", response=response)


def _httpx_status_error(
    status: int, body: str = "", headers: Mapping[str, str] | None = None
) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://data.example/v2/stocks/AAPL/quotes")
    response = httpx.Response(status, text=body, headers=headers, request=request)
    return _raised(response.raise_for_status)  # type: ignore[return-value]


class FakeAlpacaAPIError(Exception):
    """Mimics ``alpaca.common.exceptions.APIError`` (which wraps a ``requests.HTTPError``)."""

    def __init__(self, error: str, http_error: requests.HTTPError | None = None) -> None:
        detailed: dict[str, Any] = {"message": error}
        if http_error is not None and http_error.response is not None:
            detailed["status_code"] = http_error.response.status_code
        self._error = error
        self._http_error = http_error
        super().__init__(detailed)

    @property
    def code(self) -> Any:
        return json.loads(self._error)["code"]  # raises on non-JSON bodies, like the original

    @property
    def status_code(self) -> int | None:
        if self._http_error is not None and self._http_error.response is not None:
            return self._http_error.response.status_code
        return None

    @property
    def response(self) -> requests.Response | None:
        return self._http_error.response if self._http_error is not None else None


def _alpaca(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None
) -> FakeAlpacaAPIError:
    body = json.dumps({"code": code, "message": message})
    return FakeAlpacaAPIError(body, _requests_http_error(status, body, headers))


class FakeClientResponseError(Exception):
    """Mimics aiohttp's ``ClientResponseError``: the status lives in ``.status``."""

    def __init__(self, status: int | str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status}, message={message!r}")
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class StatusCodeError(Exception):
    """A home-made API error exposing only ``status_code``."""

    def __init__(self, status_code: int, text: str = "") -> None:
        super().__init__(text)
        self.status_code = status_code


class _Order(pydantic.BaseModel):
    qty: pydantic.PositiveInt


# --- the labelled corpus ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    label: str
    exc: BaseException
    expected: str
    component: Component = "trading"


def _corpus() -> list[Case]:
    soon = str(int(time.time()) + 30)
    h = _httpx_status_error
    r = _requests_http_error
    return [
        # builtins and the standard library
        Case("builtin TimeoutError", TimeoutError("timed out"), "TradingClientError"),
        Case("socket.timeout", socket.timeout("timed out"), "MarketDataError", "market_data"),  # noqa: UP041 - the alias is under test
        Case("asyncio.TimeoutError", asyncio.TimeoutError(), "TradingClientError"),  # noqa: UP041 - the alias is under test
        Case(
            "futures.TimeoutError",
            concurrent.futures.TimeoutError(),
            "MarketDataError",
            "market_data",
        ),
        Case("refused", ConnectionRefusedError(111, "refused"), "TradingClientError"),
        Case("reset", ConnectionResetError(104, "reset"), "MarketDataError", "market_data"),
        Case("broken pipe", BrokenPipeError(32, "Broken pipe"), "TradingClientError"),
        Case("aborted", ConnectionAbortedError(103, "aborted"), "TradingClientError"),
        Case("gaierror", socket.gaierror(-2, "unknown"), "MarketDataError", "market_data"),
        Case("URLError", urllib.error.URLError("[Errno 111] refused"), "TradingClientError"),
        Case("RemoteDisconnected", http.client.RemoteDisconnected("closed"), "TradingClientError"),
        Case(
            "IncompleteRead",
            http.client.IncompleteRead(b"ab", 10),
            "MarketDataError",
            "market_data",
        ),
        Case(
            "asyncio IncompleteReadError",
            asyncio.IncompleteReadError(b"", 10),
            "MarketDataError",
            "market_data",
        ),
        Case("ENETUNREACH", OSError(errno.ENETUNREACH, "unreachable"), "TradingClientError"),
        Case("SSLEOFError", ssl.SSLEOFError(8, "EOF in violation"), "TradingClientError"),
        Case("cert verify", ssl.SSLCertVerificationError(1, "verify failed"), "SecurityError"),
        Case("json trading", json.JSONDecodeError("Expecting", "<html>", 0), "TradingClientError"),
        Case(
            "json market_data",
            json.JSONDecodeError("Expecting", "<html>", 0),
            "DataProviderError",
            "market_data",
        ),
        Case("ValueError", ValueError("qty must be positive"), "ValidationError"),
        Case("OverflowError", OverflowError("too big"), "ValidationError"),
        Case("ZeroDivisionError", _raised(lambda: 1 / 0), "ValidationError"),
        Case(
            "decimal InvalidOperation",
            _raised(lambda: decimal.Decimal("x1")),
            "ValidationError",
        ),
        Case("UnicodeDecodeError", _raised(b"\xff".decode), "ValidationError"),
        Case("pydantic", _raised(lambda: _Order(qty=-1)), "ValidationError"),
        Case("KeyError", KeyError("symbol"), "AlchemiserError"),
        Case("TypeError", _raised(lambda: len(5)), "AlchemiserError"),  # type: ignore[arg-type]
        Case("AttributeError", _raised(lambda: None.qty), "AlchemiserError"),  # type: ignore[attr-defined]
        Case("AssertionError", AssertionError("invariant"), "AlchemiserError"),
        Case("MemoryError", MemoryError(), "AlchemiserError"),
        Case("RecursionError", RecursionError("depth"), "AlchemiserError"),
        Case("NotImplementedError", NotImplementedError(), "AlchemiserError"),
        Case("PermissionError", PermissionError(13, "denied"), "SecurityError"),
        Case("FileNotFoundError", FileNotFoundError(2, "missing"), "FileOperationError"),
        Case("IsADirectoryError", IsADirectoryError(21, "is dir"), "FileOperationError"),
        Case("ENOSPC", OSError(errno.ENOSPC, "No space left"), "FileOperationError"),
        # urllib.error.HTTPError
        Case("urllib 429", _urllib_http_error(429, {"Retry-After": "5"}), "RateLimitError"),
        Case("urllib 503", _urllib_http_error(503), "TradingClientError"),
        Case("urllib 503 md", _urllib_http_error(503), "MarketDataError", "market_data"),
        Case("urllib 401", _urllib_http_error(401), "SecurityError"),
        Case("urllib 404 trading", _urllib_http_error(404), "OrderExecutionError"),
        Case("urllib 404 md", _urllib_http_error(404), "ValidationError", "market_data"),
        # redis
        Case("redis ConnectionError", redis_exc.ConnectionError("refused"), "DatabaseError"),
        Case("redis TimeoutError", redis_exc.TimeoutError("slow"), "DatabaseError", "market_data"),
        Case("redis BusyLoading", redis_exc.BusyLoadingError("loading"), "DatabaseError"),
        Case("redis TryAgain", redis_exc.TryAgainError("TRYAGAIN"), "DatabaseError"),
        Case("redis ClusterDown", redis_exc.ClusterDownError("CLUSTERDOWN"), "DatabaseError"),
        Case("redis ResponseError", redis_exc.ResponseError("WRONGTYPE"), "DatabaseError"),
        Case("redis ReadOnly", redis_exc.ReadOnlyError("READONLY"), "DatabaseError"),
        Case("redis auth", redis_exc.AuthenticationError("invalid password"), "SecurityError"),
        Case("redis DataError", redis_exc.DataError("Invalid input of type"), "ValidationError"),
        # requests
        Case("requests ConnectionError", requests.ConnectionError("refused"), "TradingClientError"),
        Case(
            "requests ConnectTimeout",
            requests.ConnectTimeout("connect"),
            "MarketDataError",
            "market_data",
        ),
        Case("requests ReadTimeout", requests.ReadTimeout("read"), "TradingClientError"),
        Case("requests 502", r(502, "Bad Gateway"), "TradingClientError"),
        Case("requests 429 reset", r(429, "", {"X-RateLimit-Reset": soon}), "RateLimitError"),
        Case(
            "requests JSONDecodeError",
            requests.exceptions.JSONDecodeError("Expecting value", "<html>", 0),
            "DataProviderError",
            "market_data",
        ),
        Case(
            "requests ChunkedEncoding",
            requests.exceptions.ChunkedEncodingError("broken"),
            "TradingClientError",
        ),
        Case("requests SSLError", requests.exceptions.SSLError("eof"), "TradingClientError"),
        Case(
            "requests MissingSchema",
            requests.exceptions.MissingSchema("no scheme"),
            "ConfigurationError",
        ),
        Case("requests InvalidURL", requests.exceptions.InvalidURL("bad"), "ConfigurationError"),
        Case(
            "requests TooManyRedirects",
            requests.exceptions.TooManyRedirects("loop"),
            "AlchemiserError",
        ),
        # urllib3
        Case(
            "urllib3 ReadTimeoutError",
            urllib3.exceptions.ReadTimeoutError(None, "/v2", "Read timed out."),  # type: ignore[arg-type]
            "TradingClientError",
        ),
        Case(
            "urllib3 NewConnectionError",
            urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
            "MarketDataError",
            "market_data",
        ),
        Case(
            "urllib3 ProtocolError",
            urllib3.exceptions.ProtocolError("Connection aborted."),
            "TradingClientError",
        ),
        # httpx
        Case("httpx ConnectError", httpx.ConnectError("refused"), "MarketDataError", "market_data"),
        Case("httpx ReadTimeout", httpx.ReadTimeout("read"), "TradingClientError"),
        Case("httpx PoolTimeout", httpx.PoolTimeout("pool"), "TradingClientError"),
        Case("httpx RemoteProtocol", httpx.RemoteProtocolError("eof"), "TradingClientError"),
        Case("httpx ReadError", httpx.ReadError("reset"), "TradingClientError"),
        Case("httpx 429", h(429, "", {"Retry-After": "2"}), "RateLimitError", "market_data"),
        Case("httpx 500 md", h(500, "oops"), "MarketDataError", "market_data"),
        Case("httpx 400", h(400, "bad symbol"), "ValidationError", "market_data"),
        Case(
            "httpx 403 subscription",
            h(403, '{"message":"subscription does not permit querying recent SIP data"}'),
            "SecurityError",
            "market_data",
        ),
        Case(
            "httpx DecodingError", httpx.DecodingError("gzip"), "DataProviderError", "market_data"
        ),
        Case("httpx UnsupportedProtocol", httpx.UnsupportedProtocol("ftp"), "ConfigurationError"),
        Case("httpx LocalProtocolError", httpx.LocalProtocolError("bad hdr"), "AlchemiserError"),
        # alpaca-py APIError lookalikes over real requests responses
        Case(
            "alpaca buying power",
            _alpaca(403, 40310000, "insufficient buying power"),
            "InsufficientFundsError",
        ),
        Case(
            "alpaca 403 insufficient qty",
            _alpaca(403, 40310000, "insufficient qty available for order (requested: 5)"),
            "InsufficientFundsError",
        ),
        Case(
            "alpaca duplicate",
            _alpaca(422, 40010001, "client_order_id must be unique"),
            "DuplicateOrderError",
        ),
        Case(
            "alpaca 422 qty",
            _alpaca(422, 40010001, "insufficient qty available for order"),
            "PositionValidationError",
        ),
        Case(
            "alpaca 422 limit",
            _alpaca(422, 40010001, "invalid limit_price"),
            "OrderExecutionError",
        ),
        Case(
            "alpaca data 422",
            _alpaca(422, 42210000, "invalid timeframe"),
            "ValidationError",
            "market_data",
        ),
        Case("alpaca 401", _alpaca(401, 40110000, "request is not authorized"), "SecurityError"),
        Case("alpaca 403", _alpaca(403, 40310000, "forbidden"), "SecurityError"),
        Case(
            "alpaca wash trade",
            _alpaca(403, 40310000, "potential wash trade detected. use complex orders"),
            "OrderExecutionError",
        ),
        Case(
            "alpaca 429",
            _alpaca(429, 42910000, "rate limit exceeded", {"X-RateLimit-Reset": soon}),
            "RateLimitError",
        ),
        Case("alpaca 504", _alpaca(504, 50000000, "gateway timeout"), "TradingClientError"),
        Case("alpaca 404", _alpaca(404, 40410000, "order not found"), "OrderExecutionError"),
        Case("alpaca 409", _alpaca(409, 40910000, "conflict"), "OrderExecutionError"),
        Case("alpaca 408 md", _alpaca(408, 0, "timeout"), "MarketDataError", "market_data"),
        # objects exposing ``.status`` (aiohttp style) or only ``.status_code``
        Case("status 503", FakeClientResponseError(503, "down"), "MarketDataError", "market_data"),
        Case("status 401", FakeClientResponseError(401, "Unauthorized"), "SecurityError"),
        Case("status '429' text", FakeClientResponseError("429", "slow down"), "RateLimitError"),
        Case("status_code 418", StatusCodeError(418, "teapot"), "ValidationError", "market_data"),
        Case("status_code 502", StatusCodeError(502), "TradingClientError"),
    ]


CORPUS = _corpus()


def test_corpus_accuracy_is_total() -> None:
    """Every labelled foreign exception of the corpus lands on its expected class."""
    classifier = trading_classifier()
    misses = []
    for case in CORPUS:
        got = type(classifier.classify(case.exc, component=case.component)).__name__
        if got != case.expected:
            misses.append(f"{case.label}: expected {case.expected}, got {got}")
    accuracy = (len(CORPUS) - len(misses)) / len(CORPUS)
    print(f"classification accuracy: {accuracy:.1%} over {len(CORPUS)} exceptions")
    assert len(CORPUS) >= 60
    assert not misses, "misclassified:\n" + "\n".join(misses)


@pytest.mark.parametrize("case", CORPUS, ids=[case.label for case in CORPUS])
def test_every_corpus_result_carries_cause_and_foreign_type(case: Case) -> None:
    """Each classified result chains the original and names its type as module.QualName."""
    result = trading_classifier().classify(case.exc, component=case.component)
    assert result.__cause__ is case.exc
    cls = type(case.exc)
    assert result.details["foreign_type"] == f"{cls.__module__}.{cls.__qualname__}"
    assert result.message.startswith(cls.__qualname__)
    assert len(result.message) <= 500


# --- passthrough, cause, details, message -----------------------------------------------------


def test_alchemiser_error_is_returned_unchanged() -> None:
    """An AlchemiserError comes back as the very same object, details and cause untouched."""
    original = RateLimitError("slow down", retry_after_s=3.0, details={"k": 1})
    result = trading_classifier().classify(original, component="market_data")
    assert result is original
    assert result.details == {"k": 1}
    assert result.__cause__ is None


def test_cause_and_details_are_set() -> None:
    """The result chains the original as __cause__ and records foreign_type and http_status."""
    exc = _httpx_status_error(503, "down")
    result = trading_classifier().classify(exc, component="market_data")
    assert isinstance(result, MarketDataError)
    assert result.__cause__ is exc
    assert result.__suppress_context__ is True
    assert result.details == {"foreign_type": "httpx.HTTPStatusError", "http_status": 503}


def test_no_http_status_without_one() -> None:
    """details has no http_status when the foreign exception carries none."""
    result = trading_classifier().classify(ConnectionResetError(104, "reset"))
    assert result.details == {"foreign_type": "builtins.ConnectionResetError"}


def test_status_below_400_is_recorded_but_not_used() -> None:
    """A status under 400 is no HTTP failure: the type decides, http_status is still kept."""
    exc = ValueError("garbage in a 200 response")
    exc.status_code = 200  # type: ignore[attr-defined]
    result = trading_classifier().classify(exc)
    assert isinstance(result, ValidationError)
    assert result.details["http_status"] == 200


def test_message_names_the_foreign_type_and_is_trimmed() -> None:
    """The message is "<ForeignType>: <str(exc)>", at most 500 characters."""
    classifier = trading_classifier()
    assert classifier.classify(ValueError("bad qty")).message == "ValueError: bad qty"
    assert classifier.classify(TimeoutError()).message == "TimeoutError"
    long_message = classifier.classify(ValueError("x" * 2000)).message
    assert len(long_message) == 500
    assert long_message.startswith("ValueError: xxx")


def test_unknown_exception_is_plain_and_not_retried() -> None:
    """An exception nothing claims becomes a plain AlchemiserError that is never retried."""

    class StrangeError(Exception):
        pass

    result = trading_classifier().classify(StrangeError("?"))
    assert type(result) is AlchemiserError
    assert not result.should_retry()


# --- registration ------------------------------------------------------------------------------


class VendorError(Exception):
    """A made-up vendor exception."""


class VendorQuotaError(VendorError):
    """A more specific made-up vendor exception."""


def _always(cls: type[AlchemiserError], tag: str) -> Callable[[BaseException, Component], Any]:
    def rule(exc: BaseException, component: Component) -> AlchemiserError:
        return cls(tag)

    return rule


def _never(exc: BaseException, component: Component) -> AlchemiserError | None:
    return None


def test_registered_rule_claims_a_custom_type() -> None:
    """A rule registered for a custom type decides its classification."""
    classifier = trading_classifier()
    classifier.register(VendorError, _always(DatabaseError, "vendor"))
    result = classifier.classify(VendorError("boom"))
    assert isinstance(result, DatabaseError)
    assert result.message == "vendor"
    assert result.details["foreign_type"].endswith("VendorError")


def test_rule_applies_to_subclasses() -> None:
    """A rule for a base type also classifies its subclasses."""
    classifier = Classifier()
    classifier.register(VendorError, _always(DatabaseError, "base"))
    assert isinstance(classifier.classify(VendorQuotaError()), DatabaseError)


def test_most_specific_type_wins() -> None:
    """The rule of the most specific registered class in the MRO wins over its bases'."""
    classifier = Classifier()
    classifier.register(VendorError, _always(DatabaseError, "base"))
    classifier.register(VendorQuotaError, _always(RateLimitError, "leaf"))
    classifier.register(Exception, _always(SecurityError, "root"))
    assert isinstance(classifier.classify(VendorQuotaError()), RateLimitError)
    assert isinstance(classifier.classify(VendorError()), DatabaseError)
    assert isinstance(classifier.classify(KeyError()), SecurityError)


def test_first_puts_a_rule_before_existing_ones() -> None:
    """first=True runs the new rule before the type's earlier rules; default appends."""
    classifier = Classifier()
    classifier.register(VendorError, _always(DatabaseError, "a"))
    classifier.register(VendorError, _always(SecurityError, "b"))
    assert classifier.classify(VendorError()).message == "a"
    classifier.register(VendorError, _always(RateLimitError, "c"), first=True)
    assert classifier.classify(VendorError()).message == "c"


def test_first_overrides_a_default_rule() -> None:
    """A first=True rule on a built-in type overrides the default classification."""
    classifier = trading_classifier()
    classifier.register(ValueError, _always(DatabaseError, "mine"), first=True)
    assert isinstance(classifier.classify(ValueError("x")), DatabaseError)


def test_none_falls_through_to_next_rule_then_base_type() -> None:
    """A rule returning None hands over to the next rule of its type, then to base types."""
    classifier = Classifier()
    classifier.register(VendorQuotaError, _never)
    classifier.register(VendorError, _always(DatabaseError, "base"))
    assert classifier.classify(VendorQuotaError()).message == "base"
    classifier.register(VendorQuotaError, _always(RateLimitError, "second"))
    assert classifier.classify(VendorQuotaError()).message == "second"


def test_all_none_gives_plain_error() -> None:
    """When every candidate rule returns None the result is a plain AlchemiserError."""
    classifier = Classifier()
    classifier.register(VendorError, _never)
    result = classifier.classify(VendorError("x"))
    assert type(result) is AlchemiserError
    assert result.message == "VendorError: x"


def test_raising_rule_is_skipped() -> None:
    """A rule that raises is logged and skipped; the next candidate decides."""

    def broken(exc: BaseException, component: Component) -> AlchemiserError | None:
        raise RuntimeError("bug in rule")

    classifier = Classifier()
    classifier.register(VendorError, broken)
    classifier.register(VendorError, _always(DatabaseError, "next"))
    assert classifier.classify(VendorError()).message == "next"


def test_rule_returning_a_non_error_is_ignored() -> None:
    """A rule returning something other than an AlchemiserError or None is ignored."""
    classifier = Classifier()
    classifier.register(VendorError, lambda exc, component: "oops")  # type: ignore[arg-type,return-value]
    assert type(classifier.classify(VendorError())) is AlchemiserError


def test_register_rejects_non_exception_types() -> None:
    """register refuses a type that is not an exception class, or a rule that is not callable."""
    classifier = Classifier()
    with pytest.raises(TypeError):
        classifier.register(int, _never)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        classifier.register(VendorError, "rule")  # type: ignore[arg-type]


def test_default_classifiers_are_independent() -> None:
    """Each trading_classifier() call returns a fresh instance; registering on one is private."""
    first, second = trading_classifier(), trading_classifier()
    first.register(VendorError, _always(DatabaseError, "only here"))
    assert isinstance(first.classify(VendorError()), DatabaseError)
    assert type(second.classify(VendorError())) is AlchemiserError


def test_rule_receives_the_component() -> None:
    """Rules are called with the component passed to classify."""
    seen: list[str] = []

    def spy(exc: BaseException, component: Component) -> AlchemiserError | None:
        seen.append(component)
        return None

    classifier = Classifier()
    classifier.register(VendorError, spy)
    classifier.classify(VendorError(), component="market_data")
    classifier.classify(VendorError())
    assert seen == ["market_data", "default"]


# --- component switching -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "trading", "market_data"),
    [
        (ConnectionResetError(), "TradingClientError", "MarketDataError"),
        (httpx.ReadTimeout("t"), "TradingClientError", "MarketDataError"),
        (json.JSONDecodeError("m", "d", 0), "TradingClientError", "DataProviderError"),
        (_requests_http_error(404), "OrderExecutionError", "ValidationError"),
        (_requests_http_error(422, "bad"), "OrderExecutionError", "ValidationError"),
        (redis_exc.ConnectionError(), "DatabaseError", "DatabaseError"),
        (_requests_http_error(429), "RateLimitError", "RateLimitError"),
    ],
)
def test_component_picks_the_family(exc: BaseException, trading: str, market_data: str) -> None:
    """The component picks the transient and refusal families; Redis and 429 ignore it."""
    classifier = trading_classifier()
    assert type(classifier.classify(exc)).__name__ == trading
    assert type(classifier.classify(exc, component="market_data")).__name__ == market_data


def test_insufficient_permissions_is_not_funds() -> None:
    """A 403 about insufficient permissions or scope is a SecurityError, not missing funds."""
    exc = _requests_http_error(403, '{"message":"insufficient permissions for this account"}')
    assert isinstance(trading_classifier().classify(exc), SecurityError)


# --- Retry-After and rate-limit headers --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 30 ", 30.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (5, 5.0),
        (2.5, 2.5),
        (-3, 0.0),
        ("Tue, 14 Nov 2023 22:15:20 GMT", 120.0),  # IMF-fixdate
        ("Tuesday, 14-Nov-23 22:15:20 GMT", 120.0),  # obsolete RFC 850
        ("Tue Nov 14 22:15:20 2023", 120.0),  # obsolete asctime
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1e3", None),
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
    ],
)
def test_parse_retry_after(value: Any, expected: float | None) -> None:
    """Retry-After parses delta-seconds and the three HTTP-date forms; junk gives None."""
    assert parse_retry_after(value, now_s=NOW_S) == expected


@given(st.integers(min_value=0, max_value=10**12))
def test_parse_retry_after_delta_roundtrip(seconds: int) -> None:
    """Any non-negative delta-seconds string parses to that many seconds."""
    assert parse_retry_after(str(seconds)) == float(seconds)


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1)))
def test_parse_retry_after_http_date_roundtrip(moment: datetime) -> None:
    """An IMF-fixdate parses to the whole seconds until it, floored at zero."""
    aware = moment.replace(microsecond=0, tzinfo=UTC)
    header = format_datetime(aware, usegmt=True)
    assert parse_retry_after(header, now_s=NOW_S) == max(aware.timestamp() - NOW_S, 0.0)


@given(st.one_of(st.text(max_size=60), st.floats(), st.integers(), st.none()))
def test_parse_retry_after_never_raises_or_goes_negative(value: Any) -> None:
    """parse_retry_after never raises and never returns a negative delay."""
    result = parse_retry_after(value, now_s=NOW_S)
    assert result is None or result >= 0.0


def test_parse_retry_after_defaults_now_to_the_clock() -> None:
    """Without now_s an HTTP-date is measured from the current time."""
    future = datetime.now(UTC) + timedelta(seconds=300)
    result = parse_retry_after(format_datetime(future, usegmt=True))
    assert result is not None
    assert 290.0 <= result <= 300.0


def test_rate_limit_uses_retry_after_delta() -> None:
    """A 429 carries its Retry-After delta as retry_after_s."""
    result = trading_classifier().classify(_requests_http_error(429, "", {"Retry-After": "17"}))
    assert isinstance(result, RateLimitError)
    assert result.retry_after_s == 17.0


def test_rate_limit_uses_retry_after_date() -> None:
    """A 429 with an HTTP-date Retry-After waits until that date."""
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    result = trading_classifier().classify(_urllib_http_error(429, {"Retry-After": future}))
    assert result.retry_after_s is not None
    assert 110.0 <= result.retry_after_s <= 120.0


def test_rate_limit_falls_back_to_x_ratelimit_reset() -> None:
    """Without Retry-After, X-RateLimit-Reset (Unix seconds) gives reset - now."""
    reset = str(int(time.time()) + 120)
    result = trading_classifier().classify(_alpaca(429, 0, "slow", {"X-RateLimit-Reset": reset}))
    assert isinstance(result, RateLimitError)
    assert result.retry_after_s is not None
    assert 110.0 <= result.retry_after_s <= 120.0


def test_x_ratelimit_reset_in_the_past_is_zero() -> None:
    """A reset time already passed gives retry_after_s 0, never negative."""
    exc = _requests_http_error(429, "", {"X-RateLimit-Reset": str(int(time.time()) - 50)})
    assert trading_classifier().classify(exc).retry_after_s == 0.0


def test_a_429_waits_for_the_later_of_retry_after_and_reset() -> None:
    """After a 429 a retry before the window's reset is refused again (FIELD-NOTES, Alpaca):
    the later of Retry-After and X-RateLimit-Reset wins, whichever it is."""
    later_reset = {"Retry-After": "4", "X-RateLimit-Reset": str(int(time.time()) + 500)}
    wait = trading_classifier().classify(_httpx_status_error(429, "", later_reset)).retry_after_s
    assert wait is not None
    assert 490.0 <= wait <= 500.0
    later_hint = {"Retry-After": "40", "X-RateLimit-Reset": str(int(time.time()) + 5)}
    assert (
        trading_classifier().classify(_httpx_status_error(429, "", later_hint)).retry_after_s
        == 40.0
    )


def test_a_5xx_ignores_the_rate_limit_reset() -> None:
    """Alpaca puts X-RateLimit-Reset on every answer: on a 503 it is no reason to wait."""
    headers = {"X-RateLimit-Reset": str(int(time.time()) + 50)}
    classify = trading_classifier().classify
    assert classify(_httpx_status_error(503, "", headers)).retry_after_s is None
    headers["Retry-After"] = "3"
    assert classify(_httpx_status_error(503, "", headers)).retry_after_s == 3.0


def test_header_lookup_is_case_insensitive_on_plain_dicts() -> None:
    """Headers in a plain dict are found whatever their case."""
    exc = FakeClientResponseError(429, "slow", {"retry-after": "9"})
    assert trading_classifier().classify(exc).retry_after_s == 9.0


def test_rate_limit_without_hints_has_no_retry_after() -> None:
    """A 429 without any hint header has retry_after_s None."""
    assert trading_classifier().classify(_requests_http_error(429)).retry_after_s is None


def test_server_error_keeps_retry_after() -> None:
    """A 503 with Retry-After carries the hint on the transient error."""
    exc = _httpx_status_error(503, "", {"Retry-After": "11"})
    result = trading_classifier().classify(exc)
    assert isinstance(result, TradingClientError)
    assert result.retry_after_s == 11.0


# --- never raising ------------------------------------------------------------------------------


class UnprintableError(Exception):
    """Its __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class HostileError(Exception):
    """Every duck-typed attribute raises when read."""

    def __getattribute__(self, name: str) -> Any:
        if name in {"status_code", "status", "code", "response", "headers", "body"}:
            raise RuntimeError(f"no {name}")
        return super().__getattribute__(name)


class BadHeaders:
    """A headers object whose lookups raise."""

    def get(self, name: str) -> str:
        raise RuntimeError("broken headers")

    def items(self) -> Any:
        raise RuntimeError("broken headers")


class BadResponse:
    """A response whose text property raises (like httpx before .read())."""

    status_code = 403
    headers = BadHeaders()

    @property
    def text(self) -> str:
        raise httpx.ResponseNotRead()


class WeirdResponseError(Exception):
    """Exposes a response whose every part misbehaves."""

    response = BadResponse()


@pytest.mark.parametrize(
    "exc",
    [
        UnprintableError(),
        HostileError("x"),
        WeirdResponseError("x"),
        FakeAlpacaAPIError("not json"),  # no http_error: .code raises JSONDecodeError
        KeyboardInterrupt(),
        SystemExit(404),  # an exit code, not an HTTP status
        GeneratorExit(),
        asyncio.CancelledError(),
        StatusCodeError(True),  # a bool is no status
        FakeClientResponseError("teapot", "x"),
        ValueError(object()),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_weird_exceptions_never_raise(exc: BaseException) -> None:
    """Misbehaving or exotic exceptions still classify to some AlchemiserError."""
    result = trading_classifier().classify(exc)
    assert isinstance(result, AlchemiserError)
    assert result.__cause__ is exc


def test_unprintable_exception_message() -> None:
    """An exception whose __str__ raises still gets a readable message."""
    result = trading_classifier().classify(UnprintableError())
    assert result.message == "UnprintableError: <unprintable UnprintableError>"


def test_system_exit_code_is_not_a_status() -> None:
    """SystemExit(404).code is an exit code: no http_status, a plain error."""
    result = trading_classifier().classify(SystemExit(404))
    assert type(result) is AlchemiserError
    assert "http_status" not in result.details


def test_forbidden_with_unreadable_body_is_security() -> None:
    """A 403 whose body cannot be read falls back to SecurityError."""
    assert isinstance(trading_classifier().classify(WeirdResponseError("x")), SecurityError)


def test_alpaca_error_without_response_is_not_a_status() -> None:
    """An APIError without an HTTP response (whose .code raises) is handled as transport."""
    result = trading_classifier().classify(FakeAlpacaAPIError("not json"))
    assert "http_status" not in result.details


_ATTRIBUTE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.dictionaries(st.text(max_size=15), st.text(max_size=15), max_size=3),
)


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(["status_code", "status", "code", "headers", "body", "text"]),
        _ATTRIBUTE_VALUES,
    ),
    st.sampled_from([Exception, ValueError, OSError, ConnectionError, KeyError]),
    st.sampled_from(["trading", "market_data"]),
)
def test_arbitrary_duck_attributes_never_raise(
    attributes: dict[str, Any], base: type[Exception], component: Component
) -> None:
    """Whatever values the duck-typed attributes hold, classify returns an AlchemiserError."""
    exc = base("fuzz")
    response = type("Response", (), dict(attributes))()
    for name, value in attributes.items():
        setattr(exc, name, value)
    exc.response = response  # type: ignore[attr-defined]
    result = trading_classifier().classify(exc, component=component)
    assert isinstance(result, AlchemiserError)
    assert result.details["foreign_type"] == f"builtins.{base.__qualname__}"


def test_order_errors_are_not_retried() -> None:
    """Refusals (4xx) map to classes whose policy never retries; 5xx to ones that do."""
    classifier = trading_classifier()
    assert not classifier.classify(_alpaca(422, 0, "invalid qty")).should_retry()
    assert isinstance(classifier.classify(_alpaca(422, 0, "invalid qty")), OrderExecutionError)
    assert classifier.classify(_alpaca(503, 0, "unavailable")).should_retry()


def test_is_timeout_sees_timeouts_of_every_client_and_their_causes() -> None:
    """The retry budget charges timeouts more: builtin, requests and httpx ones count, also as
    the cause of another error; other errors do not."""
    assert is_timeout(TimeoutError())
    assert is_timeout(requests.ReadTimeout("read"))
    assert is_timeout(httpx.ReadTimeout("read"))
    assert is_timeout(httpx.TimeoutException("any"))
    try:
        try:
            raise requests.ConnectTimeout("connect")
        except requests.ConnectTimeout as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_timeout(outer)
    assert not is_timeout(ConnectionResetError())
    assert not is_timeout(ValueError("x"))


def test_a_pydantic_error_says_where_and_what_but_never_the_input() -> None:
    """pydantic echoes every input value (a mistyped secret kwarg included), where no scrubber
    can tell it is a secret: the classified message names the fields and the problems only.
    (Before, the message carried ``input_value='hunter2-Planted-Kw'``.)"""

    class Order(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        symbol: str
        qty: int

    planted = "hunter2-Planted-Kw"
    try:
        Order.model_validate({"symbol": planted, "qty": "many", "brokerpw": planted})
    except pydantic.ValidationError as exc:
        result = trading_classifier().classify(exc)
    assert isinstance(result, ValidationError)
    assert planted not in result.message
    assert result.message == (
        "ValidationError: 2 validation errors for Order: qty: Input should be a valid integer,"
        " unable to parse string as an integer; brokerpw: Extra inputs are not permitted"
    )
