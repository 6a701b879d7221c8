"""Tests of ``tasks.payloads``: trading task payloads validated with errors a person can act on."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.errors import ValidationError
from tasks.payloads import (
    CancelRequest,
    OrderRequest,
    QuoteRequest,
    RebalanceRequest,
    SyncRequest,
    parse_payload,
)

VALID_UNTIL = "2026-01-05T15:00:00+00:00"


def order(**changes: Any) -> dict[str, Any]:
    """Kwargs of a valid market order, with ``changes`` applied (``None`` removes a key)."""
    kwargs: dict[str, Any] = {
        "symbol": "AAPL",
        "side": "buy",
        "qty": 10,
        "client_order_id": "alc-123",
        "valid_until": VALID_UNTIL,
    }
    for key, value in changes.items():
        if value is None:
            kwargs.pop(key, None)
        else:
            kwargs[key] = value
    return kwargs


def invalid_message(model: type[Any], kwargs: dict[str, Any]) -> str:
    """The message of the ``ValidationError`` that parsing ``kwargs`` raises."""
    with pytest.raises(ValidationError) as invalid:
        parse_payload(model, kwargs)
    return invalid.value.message


# --- valid orders ------------------------------------------------------------------------------


def test_valid_market_order() -> None:
    """A market order parses with defaults: type market, no limit price, UTC deadline."""
    parsed = parse_payload(OrderRequest, order())
    assert parsed.symbol == "AAPL"
    assert parsed.side == "buy"
    assert parsed.qty == 10.0
    assert parsed.type == "market"
    assert parsed.limit_price is None
    assert parsed.client_order_id == "alc-123"
    assert parsed.valid_until == datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def test_valid_limit_order() -> None:
    """A limit order with a limit price parses."""
    parsed = parse_payload(OrderRequest, order(type="limit", limit_price=187.25, side="sell"))
    assert (parsed.type, parsed.limit_price, parsed.side) == ("limit", 187.25, "sell")


def test_valid_until_is_normalised_to_utc() -> None:
    """A deadline in another zone is converted to UTC, same instant."""
    parsed = parse_payload(OrderRequest, order(valid_until="2026-01-05T10:00:00-05:00"))
    assert parsed.valid_until.tzinfo == UTC
    assert parsed.valid_until == datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("symbol", ["A", "BRK.B", "BTC/USD", "GOOGL"])
def test_symbol_shapes_accepted(symbol: str) -> None:
    """Equity tickers, class shares and crypto pairs are accepted."""
    assert parse_payload(OrderRequest, order(symbol=symbol)).symbol == symbol


# --- clear errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"qty": -5}, "qty", "greater than 0"),
        ({"qty": 0}, "qty", "greater than 0"),
        ({"qty": math.nan}, "qty", "finite number"),
        ({"qty": math.inf}, "qty", "finite number"),
        ({"qty": 2e9}, "qty", "less than or equal"),
        (
            {"type": "limit", "limit_price": math.nan},
            "limit_price",
            "finite number",
        ),
        ({"type": "limit", "limit_price": math.inf}, "limit_price", "finite number"),
        ({"type": "limit", "limit_price": -1.0}, "limit_price", "greater than 0"),
        ({"side": "hold"}, "side", "'buy' or 'sell'"),
        ({"symbol": "ABCDEFGHIJKLM"}, "symbol", "at most 12 characters"),
        ({"symbol": "ABCDEFG"}, "symbol", "a symbol is 1 to 6 letters"),
        ({"symbol": "AA PL"}, "symbol", "a symbol is 1 to 6 letters"),
        ({"type": "stop"}, "type", "'market' or 'limit'"),
        ({"client_order_id": "has space"}, "client_order_id", "pattern"),
        ({"client_order_id": "x" * 129}, "client_order_id", "pattern"),
        ({"client_order_id": None}, "client_order_id", "Field required"),
        ({"valid_until": None}, "valid_until", "Field required"),
        ({"valid_until": "soon"}, "valid_until", "datetime"),
        ({"valid_until": "2026-01-05T15:00:00"}, "valid_until", "must carry a timezone"),
        ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
    ],
)
def test_invalid_orders_name_the_field(changes: dict[str, Any], field: str, says: str) -> None:
    """Each invalid order is refused with a ValidationError naming the field and the rule."""
    message = invalid_message(OrderRequest, order(**changes))
    assert message.startswith("invalid OrderRequest payload: ")
    assert f"{field}: " in message
    assert says in message


def test_limit_order_without_limit_price_is_refused() -> None:
    """A limit order must carry ``limit_price``."""
    message = invalid_message(OrderRequest, order(type="limit"))
    assert "a limit order needs limit_price" in message


def test_market_order_with_limit_price_is_refused() -> None:
    """A market order must not carry ``limit_price``."""
    message = invalid_message(OrderRequest, order(limit_price=10.0))
    assert "a market order takes no limit_price" in message


def test_naive_valid_until_datetime_is_refused() -> None:
    """A naive ``datetime`` object is refused like a naive string."""
    message = invalid_message(OrderRequest, order(valid_until=datetime(2026, 1, 5, 15, 0)))
    assert "valid_until: " in message
    assert "must carry a timezone" in message


def test_ten_megabyte_symbol_gives_a_short_error() -> None:
    """A 10 MB symbol is refused with a bounded message that does not echo the input."""
    error_message = invalid_message(OrderRequest, order(symbol="A" * 10_000_000))
    assert "symbol: String should have at most 12 characters" in error_message
    assert len(error_message) <= 1000
    assert "AAAAAAAAAAAAAAAAAAAA" not in error_message


def test_every_problem_is_listed_and_counted() -> None:
    """Several problems are reported together, with their number in ``details``."""
    with pytest.raises(ValidationError) as invalid:
        parse_payload(OrderRequest, order(qty=-1, side="hold", symbol="x!"))
    assert invalid.value.details == {"problems": 3}
    for field in ("qty: ", "side: ", "symbol: "):
        assert field in invalid.value.message


def test_boolean_qty_is_refused() -> None:
    """``qty: true`` is not a quantity."""
    invalid_message(OrderRequest, order(qty=True))


# --- other payloads ----------------------------------------------------------------------------


def test_rebalance_weights_summing_above_one_are_refused() -> None:
    """Target weights may sum to at most 1."""
    message = invalid_message(RebalanceRequest, {"targets": {"AAPL": 0.6, "MSFT": 0.5}})
    assert "targets: " in message
    assert "sum to 1.1000" in message


def test_rebalance_accepts_weights_summing_to_one() -> None:
    """Weights summing exactly to 1 (up to float error) are accepted."""
    parsed = parse_payload(RebalanceRequest, {"targets": {"AAPL": 0.1, "MSFT": 0.2, "SPY": 0.7}})
    assert parsed.targets == {"AAPL": 0.1, "MSFT": 0.2, "SPY": 0.7}


@pytest.mark.parametrize(
    ("targets", "says"),
    [
        ({}, "at least 1"),
        ({"AAPL": -0.1}, "greater than or equal to 0"),
        ({"AA PL": 0.5}, "a symbol is 1 to 6 letters"),
    ],
)
def test_rebalance_invalid_targets(targets: dict[str, float], says: str) -> None:
    """Empty targets, negative weights and bad symbols are refused."""
    message = invalid_message(RebalanceRequest, {"targets": targets})
    assert "targets" in message
    assert says in message


@pytest.mark.parametrize("kwargs", [{"x": 1}, {"symbol": "AAPL"}, {"force": True}])
def test_sync_request_rejects_any_kwarg(kwargs: dict[str, Any]) -> None:
    """``tasks.sync_positions`` takes no arguments at all."""
    assert parse_payload(SyncRequest, {}) == SyncRequest()
    message = invalid_message(SyncRequest, kwargs)
    assert "Extra inputs are not permitted" in message


def test_cancel_and_quote_requests() -> None:
    """Cancel needs an order id; quote needs a valid symbol."""
    assert parse_payload(CancelRequest, {"order_id": "abc-1"}).order_id == "abc-1"
    assert "order_id: " in invalid_message(CancelRequest, {"order_id": ""})
    assert parse_payload(QuoteRequest, {"symbol": "SPY"}).symbol == "SPY"
    assert "symbol: " in invalid_message(QuoteRequest, {"symbol": "SPY!"})


# --- round trip --------------------------------------------------------------------------------


def test_to_kwargs_round_trips_through_parse_payload() -> None:
    """``to_kwargs`` is JSON and parses back to an equal request."""
    request = parse_payload(OrderRequest, order(type="limit", limit_price=99.5))
    kwargs = request.to_kwargs()
    assert kwargs["valid_until"] == VALID_UNTIL
    assert parse_payload(OrderRequest, kwargs) == request


@settings(max_examples=100, deadline=None)
@given(
    qty=st.floats(min_value=1e-6, max_value=1e9),
    limit=st.one_of(st.none(), st.floats(min_value=0.01, max_value=1e7)),
    side=st.sampled_from(["buy", "sell"]),
    offset_min=st.integers(-12 * 60, 14 * 60),
    moment=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1)),
)
def test_to_kwargs_round_trip_property(
    qty: float, limit: float | None, side: str, offset_min: int, moment: datetime
) -> None:
    """Any valid order survives ``to_kwargs`` and ``parse_payload`` unchanged."""
    zone = timezone(timedelta(minutes=offset_min))
    request = OrderRequest(
        symbol="MSFT",
        side=side,  # type: ignore[arg-type]
        qty=qty,
        type="market" if limit is None else "limit",
        limit_price=limit,
        client_order_id="alc-x",
        valid_until=moment.replace(tzinfo=zone),
    )
    assert parse_payload(OrderRequest, request.to_kwargs()) == request
