"""A Redis for the demo when none is configured or reachable.

In order of preference: the configured ``ALCHEMISER_REDIS_URL`` if it answers; a private
``redis-server`` from PATH on a free port in a temporary directory (nothing persisted); else
fakeredis' TCP server in this process (Lua via lupa; the ``demo`` extra), which real Celery
workers can use but at roughly 1/80 of redis-server's speed.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from redis import Redis
from redis.exceptions import RedisError

__all__ = [
    "NoRedisForDemoError",
    "RedisSource",
    "private_redis_server",
    "redis_answers",
    "redis_for_demo",
]

Kind = Literal["configured", "redis-server", "fakeredis"]


class NoRedisForDemoError(RuntimeError):
    """None of the three Redis sources is there."""


@dataclass(frozen=True, slots=True)
class RedisSource:
    """Which Redis the demo runs on."""

    url: str
    kind: Kind
    detail: str


def redis_answers(url: str, timeout_s: float = 0.5) -> bool:
    """Whether a Redis at ``url`` answers PING."""
    client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if redis_answers(url, 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis at {url} did not answer within {timeout_s:g} s")


@contextlib.contextmanager
def private_redis_server(binary: str) -> Iterator[RedisSource]:
    """A ``redis-server`` of our own on a free loopback port, in-memory, for the duration."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="alchemiser-redis-") as workdir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"redis://127.0.0.1:{port}/0"
        try:
            _wait_for(url, 10.0)
            yield RedisSource(url, "redis-server", f"{binary} on port {port}, in-memory only")
        finally:
            process.terminate()
            process.wait(timeout=10)


@contextlib.contextmanager
def _fakeredis_server() -> Iterator[RedisSource]:
    try:
        from fakeredis import TcpFakeServer  # noqa: PLC0415 - last-resort fallback; ~0.3 s to import
    except ImportError as missing:
        raise NoRedisForDemoError(
            "no Redis for the demo: ALCHEMISER_REDIS_URL does not answer, redis-server is not on "
            "PATH, and fakeredis is not installed (pip install 'alchemiser[demo]', or install "
            "redis-server)"
        ) from missing

    port = _free_port()
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for(url, 10.0)
        yield RedisSource(url, "fakeredis", f"fakeredis TcpFakeServer on port {port} (slow)")
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def redis_for_demo(configured_url: str, *, allow_configured: bool = True) -> Iterator[RedisSource]:
    """The configured Redis if it answers, else an embedded one for the duration."""
    if allow_configured and redis_answers(configured_url):
        yield RedisSource(configured_url, "configured", "ALCHEMISER_REDIS_URL answered")
        return
    binary = shutil.which("redis-server")
    source = private_redis_server(binary) if binary else _fakeredis_server()
    with source as embedded:
        yield embedded
