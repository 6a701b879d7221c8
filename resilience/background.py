"""Script calls whose answer nobody waits for, sent from a background thread in pipelines.

A successful run's outcome (lease back, window +1, budget refill) needs no answer, so the
task need not wait a round trip for it: the guard hands it here and the task returns. While
one pipeline is on the wire the next calls queue up, so under load many go in one round
trip. A call lost with its process (a crash between the run and the flush) costs what a
crash costs anyway: its leases expire.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import RedisError

__all__ = ["BackgroundScripts"]

_log = structlog.get_logger("alchemiser.guard")

MAX_BATCH = 256
# After the first queued call, wait this long for more to share its round trip: a worker
# running tasks back to back then sends a pipeline every few tasks instead of one per task.
LINGER_S = 0.002
ScriptArgs = Sequence[str | int | float]
OnReply = Callable[[Any], object]


class BackgroundScripts:
    """Queue of script calls drained by one daemon thread per process (fork-safe)."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._pid = -1
        self._start_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: list[tuple[Script, list[str], ScriptArgs, OnReply | None]] = []
        self._in_flight = 0
        self._thread: threading.Thread | None = None

    def submit(
        self, script: Script, keys: list[str], args: ScriptArgs, on_reply: OnReply | None = None
    ) -> None:
        """Send ``script(keys, args)`` soon; ``on_reply`` gets its answer, or the exception it
        failed with, on the background thread; errors are logged, not raised."""
        self._ensure_thread()
        with self._cond:
            self._pending.append((script, keys, args, on_reply))
            self._cond.notify_all()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every submitted call was sent; False if that took over ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._pending and not self._in_flight, timeout=timeout_s
            )

    def _ensure_thread(self) -> None:
        # A forked child (prefork pool) inherits the parent's state but not its thread.
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._start_lock:
            if self._pid != os.getpid() or self._thread is None:
                self._cond = threading.Condition()
                self._pending = []
                self._in_flight = 0
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._drain, name="alchemiser-guard-records", daemon=True
                )
                self._thread.start()

    def _drain(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending))
                self._cond.wait_for(lambda: len(self._pending) >= MAX_BATCH, timeout=LINGER_S)
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._in_flight = len(batch)
            self._send(batch)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _send(self, batch: list[tuple[Script, list[str], ScriptArgs, OnReply | None]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            script(keys=keys, args=args, client=pipe)
        replies: list[Any]
        try:
            replies = pipe.execute(raise_on_error=False)
        except RedisError as unavailable:
            _log.warning("outcomes_not_recorded", count=len(batch), error=str(unavailable))
            replies = [unavailable] * len(batch)
        else:
            # Redis answered but a script failed: a defect, not an outage.
            failed = [r for r in replies if isinstance(r, Exception)]
            if failed:
                _log.error("outcomes_not_recorded", count=len(failed), error=str(failed[0]))
        # Every caller hears back, with the reply or the error, so it can let go of its state.
        for (_, _, _, on_reply), reply in zip(batch, replies, strict=True):
            if on_reply is not None:
                on_reply(reply)
