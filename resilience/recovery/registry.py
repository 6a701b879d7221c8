"""Which strategies are tried for which failure, in which order, and how often.

An application registers strategies per error class (optionally for some tasks only). For a
failure, the strategies of the error's class come first, then those of its base classes, each
in registration order, each strategy once: a class's own knowledge before its family's. They are
tried in that order until one recovers; "gave up" and "not applicable" pass to the next.

Recovery cannot loop: it runs at most once per failed attempt (attempts are bounded by the error
class's policy and by the deadline), and a task recovered by running again later may do so at
most ``max_recoveries`` times; after that only the retry policy decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from resilience.errors import AlchemiserError
from resilience.recovery.result import RecoveryOutcome, RecoveryResult
from resilience.recovery.strategy import ErrorRecoveryStrategy, RecoveryAttempt

__all__ = ["DEFAULT_MAX_RECOVERIES", "LIMIT_STRATEGY", "RecoveryRegistry"]

DEFAULT_MAX_RECOVERIES = 3
# The name the registry's own "no more recoveries" result is given.
LIMIT_STRATEGY = "recovery_limit"
ACTION_LIMIT = 300

_log = structlog.get_logger("alchemiser.recovery")


@dataclass(frozen=True, slots=True)
class _Registration:
    error_class: type[AlchemiserError]
    strategy: ErrorRecoveryStrategy
    tasks: frozenset[str]  # empty: every task
    excluding: tuple[type[AlchemiserError], ...]

    def applies_to(self, error: AlchemiserError, task_name: str) -> bool:
        return (not self.tasks or task_name in self.tasks) and not isinstance(error, self.excluding)


class RecoveryRegistry:
    """The strategies an application registered, by error class."""

    def __init__(self, *, max_recoveries: int = DEFAULT_MAX_RECOVERIES) -> None:
        if max_recoveries < 0:
            raise ValueError(f"max_recoveries must be 0 or more, got {max_recoveries}")
        self.max_recoveries = max_recoveries
        self._registrations: list[_Registration] = []

    def register(
        self,
        error_class: type[AlchemiserError],
        strategy: ErrorRecoveryStrategy,
        *,
        tasks: Iterable[str] = (),
        excluding: Iterable[type[AlchemiserError]] = (),
    ) -> None:
        """Try ``strategy`` on failures of ``error_class`` and its subclasses but those in
        ``excluding``, in ``tasks`` (every task if none are named)."""
        if not (isinstance(error_class, type) and issubclass(error_class, AlchemiserError)):
            raise TypeError(f"{error_class!r} is not an AlchemiserError class")
        if not getattr(strategy, "name", ""):
            raise ValueError(f"strategy {strategy!r} has no name")
        self._registrations.append(
            _Registration(error_class, strategy, frozenset(tasks), tuple(excluding))
        )

    @property
    def names(self) -> tuple[str, ...]:
        """Every registered strategy's name, once, in registration order."""
        return tuple(dict.fromkeys(r.strategy.name for r in self._registrations))

    def strategies_for(
        self, error: AlchemiserError, task_name: str
    ) -> tuple[ErrorRecoveryStrategy, ...]:
        """The strategies to try on ``error`` in ``task_name``, in order."""
        ordered: list[ErrorRecoveryStrategy] = []
        for cls in type(error).__mro__:
            for registration in self._registrations:
                strategy = registration.strategy
                if (
                    registration.error_class is cls
                    and registration.applies_to(error, task_name)
                    and all(known is not strategy for known in ordered)
                ):
                    ordered.append(strategy)
        return tuple(ordered)

    def recover(self, attempt: RecoveryAttempt) -> tuple[RecoveryResult, ...]:
        """Try the strategies for ``attempt`` until one recovers; every result, in order."""
        strategies = self.strategies_for(attempt.error, attempt.task_name)
        if not strategies:
            return ()
        if attempt.recoveries >= self.max_recoveries:
            return (
                RecoveryResult.gave_up(
                    LIMIT_STRATEGY,
                    f"recovery limit reached ({attempt.recoveries} of {self.max_recoveries})",
                ),
            )
        results: list[RecoveryResult] = []
        for strategy in strategies:
            result = self._try(strategy, attempt)
            results.append(result)
            if result.outcome is RecoveryOutcome.RECOVERED:
                break
        return tuple(results)

    @staticmethod
    def _try(strategy: ErrorRecoveryStrategy, attempt: RecoveryAttempt) -> RecoveryResult:
        try:
            result = strategy.recover(attempt)
        except Exception as failure:  # a strategy's fault must not lose the task
            _log.warning(
                "recovery_strategy_failed",
                strategy=strategy.name,
                task=attempt.task_name,
                error=repr(failure)[:ACTION_LIMIT],
            )
            return RecoveryResult.gave_up(
                strategy.name, f"raised {type(failure).__name__}: {failure}"[:ACTION_LIMIT]
            )
        if not isinstance(result, RecoveryResult):
            return RecoveryResult.gave_up(
                strategy.name, f"returned {type(result).__name__}, not a RecoveryResult"
            )
        return result
