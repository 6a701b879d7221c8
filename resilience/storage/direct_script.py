"""A Lua script called over a connection the calling thread keeps: the guard's hot path.

redis-py's ``Script.__call__`` goes through the client on every call: a pool checkout and
check-in, the retry wrapper, the observability hooks. On this machine that is as much client CPU
as the round trip itself (an EVALSHA costs ≈ 75 µs of client CPU through the client and ≈ 37 µs
over a held connection, docs/BENCHMARKS.md), and the guard makes one call per task.

Each thread (and each forked child) gets its own connection, built with the client pool's
settings (socket timeouts included), so nothing is shared without a lock. A call that could not
be sent raises :class:`NotSentError` (the script did not run, the caller may act as if it never
asked); a reply that did not come back raises redis-py's TimeoutError or ConnectionError, and
then the script may well have run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

from redis import Redis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["DirectScript", "NotSentError"]

ScriptArg = str | int | float
# A connection idle for longer is checked before use (redis-py checks one on every checkout
# from its pool): Redis may have closed it meanwhile (a restart, a timeout).
IDLE_CHECK_S = 0.1


class NotSentError(ConnectionError):
    """The call never reached Redis whole, so the script did not run."""


class _Connection(Protocol):
    """What this module uses of redis-py's (untyped) ``Connection``."""

    def pack_command(self, *args: ScriptArg) -> list[bytes]: ...

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def read_response(self) -> Any: ...

    def can_read(self, timeout: float = 0) -> bool: ...

    def disconnect(self) -> None: ...


class DirectScript:
    """Callable like redis-py's ``Script`` (``script(keys=..., args=...)``), without the
    client's per-call machinery."""

    def __init__(self, client: Redis, source: str) -> None:
        self._client = client
        self._script = client.register_script(source)
        self._local = threading.local()

    @property
    def sha(self) -> str:
        """The script's SHA1, as EVALSHA names it."""
        return str(self._script.sha)

    def __call__(self, *, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        """EVALSHA, loading the script first if Redis does not have it (a restart, a flush).

        A call that could not be sent is sent once more on a new connection; one whose reply
        did not come back is not (the script may have run).
        """
        connection = self._connection()
        packed = connection.pack_command("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return self._round_trip(connection, packed)
        except NoScriptError:
            self._client.script_load(self._script.script)
        except NotSentError:
            pass
        return self._round_trip(connection, packed)

    def _connection(self) -> _Connection:
        local = self._local
        connection: _Connection | None = getattr(local, "connection", None)
        now = time.monotonic()
        if connection is None or local.pid != os.getpid():
            pool = self._client.connection_pool
            connection = cast(_Connection, pool.connection_class(**pool.connection_kwargs))
            local.connection, local.pid = connection, os.getpid()
        elif now - local.used_at > IDLE_CHECK_S:
            try:
                stale = connection.can_read(timeout=0)  # a reply nobody read, or EOF
            except ConnectionError:
                stale = True
            if stale:
                connection.disconnect()
        local.used_at = now
        return connection

    @staticmethod
    def _round_trip(connection: _Connection, packed: list[bytes]) -> Any:
        try:
            connection.send_packed_command(packed, check_health=False)
        except BaseException as failed:
            connection.disconnect()
            if isinstance(failed, (ConnectionError, RedisTimeoutError, OSError)):
                raise NotSentError(f"not sent: {failed}") from failed
            raise
        try:
            return connection.read_response()
        except ResponseError:
            raise  # an error reply: the connection is in step
        except BaseException:
            # A timeout, a soft time limit raised mid-read: the reply may still come, and the
            # next call must not read it as its own.
            connection.disconnect()
            raise
