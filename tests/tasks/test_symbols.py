"""Symbols in task payloads: lower case is upper-cased (``aapl`` is AAPL); anything that is not
a symbol is refused with a sentence saying what one is, never with a regular expression."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from resilience.errors import ValidationError
from tasks.payloads import OrderRequest, QuoteRequest, RebalanceRequest, parse_payload

SENTENCE = (
    "symbol: a symbol is 1 to 6 letters, then optionally '.' or '/' and 1 to 5 letters, "
    "such as AAPL, BRK.B or BTC/USD"
)


def order(symbol: str) -> dict[str, object]:
    """A valid order of ``symbol``."""
    return {
        "symbol": symbol,
        "side": "buy",
        "qty": 1,
        "client_order_id": "alc-symbol-1",
        "valid_until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }


@pytest.mark.parametrize(
    ("given", "symbol"),
    [("aapl", "AAPL"), ("Msft", "MSFT"), ("brk.b", "BRK.B"), ("btc/usd", "BTC/USD"),
     (" spy ", "SPY")],
)  # fmt: skip
def test_a_symbol_in_lower_or_mixed_case_is_upper_cased(given: str, symbol: str) -> None:
    """Orders, quotes and rebalance targets carry the upper-case symbol."""
    assert parse_payload(OrderRequest, order(given)).symbol == symbol
    assert parse_payload(OrderRequest, order(given)).to_kwargs()["symbol"] == symbol
    assert parse_payload(QuoteRequest, {"symbol": given}).symbol == symbol
    assert parse_payload(RebalanceRequest, {"targets": {given: 0.5}}).targets == {symbol: 0.5}


@pytest.mark.parametrize(
    "given", ["AA PL", "ABCDEFG", "AAPL!", "BRK.", "123", "\u0131bm", "\ufb00"]
)
def test_what_is_not_a_symbol_is_refused_with_a_sentence(given: str) -> None:
    """No regex, no pattern: what a symbol is, with examples (dotless i and ligatures are not
    upper-cased into ASCII)."""
    with pytest.raises(ValidationError) as refused:
        parse_payload(QuoteRequest, {"symbol": given})
    assert refused.value.message == f"invalid QuoteRequest payload: {SENTENCE}"


def test_a_rebalance_naming_a_symbol_twice_in_any_case_is_refused() -> None:
    """``{"aapl": .5, "AAPL": .4}`` is not silently one target: refused, naming AAPL."""
    with pytest.raises(ValidationError) as refused:
        parse_payload(RebalanceRequest, {"targets": {"aapl": 0.5, "AAPL": 0.4}})
    assert "AAPL is named more than once (in any case)" in refused.value.message
