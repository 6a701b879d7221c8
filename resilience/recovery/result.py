"""What a recovery strategy did about one failure: recovered, gave up, or not applicable."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecoveryOutcome", "RecoveryResult"]


class RecoveryOutcome(enum.StrEnum):
    """How a strategy's try ended."""

    RECOVERED = "recovered"  # the task's work is done (``value``) or will be (``retry_in_s``)
    GAVE_UP = "gave_up"  # it applied and could not recover: the retry policy decides
    NOT_APPLICABLE = "not_applicable"  # nothing for it to do with this failure


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    """One strategy's answer to one failed attempt.

    A recovered result either carries the task's result (``value``: the work is done, the task
    succeeds) or ``retry_in_s`` (the task runs again after that long without spending an
    attempt, e.g. at the shared rate limiter's next slot). ``action`` says in one sentence what
    was done; it goes to the attempt history, the dead letter and the error tracker, so it holds
    no secret. ``details`` is small JSON.
    """

    strategy: str
    outcome: RecoveryOutcome
    action: str
    value: Any = None
    retry_in_s: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.retry_in_s is not None:
            if self.outcome is not RecoveryOutcome.RECOVERED:
                raise ValueError("only a recovered result may ask to run again")
            if not self.retry_in_s >= 0:
                raise ValueError(f"retry_in_s must be a non-negative number, got {self.retry_in_s}")
            if self.value is not None:
                raise ValueError("a result runs the task again or finishes it, not both")

    @classmethod
    def recovered(
        cls,
        strategy: str,
        action: str,
        *,
        value: Any = None,
        retry_in_s: float | None = None,
        **details: Any,
    ) -> RecoveryResult:
        """The failure is recovered: finished with ``value``, or to run again in ``retry_in_s``."""
        return cls(strategy, RecoveryOutcome.RECOVERED, action, value, retry_in_s, details)

    @classmethod
    def gave_up(cls, strategy: str, action: str, **details: Any) -> RecoveryResult:
        """The strategy applied and could not recover."""
        return cls(strategy, RecoveryOutcome.GAVE_UP, action, details=details)

    @classmethod
    def not_applicable(cls, strategy: str, why: str) -> RecoveryResult:
        """Nothing for the strategy to do with this failure."""
        return cls(strategy, RecoveryOutcome.NOT_APPLICABLE, why)

    @property
    def finishes_task(self) -> bool:
        """Recovered with the task's result: the task succeeds now."""
        return self.outcome is RecoveryOutcome.RECOVERED and self.retry_in_s is None

    def to_record(self) -> dict[str, Any]:
        """JSON for the attempt history and the dead letter (the value is not kept)."""
        record: dict[str, Any] = {
            "strategy": self.strategy,
            "outcome": self.outcome.value,
            "action": self.action,
        }
        if self.retry_in_s is not None:
            record["retry_in_s"] = round(self.retry_in_s, 3)
        if self.details:
            record["details"] = dict(self.details)
        return record
