"""The recovery registry, unit level: which strategies a failure gets, in which order, how often,
and a strategy's fault contained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from resilience.errors import (
    AlchemiserError,
    InsufficientFundsError,
    OrderExecutionError,
    RateLimitError,
    TradingClientError,
)
from resilience.recovery.registry import LIMIT_STRATEGY, RecoveryRegistry
from resilience.recovery.result import RecoveryOutcome, RecoveryResult
from resilience.recovery.strategy import RecoveryAttempt


@dataclass
class Scripted:
    """A strategy answering with ``answer`` (or raising it), remembering what it was asked."""

    name: str
    answer: RecoveryResult | Exception | Any = None
    seen: list[RecoveryAttempt] = field(default_factory=list)

    def recover(self, attempt: RecoveryAttempt) -> RecoveryResult:
        self.seen.append(attempt)
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer is None:
            return RecoveryResult.not_applicable(self.name, "nothing to do")
        return self.answer  # type: ignore[no-any-return]


class _Task:
    name = "unit.task"

    class request:  # noqa: N801 - shaped like Celery's request context
        id = "t-1"


def attempt(
    error: AlchemiserError, *, recoveries: int = 0, task: str = "unit.task"
) -> RecoveryAttempt:
    named = type("NamedTask", (_Task,), {"name": task})()
    return RecoveryAttempt(
        task=named,  # type: ignore[arg-type]
        kwargs={},
        error=error,
        cause=error,
        failures=0,
        recoveries=recoveries,
        now_s=1_000.0,
        deadline_s=None,
    )


def test_the_errors_own_class_comes_before_its_family_each_in_registration_order() -> None:
    registry = RecoveryRegistry()
    family_first = Scripted("family-first")
    family_second = Scripted("family-second")
    own = Scripted("own")
    registry.register(TradingClientError, family_first)
    registry.register(TradingClientError, family_second)
    registry.register(InsufficientFundsError, own)
    registry.register(RateLimitError, Scripted("unrelated"))
    names = [s.name for s in registry.strategies_for(InsufficientFundsError("no"), "unit.task")]
    assert names == ["own", "family-first", "family-second"]
    # OrderExecutionError sits between: it has none of its own.
    names = [s.name for s in registry.strategies_for(OrderExecutionError("no"), "unit.task")]
    assert names == ["family-first", "family-second"]
    assert registry.strategies_for(AlchemiserError("no"), "unit.task") == ()


def test_a_strategy_registered_on_two_classes_is_tried_once() -> None:
    registry = RecoveryRegistry()
    lookup = Scripted("lookup")
    registry.register(InsufficientFundsError, lookup)
    registry.register(TradingClientError, lookup)
    assert registry.strategies_for(InsufficientFundsError("no"), "t") == (lookup,)
    assert registry.names == ("lookup",)


def test_a_strategy_for_some_tasks_is_not_offered_to_others() -> None:
    registry = RecoveryRegistry()
    registry.register(TradingClientError, Scripted("orders"), tasks=["tasks.submit_order"])
    error = TradingClientError("down")
    assert [s.name for s in registry.strategies_for(error, "tasks.submit_order")] == ["orders"]
    assert registry.strategies_for(error, "tasks.fetch_quote") == ()


def test_strategies_are_tried_until_one_recovers() -> None:
    registry = RecoveryRegistry()
    passes = Scripted("passes")
    gives_up = Scripted("gives-up", RecoveryResult.gave_up("gives-up", "tried, no luck"))
    recovers = Scripted("recovers", RecoveryResult.recovered("recovers", "done", value={"ok": 1}))
    never = Scripted("never")
    for strategy in (passes, gives_up, recovers, never):
        registry.register(TradingClientError, strategy)
    results = registry.recover(attempt(TradingClientError("down")))
    assert [(r.strategy, r.outcome) for r in results] == [
        ("passes", RecoveryOutcome.NOT_APPLICABLE),
        ("gives-up", RecoveryOutcome.GAVE_UP),
        ("recovers", RecoveryOutcome.RECOVERED),
    ]
    assert results[-1].value == {"ok": 1}
    assert never.seen == []


def test_a_strategy_that_raises_or_answers_garbage_gave_up_and_the_next_is_tried() -> None:
    registry = RecoveryRegistry()
    registry.register(TradingClientError, Scripted("raises", ConnectionError("secondary down")))
    registry.register(TradingClientError, Scripted("garbage", "not a result"))
    last = Scripted("last", RecoveryResult.gave_up("last", "no"))
    registry.register(TradingClientError, last)
    results = registry.recover(attempt(TradingClientError("down")))
    assert [(r.strategy, r.outcome, r.action) for r in results] == [
        ("raises", RecoveryOutcome.GAVE_UP, "raised ConnectionError: secondary down"),
        ("garbage", RecoveryOutcome.GAVE_UP, "returned str, not a RecoveryResult"),
        ("last", RecoveryOutcome.GAVE_UP, "no"),
    ]


def test_past_the_recovery_limit_no_strategy_runs() -> None:
    registry = RecoveryRegistry(max_recoveries=2)
    wait = Scripted("wait", RecoveryResult.recovered("wait", "waited", retry_in_s=1.0))
    registry.register(RateLimitError, wait)
    assert registry.recover(attempt(RateLimitError("429"), recoveries=1))[0].strategy == "wait"
    (limit,) = registry.recover(attempt(RateLimitError("429"), recoveries=2))
    assert (limit.strategy, limit.outcome) == (LIMIT_STRATEGY, RecoveryOutcome.GAVE_UP)
    assert limit.action == "recovery limit reached (2 of 2)"
    assert len(wait.seen) == 1


def test_registration_refuses_what_cannot_work() -> None:
    registry = RecoveryRegistry()
    with pytest.raises(TypeError, match="not an AlchemiserError class"):
        registry.register(ValueError, Scripted("x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no name"):
        registry.register(TradingClientError, Scripted(""))
    with pytest.raises(ValueError, match="0 or more"):
        RecoveryRegistry(max_recoveries=-1)


def test_a_result_either_finishes_the_task_or_runs_it_again() -> None:
    done = RecoveryResult.recovered("s", "found it", value={"id": 1}, broker_order_id="b-1")
    later = RecoveryResult.recovered("s", "wait for the slot", retry_in_s=2.5)
    assert done.finishes_task and not later.finishes_task
    assert done.to_record() == {
        "strategy": "s",
        "outcome": "recovered",
        "action": "found it",
        "details": {"broker_order_id": "b-1"},
    }
    assert later.to_record()["retry_in_s"] == 2.5
    with pytest.raises(ValueError, match="only a recovered result"):
        RecoveryResult("s", RecoveryOutcome.GAVE_UP, "no", retry_in_s=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        RecoveryResult.recovered("s", "wait", retry_in_s=float("nan"))
    with pytest.raises(ValueError, match="not both"):
        RecoveryResult.recovered("s", "both", value=1, retry_in_s=1.0)


def test_a_registration_may_leave_out_subclasses() -> None:
    registry = RecoveryRegistry()
    lookup = Scripted("lookup")
    registry.register(TradingClientError, lookup, excluding=[OrderExecutionError])
    assert registry.strategies_for(TradingClientError("503"), "t") == (lookup,)
    assert registry.strategies_for(InsufficientFundsError("no"), "t") == ()
