"""Order identity and deadlines: derived once, carried by every retry and replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["derive_client_order_id", "fill_order_defaults", "parse_deadline_s"]


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


def parse_deadline_s(value: Any) -> float | None:
    """``valid_until`` as Unix seconds; ``None`` if absent or unreadable (validation says why)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()
