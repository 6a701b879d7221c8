"""Tests of the error hierarchy, its per-class policies and serialisation."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience import errors
from resilience.policy.backoff import Decorrelated, Exponential, Jitter, compute_countdown
from resilience.policy.context import ErrorContext
from resilience.policy.retry import ErrorSeverity, RetryPolicy

# (class name, name of its direct parent) exactly as CONTRACT.md lays out the tree.
CONTRACT_TREE: list[tuple[str, str]] = [
    ("ConfigurationError", "AlchemiserError"),
    ("EnvironmentError", "ConfigurationError"),
    ("DataProviderError", "AlchemiserError"),
    ("MarketDataError", "DataProviderError"),
    ("WebSocketError", "DataProviderError"),
    ("TradingClientError", "AlchemiserError"),
    ("OrderExecutionError", "TradingClientError"),
    ("InsufficientFundsError", "OrderExecutionError"),
    ("PositionValidationError", "TradingClientError"),
    ("MarketClosedError", "TradingClientError"),
    ("StrategyExecutionError", "AlchemiserError"),
    ("IndicatorCalculationError", "AlchemiserError"),
    ("ValidationError", "AlchemiserError"),
    ("NotificationError", "AlchemiserError"),
    ("S3OperationError", "AlchemiserError"),
    ("RateLimitError", "AlchemiserError"),
    ("LoggingError", "AlchemiserError"),
    ("FileOperationError", "AlchemiserError"),
    ("DatabaseError", "AlchemiserError"),
    ("SecurityError", "AlchemiserError"),
    ("CircuitBreakerOpenError", "AlchemiserError"),
    ("StaleOrderError", "AlchemiserError"),
]
CONTRACT_NAMES: list[str] = ["AlchemiserError", *(name for name, _ in CONTRACT_TREE)]

NEVER_RETRIED = [
    "InsufficientFundsError",
    "ValidationError",
    "PositionValidationError",
    "ConfigurationError",
    "EnvironmentError",
    "SecurityError",
    "OrderExecutionError",
    "StaleOrderError",
]


def _cls(name: str) -> type[errors.AlchemiserError]:
    cls = getattr(errors, name)
    assert isinstance(cls, type)
    assert issubclass(cls, errors.AlchemiserError)
    return cls


# --- the tree ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "parent_name"), CONTRACT_TREE)
def test_class_sits_directly_under_its_contract_parent(name: str, parent_name: str) -> None:
    """Each contract class exists under its exact name with the contract's direct parent."""
    cls = _cls(name)
    parent = _cls(parent_name)
    assert cls.__name__ == name
    assert cls.__bases__ == (parent,)
    assert issubclass(cls, parent)
    assert issubclass(cls, errors.AlchemiserError)
    assert name in errors.__all__


def test_base_is_an_exception() -> None:
    """AlchemiserError derives directly from Exception."""
    assert errors.AlchemiserError.__bases__ == (Exception,)


def test_specific_ancestry_chains() -> None:
    """The deep chains of the contract hold one link at a time."""
    assert issubclass(errors.EnvironmentError, errors.ConfigurationError)
    assert issubclass(errors.InsufficientFundsError, errors.OrderExecutionError)
    assert issubclass(errors.OrderExecutionError, errors.TradingClientError)
    assert issubclass(errors.InsufficientFundsError, errors.TradingClientError)
    assert issubclass(errors.MarketClosedError, errors.TradingClientError)
    assert issubclass(errors.PositionValidationError, errors.TradingClientError)
    assert issubclass(errors.MarketDataError, errors.DataProviderError)
    assert issubclass(errors.WebSocketError, errors.DataProviderError)
    assert not issubclass(errors.MarketClosedError, errors.OrderExecutionError)
    assert not issubclass(errors.PositionValidationError, errors.OrderExecutionError)
    assert not issubclass(errors.RateLimitError, errors.TradingClientError)
    assert not issubclass(errors.CircuitBreakerOpenError, errors.TradingClientError)


def test_environment_error_does_not_alias_the_builtin() -> None:
    """resilience.errors.EnvironmentError is the plan's class, not the builtin OSError alias."""
    assert errors.EnvironmentError.__module__ == "resilience.errors"
    assert not issubclass(errors.EnvironmentError, OSError)


def test_error_severity_is_reexported() -> None:
    """resilience.errors re-exports ErrorSeverity with LOW, MEDIUM, HIGH and CRITICAL."""
    assert errors.ErrorSeverity is ErrorSeverity
    assert {m.name for m in errors.ErrorSeverity} == {"LOW", "MEDIUM", "HIGH", "CRITICAL"}


