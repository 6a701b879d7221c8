"""A private ``redis-server`` a test can kill -9, restart on the same port, or stall.

The fault tests (and ``bench.soak``) need a Redis of their own: killing the machine's shared
server would break every other test. With ``appendonly`` the server reloads its data after a
kill (``appendfsync always``: every write is on disk before the reply); without it a restart
comes back empty, like a production Redis with persistence off.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from worker.embedded import redis_answers

__all__ = ["RedisProcess", "redis_process"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """One ``redis-server`` on a fixed loopback port and data directory."""

    def __init__(self, workdir: Path, *, appendonly: bool) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.binary = binary
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING (after loading its AOF)."""
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else []
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.workdir), *(aof or ["--appendonly", "no"])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.answers():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout_s:g} s")

    def answers(self) -> bool:
        return redis_answers(self.url, timeout_s=0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, every client connection reset."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def restart_after(self, down_s: float) -> None:
        """Kill -9, stay down for ``down_s`` seconds, start again on the same port and data."""
        self.kill()
        time.sleep(down_s)
        self.start()

    def stall(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung server)."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGCONT)
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None


@contextlib.contextmanager
def redis_process(*, appendonly: bool) -> Iterator[RedisProcess]:
    """A started :class:`RedisProcess` in a temporary directory, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="alchemiser-redis-") as workdir:
        server = RedisProcess(Path(workdir), appendonly=appendonly)
        server.start()
        try:
            yield server
        finally:
            server.stop()
