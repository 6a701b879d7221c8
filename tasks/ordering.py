"""Order identity and deadlines: derived once, carried by every retry and replay."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from resilience.observability.outcomes import OutcomeCounter

if TYPE_CHECKING:
    from tasks.brokers.base import Order
    from tasks.payloads import OrderRequest

__all__ = [
    "DEADLINE_FORMAT",
    "already_placed_result",
    "derive_client_order_id",
    "fill_order_defaults",
    "order_differences",
    "parse_deadline",
    "parse_deadline_s",
]

DEADLINE_FORMAT = "an ISO-8601 datetime with a timezone, such as 2026-01-05T15:00:00Z"
# Longer than any ISO-8601 datetime: refused before parsing, and never echoed.
_DEADLINE_MAX_LENGTH = 64


def derive_client_order_id(seed: str) -> str:
    """A ``client_order_id`` derived from a stable seed (a task id, a rebalance id + leg)."""
    return f"alc-{seed}"[:128]


def fill_order_defaults(
    kwargs: dict[str, Any], *, seed: str, ttl_s: float, now_s: float
) -> dict[str, Any]:
    """``kwargs`` with ``client_order_id`` and ``valid_until`` filled in when absent."""
    filled = dict(kwargs)
    if not filled.get("client_order_id"):
        filled["client_order_id"] = derive_client_order_id(seed)
    if not filled.get("valid_until"):
        filled["valid_until"] = (
            datetime.fromtimestamp(now_s, UTC) + timedelta(seconds=ttl_s)
        ).isoformat()
    return filled


def parse_deadline(value: Any) -> datetime:
    """``valid_until`` as an aware UTC datetime: the one reading of a deadline, used by payload
    validation and by the deadline check alike; ``ValueError`` saying what a deadline is."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and len(value) <= _DEADLINE_MAX_LENGTH:
        text = value.strip()
        if _is_number(text):
            raise ValueError(f"valid_until must be {DEADLINE_FORMAT}, not a number")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"valid_until must be {DEADLINE_FORMAT}") from None
    elif isinstance(value, int | float):
        # Unix seconds or milliseconds? Refused rather than guessed.
        raise ValueError(f"valid_until must be {DEADLINE_FORMAT}, not a number")
    else:
        raise ValueError(f"valid_until must be {DEADLINE_FORMAT}")
    if parsed.tzinfo is None:
        raise ValueError("valid_until must carry a timezone (ISO-8601 with Z or +00:00)")
    return parsed.astimezone(UTC)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_deadline_s(value: Any) -> float | None:
    """``valid_until`` as Unix seconds; ``None`` if absent or unreadable, in which case payload
    validation (the same parser) refuses the task before it can act."""
    if value is None or value == "":
        return None
    try:
        return parse_deadline(value).timestamp()
    except ValueError:
        return None


_IDENTITY = ("symbol", "side", "qty", "type", "limit_price")


def order_differences(request: OrderRequest, existing: Order) -> dict[str, tuple[object, object]]:
    """Per field in which the broker's order under this ``client_order_id`` is not the order
    requested, (requested, held); empty: it is this order."""
    pairs = {name: (getattr(request, name), getattr(existing, name)) for name in _IDENTITY}
    return {name: pair for name, pair in pairs.items() if not _same(*pair)}


def _same(want: object, have: object) -> bool:
    if isinstance(want, float) and isinstance(have, int | float):
        # Brokers send quantities and prices as decimal strings: 0.1 may come back 0.1000000001.
        return math.isclose(want, have, rel_tol=1e-9)
    if isinstance(want, str) and isinstance(have, str):
        return want.upper() == have.upper()
    return want == have


def already_placed_result(
    existing: Order, *, outcomes: OutcomeCounter, task_name: str
) -> dict[str, Any]:
    """The result of an order an earlier delivery placed (``existing`` is this very order):
    logged and counted as a duplicate avoided."""
    structlog.get_logger("alchemiser.trading").info(
        "order_already_placed", client_order_id=existing.client_order_id
    )
    outcomes.incr("duplicate_avoided", task_name)
    return {"order": existing.to_dict(), "duplicate_avoided": True}