# --- common attributes -------------------------------------------------------------------


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_every_error_has_the_contract_attributes(name: str) -> None:
    """Each class instance has error_id, context, severity, recoverable and retry counters."""
    cls = _cls(name)
    error = cls("boom")
    assert str(error) == "boom"
    assert error.message == "boom"
    assert uuid.UUID(error.error_id).version == 4
    assert str(uuid.UUID(error.error_id)) == error.error_id
    assert error.context is None
    assert error.severity is cls.policy.severity
    assert error.recoverable is (cls.policy.retryable or cls.policy.defer)
    assert error.retry_count == 0
    assert error.max_retries == cls.policy.max_attempts - 1
    assert isinstance(error.should_retry(), bool)
    delay_s = error.get_retry_delay(random.Random(0))
    assert 0.0 <= delay_s <= cls.policy.cap_s
    assert error.error_type == name


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_every_class_policy_is_a_retry_policy(name: str) -> None:
    """Each class carries a RetryPolicy as its policy."""
    assert isinstance(_cls(name).policy, RetryPolicy)


def test_every_hierarchy_class_policy_is_a_retry_policy() -> None:
    """Every class error_classes() finds carries a RetryPolicy."""
    for cls in errors.error_classes():
        assert isinstance(cls.policy, RetryPolicy), cls.__name__


def test_error_ids_are_unique_per_instance() -> None:
    """Two errors, even of the same class and message, get distinct error ids."""
    ids = {errors.MarketDataError("same").error_id for _ in range(200)}
    assert len(ids) == 200


def test_constructor_keywords_are_kept() -> None:
    """context, severity, retry_count, retry_after_s and details pass through the constructor."""
    context = ErrorContext(operation="fetch_quote", component="market_data")
    error = errors.DatabaseError(
        "redis down",
        context=context,
        severity=ErrorSeverity.CRITICAL,
        retry_count=2,
        retry_after_s=1.5,
        details={"resource": "redis"},
    )
    assert error.context is context
    assert error.severity is ErrorSeverity.CRITICAL
    assert error.retry_count == 2
    assert error.retry_after_s == 1.5
    assert error.details == {"resource": "redis"}
    assert error.max_retries == 4


def test_details_are_copied() -> None:
    """Mutating the details dict after raising does not change the error."""
    details = {"symbol": "AAPL"}
    error = errors.ValidationError("bad", details=details)
    details["symbol"] = "MSFT"
    assert error.details == {"symbol": "AAPL"}


# --- retry defaults ----------------------------------------------------------------------


def test_rate_limit_error_is_retryable() -> None:
    """RateLimitError retries up to 5 times and honours Retry-After."""
    policy = errors.RateLimitError.policy
    assert policy.retryable is True
    assert policy.honour_retry_after is True
    assert policy.max_attempts == 6
    assert errors.RateLimitError("429").should_retry() is True
    assert errors.RateLimitError("429", retry_count=4).should_retry() is True
    assert errors.RateLimitError("429", retry_count=5).should_retry() is False


def test_rate_limit_delay_uses_a_longer_retry_after() -> None:
    """A Retry-After of 45 s beats the 1 s first backoff: the delay is exactly 45 s."""
    error = errors.RateLimitError("429", retry_after_s=45.0)
    assert error.get_retry_delay(random.Random(1)) == 45.0


