"""The demo replays, after the outage, the dead letters that only ran out of attempts."""

from __future__ import annotations

import pytest

from worker.demo import _transient


@pytest.mark.parametrize(
    ("error_type", "replayed"),
    [
        ("TradingClientError", True),
        # A flaky phase's 429s can exhaust an order's attempts; it is as transient as a 503.
        ("RateLimitError", True),
        ("InsufficientFundsError", False),
        ("ValidationError", False),
        ("MalformedMessageError", False),
        ("NotAnAlchemiserError", False),
    ],
)
def test_the_demo_replays_only_dead_letters_whose_policy_retries(
    error_type: str, replayed: bool
) -> None:
    assert _transient(error_type) is replayed
