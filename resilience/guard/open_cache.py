"""Breakers found OPEN, remembered in this process so a fleet facing an open breaker does not
ask Redis for every task.

An answer is kept for at most ``hold_s`` (and never past the breaker's own ``open_until``), by
monotonic time, never the wall clock: a process may refuse for up to ``hold_s`` after another
worker's probe closed the breaker, and no longer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

__all__ = ["OpenCache"]


class OpenCache:
    """Thread-safe; a forked child starts from :meth:`clear` (its parent's lock may be held)."""

    def __init__(self, monotonic: Callable[[], float], hold_s: float) -> None:
        self._monotonic = monotonic
        self._hold_s = hold_s
        # resource -> (monotonic time the answer expires, monotonic open_until)
        self._open: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def remember(self, resource: str, retry_after_s: float) -> None:
        """``resource``'s breaker is OPEN for ``retry_after_s`` more seconds."""
        with self._lock:
            now = self._monotonic()
            self._open[resource] = (now + min(retry_after_s, self._hold_s), now + retry_after_s)

    def find(self, names: Sequence[str]) -> tuple[str, float] | None:
        """The first of ``names`` known OPEN, and the seconds until it may admit again."""
        if not self._open:
            return None
        now = self._monotonic()
        with self._lock:
            for name in names:
                cached = self._open.get(name)
                if cached is not None:
                    expires, open_until = cached
                    if expires > now:
                        return name, open_until - now
                    del self._open[name]
        return None

    def clear(self) -> None:
        """Forget every answer (an operator's reset, tests, a forked child)."""
        self._lock = threading.Lock()
        self._open.clear()
