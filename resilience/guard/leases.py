"""This process's permit leases: runs granted in one round trip and spent without asking Redis
again, for at most the lease's TTL from when the process asked, with slow start deciding how
many to ask for next (resilience.guard.resources.PermitLeaseConfig states the bounds)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from resilience.guard.answers import Admission

__all__ = ["PermitLeases"]


@dataclass(slots=True)
class _Lease:
    """The last grant of one tuple of resources to this process: what is left of it, and what
    it says of how many runs the next round trip should ask for."""

    admission: Admission  # what each run spent from it is told (leased)
    granted: int
    left: int
    asked_at: float  # monotonic, when the process asked
    expires: float  # asked_at + the lease's TTL: counted from the ask, not from Redis' answer


class PermitLeases:
    """The leases of one :class:`~resilience.guard.admission.Guard`, by tuple of resources."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._leases: dict[tuple[str, ...], _Lease] = {}

    def spend(self, names: tuple[str, ...]) -> Admission | None:
        """One run from the lease on ``names``, or None (none left, or expired)."""
        with self._lock:
            lease = self._leases.get(names)
            if lease is None or lease.left < 1 or lease.expires <= self._monotonic():
                return None
            lease.left -= 1
            return lease.admission

    def size(self, names: tuple[str, ...], most: int, ttl_s: float) -> int:
        """How many runs to ask for, from how the last grant went (slow start): one at first
        and after a failure; twice the last grant (at most ``most``) when it was spent and the
        process asks again within the TTL; what it spent when some expired unspent. So a
        process that runs rarely takes one run at a time and never holds the limiter's units
        idle."""
        with self._lock:
            last = self._leases.get(names)
            if last is None:
                return 1
            if last.left > 0:
                return max(last.granted - last.left, 1)
            if self._monotonic() - last.asked_at < ttl_s:
                return min(last.granted * 2, most)
            return last.granted

    def grant(
        self,
        names: tuple[str, ...],
        admission: Admission,
        granted: int,
        *,
        asked_at: float,
        ttl_s: float,
    ) -> None:
        """Redis granted ``granted`` runs on ``names`` (``admission`` is the first of them)."""
        with self._lock:
            self._leases[names] = _Lease(
                admission=dataclasses.replace(admission, leased=True),
                granted=granted,
                left=granted - 1,
                asked_at=asked_at,
                expires=asked_at + ttl_s,
            )

    def drop(self, names: Sequence[str]) -> None:
        """Give up every lease covering any of ``names`` (a failure, a breaker opening)."""
        if not self._leases:
            return
        with self._lock:
            for key in [key for key in self._leases if any(name in key for name in names)]:
                del self._leases[key]

    def forget(self) -> None:
        """In a forked child: its parent's leases are its parent's (spending them here too would
        double them), and the lock may have been held by a thread that does not exist here."""
        self._lock = threading.Lock()
        self._leases = {}
