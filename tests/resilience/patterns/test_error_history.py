"""The error history in Redis: what a handled error leaves in it, its bounds, its templates."""

from __future__ import annotations

import redis

from resilience.errors import InsufficientFundsError
from resilience.patterns.history import RETENTION_S, ErrorEvent, ErrorHistory
from resilience.patterns.templates import MessageTemplater
from resilience.policy.context import ErrorContext
from resilience.policy.handler import ErrorHandler
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
from tasks.classification import TRADING_MESSAGE_MASKS

T0 = 1_790_000_000.0


def test_a_handled_error_is_kept_as_a_template_with_its_variant(
    client: redis.Redis, keys: KeySpace
) -> None:
    clock = ManualClock(T0)
    history = ErrorHistory(client, keys, clock, templater=MessageTemplater(TRADING_MESSAGE_MASKS))
    handler = ErrorHandler(recorders=(history,))
    for order_id, symbol in (("alc-1a2b", "AAPL"), ("alc-9f8e", "MSFT")):
        handler.handle_error(
            InsufficientFundsError(f"order {order_id}: no buying power for 10 {symbol}"),
            ErrorContext(operation="tasks.submit_order", component="trading"),
            "trading",
        )
        clock.advance(5)
    first, second = history.events()
    assert first == ErrorEvent(
        at_s=T0,
        error_type="InsufficientFundsError",
        component="trading",
        operation="tasks.submit_order",
        template="order <id>: no buying power for <n> <symbol>",
        variant=first.variant,
    )
    assert (second.at_s, second.template) == (T0 + 5, first.template)
    assert first.variant != second.variant
    assert history.events(since_s=T0 + 1) == [second]
    assert 0 < client.ttl(keys.app_key("patterns", "errors")) <= RETENTION_S


def test_the_history_is_bounded(client: redis.Redis, keys: KeySpace) -> None:
    history = ErrorHistory(client, keys, ManualClock(T0), max_events=1_000)
    for start in range(0, 5_000, 500):
        history.append(
            *(
                ErrorEvent(T0 + i, "RateLimitError", "trading", "op", "429")
                for i in range(start, start + 500)
            )
        )
    kept = history.events()
    # Trimmed approximately (whole macro nodes), never below the bound.
    assert 1_000 <= len(kept) < 1_200
    assert kept[-1].at_s == T0 + 4_999
    assert [e.at_s for e in kept] == sorted(e.at_s for e in kept)
