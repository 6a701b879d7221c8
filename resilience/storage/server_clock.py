"""The fleet's clock for escalation: Redis server time, plus the shift a drill set.

Every worker reads the same time whatever its host's clock says, so the countdown of an alert's
next flush, computed by one worker, matches the time the alert's scripts decide on. A chaos
drill can move this clock ahead for the whole fleet (:meth:`ChaosStore.shift_clock`): the
escalation then reaches its delays, reminders and resolutions as if that time had passed,
without anyone waiting for it.
"""

from __future__ import annotations

import logging
import math

from redis import Redis

from resilience.storage.keys import KeySpace

__all__ = ["MAX_CLOCK_SHIFT_S", "ServerClock", "stored_shift_s"]

# How far a drill may move the clock either way: a year covers every delay of an escalation;
# 1e308 s made datetimes overflow in every reader.
MAX_CLOCK_SHIFT_S = 365 * 24 * 3600.0

_log = logging.getLogger(__name__)


def stored_shift_s(raw: bytes | str | None) -> float:
    """The clock shift stored in Redis, in seconds: 0 when none, and 0 with a warning when it
    is not a finite number within ``MAX_CLOCK_SHIFT_S`` (set by hand or by an older version),
    so no reader crashes on it. `chaos clear` removes it."""
    if not raw:
        return 0.0
    try:
        shift = float(raw)
    except ValueError:
        shift = math.nan
    if not (math.isfinite(shift) and abs(shift) <= MAX_CLOCK_SHIFT_S):
        _log.warning(
            "ignoring the stored clock shift %r: not a finite number of seconds within +-%g",
            raw,
            MAX_CLOCK_SHIFT_S,
        )
        return 0.0
    return shift


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
        return int(seconds) + int(micros) / 1e6 + stored_shift_s(shift)
