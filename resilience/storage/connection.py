"""Redis clients with explicit timeouts and retry policy.

redis-py's defaults let a dead Redis block a call for seconds (see FIELD-NOTES); every client
Alchemiser makes is built here with bounded timeouts instead.
"""

from __future__ import annotations

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

__all__ = ["connect"]


def connect(
    url: str,
    *,
    socket_timeout_s: float = 1.0,
    connect_timeout_s: float = 1.0,
    retries: int = 2,
) -> Redis:
    """A client that decodes to ``str`` and gives up within about a second on a dead server."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries),
        health_check_interval=30,
    )
