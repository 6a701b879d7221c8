"""Validated payloads of the trading tasks (pydantic), with errors a person can act on."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self, TypeVar

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from resilience.errors import ValidationError
from resilience.policy.classify import pydantic_problems
from tasks.ordering import parse_deadline

__all__ = [
    "CLIENT_ORDER_ID_PATTERN",
    "SYMBOL_MAX_LENGTH",
    "SYMBOL_PATTERN",
    "CancelRequest",
    "OrderRequest",
    "QuoteRequest",
    "RebalanceRequest",
    "SyncRequest",
    "parse_payload",
]

# Equities (AAPL, BRK.B) and crypto pairs (BTC/USD), after upper-casing.
SYMBOL_PATTERN = r"^[A-Z]{1,6}([./][A-Z]{1,5})?$"
_SYMBOL = re.compile(SYMBOL_PATTERN)
SYMBOL_MAX_LENGTH = 12
CLIENT_ORDER_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
MAX_QTY = 1e9
MAX_PRICE = 1e7

M = TypeVar("M", bound=BaseModel)


def _upper(symbol: str) -> str:
    # ASCII only: str.upper() turns some other letters into ASCII ones (the dotless i into I,
    # the ff ligature into FF), symbols no one typed.
    return symbol.upper() if symbol.isascii() else symbol


def _ticker(symbol: str) -> str:
    """``symbol`` in upper case (``aapl`` is AAPL), or a sentence saying what a symbol is."""
    ticker = _upper(symbol)
    if not _SYMBOL.fullmatch(ticker):
        raise PydanticCustomError(
            "symbol",
            "a symbol is 1 to 6 letters, then optionally '.' or '/' and 1 to 5 letters, "
            "such as AAPL, BRK.B or BTC/USD",
        )
    return ticker


# Numbers and numeric strings would pass pydantic's datetime coercion as Unix time while the
# deadline check could not read them: both use the one parser instead.
Deadline = Annotated[datetime, BeforeValidator(parse_deadline)]

# The length is checked first, so a huge input costs nothing more and is never echoed.
Symbol = Annotated[str, Field(max_length=SYMBOL_MAX_LENGTH), AfterValidator(_ticker)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class OrderRequest(_Payload):
    """``tasks.submit_order`` keyword arguments (CONTRACT)."""

    symbol: Symbol
    side: Literal["buy", "sell"]
    qty: Annotated[float, Field(gt=0, le=MAX_QTY, allow_inf_nan=False)]
    type: Literal["market", "limit"] = "market"
    limit_price: Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)] | None = None
    client_order_id: Annotated[str, Field(pattern=CLIENT_ORDER_ID_PATTERN)]
    valid_until: Deadline

    @field_validator("qty", "limit_price", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value

    @model_validator(mode="after")
    def _limit_needs_price(self) -> Self:
        if self.type == "limit" and self.limit_price is None:
            raise ValueError("a limit order needs limit_price")
        if self.type == "market" and self.limit_price is not None:
            raise ValueError("a market order takes no limit_price")
        return self

    def to_kwargs(self) -> dict[str, Any]:
        """The JSON kwargs of ``tasks.submit_order``."""
        data = self.model_dump(mode="json")
        data["valid_until"] = self.valid_until.isoformat()
        return data


class CancelRequest(_Payload):
    """``tasks.cancel_order`` keyword arguments."""

    order_id: Annotated[str, Field(min_length=1, max_length=128, pattern=CLIENT_ORDER_ID_PATTERN)]


class QuoteRequest(_Payload):
    """``tasks.fetch_quote`` keyword arguments."""

    symbol: Symbol


class SyncRequest(_Payload):
    """``tasks.sync_positions`` takes no arguments."""


class RebalanceRequest(_Payload):
    """``tasks.rebalance``: target weights of equity per symbol (summing to at most 1)."""

    targets: dict[Symbol, Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(
        min_length=1, max_length=500
    )
    # Legs smaller than this share of equity are skipped, so a rerun does not churn on
    # spreads and rounding (a rebalancing band).
    min_drift: Annotated[float, Field(ge=0, le=0.5, allow_inf_nan=False)] = 0.001
    valid_until: Deadline | None = None
    # The oldest quote the legs may be sized on (default: ALCHEMISER_QUOTE_MAX_AGE_S).
    max_quote_age_s: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] | None = None

    @field_validator("targets", mode="before")
    @classmethod
    def _each_symbol_once(cls, value: Any) -> Any:
        """``{"aapl": 0.5, "AAPL": 0.5}`` would become one target of 0.5: refused instead."""
        if isinstance(value, dict):
            seen: set[str] = set()
            for key in value:
                if isinstance(key, str) and len(name := _upper(key.strip())) <= SYMBOL_MAX_LENGTH:
                    if name in seen:
                        raise ValueError(f"{name} is named more than once (in any case)")
                    seen.add(name)
        return value

    @field_validator("targets", mode="after")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        total = sum(value.values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"target weights sum to {total:.4f}; they must sum to at most 1")
        return value


def parse_payload(model: type[M], kwargs: dict[str, Any]) -> M:
    """Validate ``kwargs`` as ``model``; a :class:`ValidationError` that names every problem."""
    try:
        return model.model_validate(kwargs)
    except pydantic.ValidationError as invalid:
        raise ValidationError(
            f"invalid {model.__name__} payload: {pydantic_problems(invalid)}"[:1000],
            details={"problems": invalid.error_count()},
        ) from None
