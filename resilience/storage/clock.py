"""Time as an injected dependency, so timing logic is tested without sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Seconds since the Unix epoch, as a float."""

    def now_s(self) -> float: ...


class SystemClock:
    """The host's wall clock."""

    def now_s(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start_s: float = 1_767_225_600.0) -> None:
        self._now_s = start_s
        self._lock = threading.Lock()

    def now_s(self) -> float:
        with self._lock:
            return self._now_s

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        with self._lock:
            self._now_s += seconds

    def set(self, now_s: float) -> None:
        """Jump to ``now_s``."""
        with self._lock:
            self._now_s = now_s