@given(
    retry_count=st.integers(min_value=0, max_value=5),
    retry_after_s=st.floats(min_value=0.0, max_value=600.0, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_rate_limit_delay_is_the_longer_of_backoff_and_retry_after(
    retry_count: int, retry_after_s: float, seed: int
) -> None:
    """RateLimitError's delay is max(policy backoff, Retry-After) for the same random draw."""
    policy = errors.RateLimitError.policy
    error = errors.RateLimitError("429", retry_count=retry_count, retry_after_s=retry_after_s)
    backoff_s = compute_countdown(
        policy.backoff,
        retry_count + 1,
        jitter=policy.jitter,
        cap_s=policy.cap_s,
        rng=random.Random(seed),
    )
    delay_s = error.get_retry_delay(random.Random(seed))
    assert delay_s == max(backoff_s, retry_after_s)
    assert delay_s >= retry_after_s


def test_retry_after_shorter_than_backoff_leaves_backoff() -> None:
    """A Retry-After of 0.01 s does not shorten the 4th retry's backoff (FULL jitter of 16 s)."""
    error = errors.RateLimitError("429", retry_count=4, retry_after_s=0.01)
    r = random.Random(3).random()
    assert error.get_retry_delay(random.Random(3)) == max(r * 16.0, 0.01)


@pytest.mark.parametrize("name", ["MarketDataError", "WebSocketError", "TradingClientError"])
def test_transient_errors_are_retryable(name: str) -> None:
    """Transient provider and trading errors retry at least 3 times."""
    cls = _cls(name)
    assert cls.policy.retryable is True
    assert cls.policy.max_attempts >= 4
    error = cls("transient")
    assert error.recoverable is True
    assert error.should_retry() is True
    assert cls("transient", retry_count=error.max_retries).should_retry() is False


@pytest.mark.parametrize("name", ["MarketDataError", "WebSocketError", "TradingClientError"])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_transient_error_delays_grow_with_retry_count(name: str, seed: int) -> None:
    """With the same random draw, delays never shrink as retry_count grows and end up longer."""
    cls = _cls(name)
    delays = [
        cls("transient", retry_count=n).get_retry_delay(random.Random(seed))
        for n in range(cls.policy.max_attempts - 1)
    ]
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] > delays[0]
    assert all(0.0 <= d <= cls.policy.cap_s for d in delays)


def test_transient_error_known_delay_bounds() -> None:
    """Known envelopes: trading 0.5 s then 4 s (EQUAL), market data 4 s (FULL), socket 1 s."""
    for seed in range(20):
        first = errors.TradingClientError("5xx").get_retry_delay(random.Random(seed))
        fourth = errors.TradingClientError("5xx", retry_count=3).get_retry_delay(
            random.Random(seed)
        )
        assert 0.25 <= first <= 0.5
        assert 2.0 <= fourth <= 4.0
        third = errors.MarketDataError("x", retry_count=2).get_retry_delay(random.Random(seed))
        assert 0.0 <= third <= 4.0
        socket_first = errors.WebSocketError("drop").get_retry_delay(random.Random(seed))
        assert socket_first == 1.0
        socket_third = errors.WebSocketError("drop", retry_count=2).get_retry_delay(
            random.Random(seed)
        )
        assert 1.0 <= socket_third <= 9.0


@pytest.mark.parametrize("name", NEVER_RETRIED)
def test_permanent_errors_never_retry(name: str) -> None:
    """Errors retrying cannot fix are not recoverable and refuse even the first retry."""
    cls = _cls(name)
    error = cls("permanent")
    assert cls.policy.retryable is False
    assert cls.policy.defer is False
    assert cls.policy.max_attempts == 1
    assert error.recoverable is False
    assert error.max_retries == 0
    assert error.retry_count == 0
    assert error.should_retry() is False


@pytest.mark.parametrize(
    ("name", "severity"),
    [
        ("ConfigurationError", ErrorSeverity.CRITICAL),
        ("SecurityError", ErrorSeverity.CRITICAL),
        ("TradingClientError", ErrorSeverity.HIGH),
        ("OrderExecutionError", ErrorSeverity.HIGH),
        ("MarketClosedError", ErrorSeverity.LOW),
        ("ValidationError", ErrorSeverity.MEDIUM),
    ],
)
def test_default_severity_comes_from_the_policy(name: str, severity: ErrorSeverity) -> None:
    """An error's severity defaults to its class policy's severity."""
    assert _cls(name)("x").severity is severity


@pytest.mark.parametrize("name", ["MarketClosedError", "CircuitBreakerOpenError"])
def test_deferring_errors_always_allow_another_run(name: str) -> None:
    """'Not now' errors defer: recoverable, and should_retry() stays True at any retry_count."""
    cls = _cls(name)
    assert cls.policy.defer is True
    assert cls.policy.retryable is False
    for retry_count in (0, 1, 50):
        error = cls("later", retry_count=retry_count)
        assert error.recoverable is True
        assert error.should_retry() is True


def test_market_closed_error_keeps_next_open() -> None:
    """MarketClosedError stores next_open (None by default) beside the common attributes."""
    next_open = datetime(2025, 1, 2, 14, 30, tzinfo=UTC)
    assert errors.MarketClosedError("closed", next_open=next_open).next_open == next_open
    error = errors.MarketClosedError("closed", retry_count=2)
    assert error.next_open is None
    assert error.retry_count == 2


# --- policy inheritance ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        ("MarketDataError", "DataProviderError"),
        ("EnvironmentError", "ConfigurationError"),
        ("InsufficientFundsError", "OrderExecutionError"),
    ],
)
def test_subclass_without_own_policy_shares_the_parent_object(child: str, parent: str) -> None:
    """A subclass that declares no policy uses the very same policy object as its parent."""
    assert _cls(child).policy is _cls(parent).policy


def test_every_class_inherits_unless_it_overrides() -> None:
    """Across the hierarchy a class's policy is its parent's object unless set on the class."""
    for cls in errors.error_classes():
        if cls is errors.AlchemiserError:
            continue
        parent = cls.__mro__[1]
        assert issubclass(parent, errors.AlchemiserError)
        if "policy" not in vars(cls):
            assert cls.policy is parent.policy, cls.__name__


