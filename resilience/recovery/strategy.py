"""The seam between a failed attempt and the application's recovery knowledge: the
:class:`ErrorRecoveryStrategy` Protocol and the :class:`RecoveryAttempt` it is handed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from resilience.errors import AlchemiserError
from resilience.recovery.result import RecoveryResult

if TYPE_CHECKING:
    from resilience.task import ResilientTask

__all__ = ["ErrorRecoveryStrategy", "RecoveryAttempt"]


@dataclass(frozen=True, slots=True)
class RecoveryAttempt:
    """One failed attempt of a task, as a strategy sees it.

    ``failures`` counts the attempts that failed before this one; ``recoveries`` the recoveries
    this task already spent (a task may only recover so often: see
    :class:`~resilience.recovery.registry.RecoveryRegistry`). ``task`` reaches the application
    (its app, its runtime); the strategy must not retry or re-raise through it.
    """

    task: ResilientTask
    kwargs: Mapping[str, Any]
    error: AlchemiserError
    cause: BaseException
    failures: int
    recoveries: int
    now_s: float
    deadline_s: float | None

    @property
    def task_name(self) -> str:
        """The failed task's registered name."""
        return str(self.task.name)


class ErrorRecoveryStrategy(Protocol):
    """Something that may recover a failed attempt of a task (the plan's name).

    ``recover`` is called in the task's thread, at most once per failed attempt; what it does
    at a remote service (a lookup, a second provider) counts against the task's retry budget.
    An exception it raises is contained: the result is "gave up" and the retry policy decides.
    """

    name: str

    def recover(self, attempt: RecoveryAttempt) -> RecoveryResult:
        """Try to recover ``attempt``; say what was done."""
        ...
