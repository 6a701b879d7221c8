"""Tests of ``resilience.policy.handler``: classify, record and describe errors."""

from __future__ import annotations

import json

import pytest

from resilience.errors import (
    AlchemiserError,
    ConfigurationError,
    DataProviderError,
    IndicatorCalculationError,
    InsufficientFundsError,
    MarketDataError,
    NotificationError,
    SecurityError,
    StrategyExecutionError,
    TradingClientError,
    ValidationError,
)
from resilience.policy.context import ErrorContext
from resilience.policy.handler import (
    ErrorDetails,
    ErrorHandler,
    RecentErrors,
    category_of,
    notification_data,
)
from resilience.policy.retry import ErrorSeverity
from resilience.scrub import Scrubber
from tasks.classification import trading_classifier

SECRET = "sk9fakeSecretValue1234"
CONTEXT = ErrorContext(operation="submit_order", component="trading", request_id="req-1")


class ListRecorder:
    """Keeps every details object it is given."""

    def __init__(self) -> None:
        self.seen: list[ErrorDetails] = []

    def record(self, details: ErrorDetails) -> None:
        self.seen.append(details)


class BrokenRecorder:
    """A recorder whose backend is down."""

    def __init__(self) -> None:
        self.calls = 0

    def record(self, details: ErrorDetails) -> None:
        self.calls += 1
        raise RuntimeError("metrics backend down")


def _raised(exc: BaseException) -> BaseException:
    """``exc`` after being raised, so it carries a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


# --- handle_error ---------------------------------------------------------------------------


def test_foreign_timeout_becomes_trading_client_error() -> None:
    """A ``TimeoutError`` in trading is classified as ``TradingClientError``."""
    foreign = _raised(TimeoutError("read timed out"))
    details = ErrorHandler(classifier=trading_classifier()).handle_error(
        foreign, CONTEXT, "trading"
    )
    assert type(details.error) is TradingClientError
    assert details.error.__cause__ is foreign
    assert details.error.details["foreign_type"] == "builtins.TimeoutError"
    assert details.category == "trading"
    assert details.component == "trading"
    assert details.error.context is CONTEXT
    assert details.context is CONTEXT
    assert details.traceback is not None
    assert "TimeoutError: read timed out" in details.traceback
    assert details.should_continue is True


def test_component_market_data_classifies_as_market_data_error() -> None:
    """The ``market_data`` component maps a timeout to ``MarketDataError`` (category data)."""
    ctx = ErrorContext(operation="fetch_quote", component="market_data")
    details = ErrorHandler(classifier=trading_classifier()).handle_error(
        TimeoutError("slow"), ctx, "market_data"
    )
    assert type(details.error) is MarketDataError
    assert details.category == "data"
    assert details.traceback is None  # never raised: nothing to format


def test_alchemiser_error_is_kept_as_is() -> None:
    """An error of the hierarchy is returned unchanged, its own context kept."""
    own = ErrorContext(operation="rebalance", component="strategy")
    error = InsufficientFundsError("no cash", context=own)
    details = ErrorHandler(classifier=trading_classifier()).handle_error(
        error, CONTEXT, "trading", should_continue=False
    )
    assert details.error is error
    assert error.context is own
    assert details.category == "trading"
    assert details.should_continue is False


def test_context_is_set_on_an_error_without_one() -> None:
    """A hierarchy error raised without context gets the handler's context."""
    error = ValidationError("qty must be positive")
    details = ErrorHandler(classifier=trading_classifier()).handle_error(
        error, CONTEXT, "trading", {"symbol": "AAPL"}
    )
    assert error.context is CONTEXT
    assert details.additional_data == {"symbol": "AAPL"}
    assert details.category == "warning"


def test_recorders_receive_details_and_a_failing_one_does_not_stop_the_others() -> None:
    """Every recorder sees the details even when one between them raises."""
    first, broken, last = ListRecorder(), BrokenRecorder(), ListRecorder()
    handler = ErrorHandler(classifier=trading_classifier(), recorders=[first, broken, last])

    details = handler.handle_error(ConnectionResetError("reset"), CONTEXT, "trading")

    assert first.seen == [details]
    assert broken.calls == 1
    assert last.seen == [details]


def test_handler_exposes_its_classifier() -> None:
    """The classifier in use is available to callers."""
    handler = ErrorHandler(classifier=trading_classifier())
    assert type(handler.classifier.classify(TimeoutError("x"))) is TradingClientError


# --- RecentErrors -----------------------------------------------------------------------------


