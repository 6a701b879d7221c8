"""The fleet's clock for escalation: Redis server time, plus the shift a drill set.

Every worker reads the same time whatever its host's clock says, so the countdown of an alert's
next flush, computed by one worker, matches the time the alert's scripts decide on. A chaos
drill can move this clock ahead for the whole fleet (:meth:`ChaosStore.shift_clock`): the
escalation then reaches its delays, reminders and resolutions as if that time had passed,
without anyone waiting for it.
"""

from __future__ import annotations

from redis import Redis

from resilience.keys import KeySpace

__all__ = ["ServerClock"]


class ServerClock:
    """Redis ``TIME`` plus the fleet's clock shift, in seconds since the epoch."""

    def __init__(self, client: Redis, keys: KeySpace) -> None:
        self._client = client
        self._shift_key = keys.chaos_clock_shift

    def now_s(self) -> float:
        pipe = self._client.pipeline(transaction=False)
        pipe.time()
        pipe.get(self._shift_key)
        (seconds, micros), shift = pipe.execute()
        return int(seconds) + int(micros) / 1e6 + (float(shift) if shift else 0.0)