def test_websocket_error_overrides_part_of_its_parent_policy() -> None:
    """WebSocketError keeps DataProviderError's policy but with 6 attempts and decorrelated."""
    parent = errors.DataProviderError.policy
    policy = errors.WebSocketError.policy
    assert policy is not parent
    assert policy.max_attempts == 6
    assert policy.backoff == Decorrelated(base_s=1.0)
    assert policy.jitter is Jitter.NONE
    assert policy.cap_s == parent.cap_s == 30.0
    assert policy.severity is parent.severity
    assert policy.counts_against_breaker is parent.counts_against_breaker is True


def test_order_execution_error_overrides_the_trading_policy() -> None:
    """OrderExecutionError refuses retries although its parent TradingClientError retries."""
    assert errors.TradingClientError.policy.retryable is True
    assert errors.TradingClientError.policy.backoff == Exponential(base_s=0.5, factor=2.0)
    assert errors.OrderExecutionError.policy is not errors.TradingClientError.policy
    assert errors.OrderExecutionError.policy.retryable is False


# --- lookup ------------------------------------------------------------------------------


def test_error_classes_lists_the_whole_contract_base_first() -> None:
    """error_classes() starts at AlchemiserError, has every contract class once each."""
    classes = errors.error_classes()
    assert classes[0] is errors.AlchemiserError
    assert len(classes) == len(set(classes))
    names = {cls.__name__ for cls in classes}
    assert set(CONTRACT_NAMES) <= names
    assert all(issubclass(cls, errors.AlchemiserError) for cls in classes)
    assert classes.index(errors.TradingClientError) < classes.index(errors.OrderExecutionError)
    assert classes.index(errors.OrderExecutionError) < classes.index(errors.InsufficientFundsError)


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_error_class_by_name_finds_each_class(name: str) -> None:
    """error_class_by_name returns the class of that exact name."""
    assert errors.error_class_by_name(name) is getattr(errors, name)


def test_error_class_by_name_unknown_lists_known_names() -> None:
    """An unknown name raises KeyError naming it and listing the known classes."""
    with pytest.raises(KeyError) as excinfo:
        errors.error_class_by_name("NoSuchError")
    message = excinfo.value.args[0]
    assert "'NoSuchError'" in message
    for name in ("AlchemiserError", "RateLimitError", "MarketClosedError", "StaleOrderError"):
        assert name in message


def test_error_class_by_name_is_case_sensitive() -> None:
    """Lookup is by exact class name; a differently-cased name is unknown."""
    with pytest.raises(KeyError):
        errors.error_class_by_name("ratelimiterror")


# --- serialisation -----------------------------------------------------------------------


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_to_dict_is_json_serialisable(name: str) -> None:
    """to_dict() of every class survives json.dumps/json.loads unchanged."""
    context = ErrorContext(
        operation="submit_order",
        component="trading",
        function_name="submit",
        request_id="req-1",
        additional_data={"symbol": "AAPL", "qty": 3},
    )
    error = _cls(name)(
        "went wrong", context=context, retry_count=1, retry_after_s=2.5, details={"qty": 3}
    )
    data = error.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["error_id"] == error.error_id
    assert data["error_type"] == name
    assert data["message"] == "went wrong"
    assert data["severity"] == error.severity.value
    assert data["recoverable"] is error.recoverable
    assert data["retry_count"] == 1
    assert data["max_retries"] == error.max_retries
    assert data["retry_after_s"] == 2.5
    assert data["context"]["operation"] == "submit_order"
    assert data["context"]["additional_data"] == {"symbol": "AAPL", "qty": 3}
    assert data["details"] == {"qty": 3}


def test_to_dict_without_context_has_null_context() -> None:
    """An error with no context serialises context as null."""
    data = errors.ValidationError("bad").to_dict()
    assert data["context"] is None
    assert json.loads(json.dumps(data))["context"] is None


def test_market_closed_to_dict_is_json_serialisable_with_next_open() -> None:
    """A MarketClosedError with a datetime next_open still serialises to JSON."""
    error = errors.MarketClosedError("closed", next_open=datetime(2025, 1, 2, 14, 30, tzinfo=UTC))
    assert json.loads(json.dumps(error.to_dict()))["error_type"] == "MarketClosedError"


def test_error_context_round_trips_and_ignores_unknown_keys() -> None:
    """ErrorContext.from_dict(to_dict()) rebuilds an equal context, dropping unknown keys."""
    context = ErrorContext(
        operation="fetch_quote", component="market_data", additional_data={"symbol": "SPY"}
    )
    data = context.to_dict()
    assert ErrorContext.from_dict(data) == context
    assert ErrorContext.from_dict({**data, "surprise": 1}) == context
    assert datetime.fromisoformat(data["timestamp"]).tzinfo is not None
