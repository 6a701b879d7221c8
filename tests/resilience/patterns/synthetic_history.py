"""A synthetic four-week error history with planted patterns, for the detectors' tests."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from resilience.patterns.history import ErrorEvent

DAY_S = 86_400
# 2026-11-02 00:00 UTC, a Monday.
START_S = 1_793_577_600.0
NOISE_TYPES = (
    "TradingClientError",
    "RateLimitError",
    "NotificationError",
    "ValidationError",
    "FileOperationError",
    "LoggingError",
)


@dataclass(frozen=True)
class Planted:
    kind: str
    error_types: tuple[str, ...]


PLANTED = (
    Planted("template", ("InsufficientFundsError",)),
    Planted("time_of_day", ("MarketDataError",)),
    Planted("sequence", ("WebSocketError", "DataProviderError")),
    Planted("correlation", ("DatabaseError", "S3OperationError")),
)


def event(at_s: float, error_type: str, message: str, template: str) -> ErrorEvent:
    return ErrorEvent(
        at_s=at_s,
        error_type=error_type,
        component="trading",
        operation="tasks.submit_order",
        template=template,
        variant=zlib.crc32(message.encode()),
    )


def history(days: int = 28, seed: int = 11) -> list[ErrorEvent]:
    rng = random.Random(seed)
    end_s = START_S + days * DAY_S
    events: list[ErrorEvent] = []

    def uniform(n: int) -> list[float]:
        return [rng.uniform(START_S, end_s) for _ in range(n)]

    # Background: each noise type about once an hour, always the same message.
    for error_type in NOISE_TYPES:
        message = f"{error_type}: service unavailable"
        events += [event(t, error_type, message, message) for t in uniform(days * 24)]
    # One template across 1,000 distinct order ids.
    for t in uniform(1_000):
        order_id = f"alc-{rng.getrandbits(48):012x}"
        message = f"insufficient buying power for order {order_id}"
        events.append(
            event(t, "InsufficientFundsError", message, "insufficient buying power for order <id>")
        )
    # Time of day: market-data errors pile up at the 14:30 UTC open on weekdays, few otherwise.
    for day in range(days):
        if (day % 7) < 5:
            opening = START_S + day * DAY_S + 14.5 * 3600
            events += [
                event(
                    rng.uniform(opening, opening + 1800),
                    "MarketDataError",
                    "quote feed 503",
                    "quote feed <n>",
                )
                for _ in range(rng.randint(15, 25))
            ]
    events += [
        event(t, "MarketDataError", "quote feed 503", "quote feed <n>") for t in uniform(days * 4)
    ]
    # A then B: a stream drop, then (10 s to 2 min later) a provider error.
    for t in uniform(200):
        events.append(event(t, "WebSocketError", "stream closed", "stream closed"))
        delay = rng.uniform(10, 120)
        events.append(event(t + delay, "DataProviderError", "snapshot failed", "snapshot failed"))
    events += [
        event(t, "DataProviderError", "snapshot failed", "snapshot failed") for t in uniform(60)
    ]
    # Correlated: the database and S3 fail in the same bursts, in either order.
    for burst in uniform(150):
        for error_type in ("DatabaseError", "S3OperationError"):
            events += [
                event(
                    burst + rng.uniform(0, 60), error_type, "connection reset", "connection reset"
                )
                for _ in range(rng.randint(2, 4))
            ]
    return sorted(events, key=lambda e: e.at_s)
