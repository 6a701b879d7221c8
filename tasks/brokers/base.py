"""The BrokerAdapter Protocol and the value types every adapter speaks."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from tasks.payloads import OrderRequest

__all__ = ["Account", "BrokerAPIError", "BrokerAdapter", "Order", "Position", "Quote"]


class BrokerAPIError(Exception):
    """An HTTP error as a broker's REST API answers it (status, body, headers).

    Shaped like alpaca-py's ``APIError`` so one classifier rule maps both into the hierarchy.
    """

    def __init__(self, status_code: int, body: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {body}")
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the broker holds it."""

    id: str
    client_order_id: str
    symbol: str
    side: str
    qty: float
    type: str
    limit_price: float | None
    status: str  # accepted | filled | canceled
    filled_qty: float
    filled_avg_price: float | None
    submitted_at: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    def to_json(self) -> str:
        """Compact JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Order:
        """Rebuild from :meth:`to_dict` (extra keys ignored)."""
        fields: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Quote:
    """Latest bid and ask."""

    symbol: str
    bid: float
    ask: float
    at: str

    @property
    def mid(self) -> float:
        """Midpoint price."""
        return (self.bid + self.ask) / 2.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Position:
    """Shares held of one symbol."""

    symbol: str
    qty: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Account:
    """Cash and buying power."""

    cash: float
    buying_power: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


class BrokerAdapter(Protocol):
    """What the trading tasks need of a broker. Adapters raise their API's own errors
    (``BrokerAPIError``, timeouts, connection errors); the task classifies them."""

    def submit_order(self, order: OrderRequest) -> Order:
        """Place an order; a repeated ``client_order_id`` is refused (HTTP 422)."""
        ...

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """The order placed with this ``client_order_id``, if the broker has one."""
        ...

    def get_order(self, order_id: str) -> Order | None:
        """The order with broker id ``order_id``, if the broker has one."""
        ...

    def cancel_order(self, order_id: str) -> Order:
        """Cancel an open order by broker id."""
        ...

    def get_quote(self, symbol: str) -> Quote:
        """Latest quote of ``symbol``."""
        ...

    def list_positions(self) -> list[Position]:
        """Every open position."""
        ...

    def get_account(self) -> Account:
        """Cash and buying power."""
        ...

    def list_orders(self) -> list[Order]:
        """Every order the broker knows (paper: all; live brokers: recent)."""
        ...
