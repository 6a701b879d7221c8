"""One failed attempt through the registry: the strategies' results, counted and logged.

Called by :class:`~resilience.task.ResilientTask` after the attempt is classified and recorded
on its resources, before its retry decision is final.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from resilience.recovery.registry import RecoveryRegistry
from resilience.recovery.result import RecoveryOutcome, RecoveryResult
from resilience.recovery.strategy import RecoveryAttempt
from resilience.scrub import Scrubber

__all__ = ["BUDGET_STRATEGY", "RecoveryCounter", "recovered_by", "run_recovery"]

# The name of the result when the retry budget refuses to pay for a recovery.
BUDGET_STRATEGY = "retry_budget"

_log = structlog.get_logger("alchemiser.recovery")


class RecoveryCounter(Protocol):
    """Where the results are counted per strategy and outcome (fleet-wide metrics)."""

    def record_recovery(self, results: tuple[RecoveryResult, ...]) -> None:
        """Count each result."""


def run_recovery(
    registry: RecoveryRegistry,
    attempt: RecoveryAttempt,
    *,
    budget_paid: bool,
    counter: RecoveryCounter | None,
    scrubber: Scrubber,
) -> tuple[RecoveryResult, ...]:
    """The results of the strategies registered for ``attempt`` (empty if none are). A recovery
    the retry budget did not pay for is not tried: one "gave up" result says so."""
    if not registry.strategies_for(attempt.error, attempt.task_name):
        return ()
    if budget_paid:
        results = registry.recover(attempt)
    else:
        results = (RecoveryResult.gave_up(BUDGET_STRATEGY, "retry budget exhausted"),)
    for result in results:
        _log.info(
            "recovery_tried",
            task=attempt.task_name,
            task_id=str(attempt.task.request.id),
            error_type=attempt.error.error_type,
            strategy=result.strategy,
            outcome=result.outcome.value,
            action=scrubber.text(result.action),
            details=scrubber(dict(result.details)),
        )
    if counter is not None:
        counter.record_recovery(results)
    return results


def recovered_by(results: tuple[RecoveryResult, ...]) -> RecoveryResult | None:
    """The result that recovered the attempt, if one did."""
    return next((r for r in results if r.outcome is RecoveryOutcome.RECOVERED), None)
