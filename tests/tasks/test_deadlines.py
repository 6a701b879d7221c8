"""Tests of the one deadline parser shared by payload validation and the deadline check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from resilience.errors import ValidationError
from tasks.ordering import parse_deadline, parse_deadline_s
from tasks.payloads import OrderRequest, RebalanceRequest, parse_payload

ORDER: dict[str, Any] = {
    "symbol": "AAPL",
    "side": "buy",
    "qty": 1,
    "client_order_id": "alc-1",
}

NUMBERS = [1, 1700000000, 1700000000.0, "1", "1700000000", " 1700000000.5 ", "1e9"]


@pytest.mark.parametrize("value", NUMBERS)
def test_numbers_are_refused_by_validation(value: Any) -> None:
    """A number or numeric string is not a deadline: the order is refused, naming the format."""
    with pytest.raises(ValidationError) as invalid:
        parse_payload(OrderRequest, {**ORDER, "valid_until": value})
    assert "valid_until: " in invalid.value.message
    assert "ISO-8601 datetime with a timezone" in invalid.value.message
    assert "not a number" in invalid.value.message


@pytest.mark.parametrize("value", NUMBERS)
def test_numbers_are_refused_by_rebalance_validation(value: Any) -> None:
    """A rebalance's optional deadline is read by the same parser."""
    with pytest.raises(ValidationError, match="not a number"):
        parse_payload(RebalanceRequest, {"targets": {"AAPL": 0.5}, "valid_until": value})


@pytest.mark.parametrize(
    "value",
    ["2026-01-05T15:00:00Z", "2026-01-05T10:00:00-05:00", datetime(2026, 1, 5, 15, tzinfo=UTC)],
)
def test_validation_and_enforcement_read_the_same_instant(value: Any) -> None:
    """An accepted deadline is the instant the deadline check enforces."""
    parsed = parse_payload(OrderRequest, {**ORDER, "valid_until": value}).valid_until
    assert parsed == datetime(2026, 1, 5, 15, tzinfo=UTC)
    assert parse_deadline_s(value) == parsed.timestamp() == 1767625200.0


@pytest.mark.parametrize("value", [*NUMBERS, "soon", "2026-01-05T15:00:00", True, ["x"]])
def test_every_value_validation_refuses_has_no_deadline(value: Any) -> None:
    """Whatever validation refuses, the deadline check reads as absent (the body refuses it)."""
    with pytest.raises(ValueError):
        parse_deadline(value)
    assert parse_deadline_s(value) is None


def test_overlong_string_is_refused_without_parsing() -> None:
    """A string longer than any ISO-8601 datetime is refused and not echoed."""
    with pytest.raises(ValueError) as invalid:
        parse_deadline("2099-01-05T15:00:00Z" + " " * 100)
    assert "2099" not in str(invalid.value)