def test_recent_errors_summary_counts_by_category() -> None:
    """The summary counts per category and leaves empty categories ``None``."""
    recent = RecentErrors()
    handler = ErrorHandler(classifier=trading_classifier(), recorders=[recent])
    for _ in range(3):
        handler.handle_error(TimeoutError("t"), CONTEXT, "trading")
    handler.handle_error(TimeoutError("q"), CONTEXT, "market_data")
    handler.handle_error(SecurityError("bad key"), CONTEXT, "trading")

    summary = recent.summary(Scrubber())

    assert set(summary) == {
        "critical",
        "trading",
        "data",
        "strategy",
        "configuration",
        "notification",
        "warning",
    }
    counts = {
        name: (part["count"] if part else None)
        for name, part in (
            ("critical", summary["critical"]),
            ("trading", summary["trading"]),
            ("data", summary["data"]),
            ("strategy", summary["strategy"]),
            ("configuration", summary["configuration"]),
            ("notification", summary["notification"]),
            ("warning", summary["warning"]),
        )
    }
    assert counts == {
        "critical": 1,
        "trading": 3,
        "data": 1,
        "strategy": None,
        "configuration": None,
        "notification": None,
        "warning": None,
    }
    trading = summary["trading"]
    assert trading is not None
    assert [e["error_type"] for e in trading["errors"]] == ["TradingClientError"] * 3
    json.dumps(summary)


def test_recent_errors_keep_a_bounded_number_of_examples() -> None:
    """Counts keep growing while only the newest examples per category are kept."""
    recent = RecentErrors(per_category=2)
    handler = ErrorHandler(classifier=trading_classifier(), recorders=[recent])
    for n in range(5):
        handler.handle_error(TradingClientError(f"failure {n}"), CONTEXT, "trading")
    trading = recent.summary(Scrubber())["trading"]
    assert trading is not None
    assert trading["count"] == 5
    assert [e["message"] for e in trading["errors"]] == ["failure 3", "failure 4"]


def test_summary_examples_are_scrubbed() -> None:
    """Messages, context and traceback in the summary have known secrets removed."""
    recent = RecentErrors()
    ctx = ErrorContext(
        operation="submit_order", component="trading", additional_data={"api_key": SECRET}
    )
    handler = ErrorHandler(classifier=trading_classifier(), recorders=[recent])
    handler.handle_error(_raised(TimeoutError(f"GET ?key={SECRET} timed out")), ctx, "trading")
    dumped = json.dumps(recent.summary(Scrubber([SECRET])))
    assert SECRET not in dumped
    assert "[Filtered]" in dumped


# --- notification_data -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "priority"),
    [
        (ErrorSeverity.CRITICAL, "P1"),
        (ErrorSeverity.HIGH, "P2"),
        (ErrorSeverity.MEDIUM, "P3"),
        (ErrorSeverity.LOW, "P4"),
    ],
)
def test_notification_priority_follows_severity(severity: ErrorSeverity, priority: str) -> None:
    """CRITICAL -> P1, HIGH -> P2, MEDIUM -> P3, LOW -> P4."""
    error = AlchemiserError("x", severity=severity)
    data = notification_data(
        error, component="trading", operation="submit_order", task_name="t", scrub=Scrubber()
    )
    assert (data["severity"], data["priority"]) == (severity.value, priority)


def test_notification_data_fields_and_scrubbed_message() -> None:
    """The notification names error, place and task, and its message carries no secret."""
    error = InsufficientFundsError(f"buy refused for key {SECRET}")
    data = notification_data(
        error,
        component="trading",
        operation="submit_order",
        task_name="tasks.submit_order",
        scrub=Scrubber([SECRET]),
        dead_letter_id="dl-1",
        idempotency_key="alc-9",
        attempts=3,
        reason="non-retryable",
    )
    assert data["message"] == "buy refused for key [Filtered]"
    assert SECRET not in json.dumps(data)
    assert data["title"] == "InsufficientFundsError in trading: submit_order"
    assert data["error_type"] == "InsufficientFundsError"
    assert data["error_id"] == error.error_id
    assert (data["severity"], data["priority"]) == ("high", "P2")
    assert (data["component"], data["operation"], data["task_name"]) == (
        "trading",
        "submit_order",
        "tasks.submit_order",
    )
    assert (data["dead_letter_id"], data["idempotency_key"]) == ("dl-1", "alc-9")
    assert (data["attempts"], data["reason"]) == (3, "non-retryable")
    assert data["occurred_at"].endswith("+00:00")


# --- category_of ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (SecurityError("x"), "critical"),
        (ConfigurationError("x"), "critical"),  # CRITICAL by policy: severity wins
        (ConfigurationError("x", severity=ErrorSeverity.MEDIUM), "configuration"),
        (TradingClientError("x"), "trading"),
        (InsufficientFundsError("x"), "trading"),
        (TradingClientError("x", severity=ErrorSeverity.CRITICAL), "critical"),
        (DataProviderError("x"), "data"),
        (MarketDataError("x"), "data"),
        (StrategyExecutionError("x"), "strategy"),
        (IndicatorCalculationError("x"), "strategy"),
        (NotificationError("x"), "notification"),
        (ValidationError("x"), "warning"),
        (AlchemiserError("x"), "warning"),
    ],
)
def test_category_of(error: AlchemiserError, category: str) -> None:
    """Critical severity first, then the family, else ``warning``."""
    assert category_of(error) == category
