"""Recovery from "too many requests": wait for the shared limiter's next slot, spending no
attempt. The fleet's limiter was already held back by the server's Retry-After when the failure
was recorded, so every worker waits for the same slot."""

from __future__ import annotations

from resilience.errors import RateLimitError
from resilience.guard.status import GuardStatus
from resilience.recovery.result import RecoveryResult
from resilience.recovery.strategy import RecoveryAttempt

__all__ = ["MIN_WAIT_S", "LimiterSlotRecovery"]

# Without a Retry-After or a limiter to ask, the task still waits this long: it cannot spin.
MIN_WAIT_S = 1.0


class LimiterSlotRecovery:
    """``RateLimitError``: run again when the task's rate-limited resources admit the next
    run (and not before the server's Retry-After)."""

    name = "limiter_slot"

    def recover(self, attempt: RecoveryAttempt) -> RecoveryResult:
        """The wait until the later of the Retry-After and the limiters' next slot."""
        error = attempt.error
        if not isinstance(error, RateLimitError):
            return RecoveryResult.not_applicable(self.name, f"not a rate limit: {error.error_type}")
        retry_after_s = error.wait_s(attempt.now_s) or 0.0
        slots = self._next_slots(attempt)
        wait_s = max([retry_after_s, MIN_WAIT_S, *slots.values()])
        waited_for = "the shared limiter's next slot" if slots else "the server's Retry-After"
        return RecoveryResult.recovered(
            self.name,
            f"run again in {wait_s:.3f} s, at {waited_for}; no attempt spent",
            retry_in_s=wait_s,
            retry_after_s=round(retry_after_s, 3),
            limiter_wait_s={name: round(s, 3) for name, s in slots.items()},
        )

    @staticmethod
    def _next_slots(attempt: RecoveryAttempt) -> dict[str, float]:
        """Per rate-limited resource the task declares, the seconds until its next slot."""
        task = attempt.task
        runtime = task.runtime
        guard = runtime.guard
        declared = set(task.resources)
        if guard is None or not declared:
            return {}
        status = GuardStatus(runtime.redis, runtime.keys, guard.resources)
        return {
            limit.name: limit.rate_limit.next_allowed_in_s
            for limit in status.limits()
            if limit.name in declared and limit.rate_limit is not None
        }
