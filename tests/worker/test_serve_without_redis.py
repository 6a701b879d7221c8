"""``alchemiser serve`` outlives Redis: it starts while Redis is down, answers ``/health`` with
503 ``{"status": "unknown"}`` while it is, keeps serving ``/metrics`` (503, no crash), and
answers for the fleet again once Redis is back, without a restart. A private redis-server on
a fixed port is stopped and started under a real ``serve`` process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import requests

from tests.worker.cli_process import ROOT, cli_environment
from worker.embedded import redis_answers

WAIT_S = 30.0


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.05)


class RedisServer:
    """A private in-memory redis-server on one port, stopped and started at will."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.url = f"redis://127.0.0.1:{port}/0"
        self._command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(f"redis-server at {self.url} answers", lambda: redis_answers(self.url, 0.2))

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server, not started yet; stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("this test stops and starts its own redis-server: none on PATH", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="alchemiser-serve-") as workdir:
        server = RedisServer(binary, free_port(), Path(workdir))
        yield server
        server.stop()


@pytest.fixture
def serve(
    redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`alchemiser serve` on a free port against the private Redis; its base URL and process."""
    port = free_port()
    env = cli_environment(
        ALCHEMISER_REDIS_URL=redis_server.url, ALCHEMISER_NAMESPACE=f"test-{uuid4().hex}"
    )
    with (tmp_path / "serve.out").open("wb") as out, (tmp_path / "serve.err").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli.main", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(timeout=10)


def answer(url: str) -> requests.Response | None:
    """The response at ``url``, or None while nothing listens there."""
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None


def health_is(
    serving: tuple[str, subprocess.Popen[bytes]], code: int, status: str
) -> Callable[[], bool]:
    """Whether ``/health`` answers ``code`` with ``{"status": status, ...}``; fails at once if
    the serve process has ended."""
    base, process = serving

    def check() -> bool:
        if process.poll() is not None:
            pytest.fail(f"alchemiser serve exited with {process.returncode}")
        got = answer(f"{base}/health")
        return got is not None and got.status_code == code and got.json()["status"] == status

    return check


def test_serve_starts_without_redis_and_recovers_when_it_comes_back(
    redis_server: RedisServer, serve: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """Redis down at start: /health 503 unknown, /metrics 503; Redis up: 200 healthy; Redis
    stopped again: 503 unknown; started again: 200, all from the one serve process."""
    base, process = serve
    wait_until("/health answers 503 unknown with Redis down", health_is(serve, 503, "unknown"))
    metrics = answer(f"{base}/metrics")
    assert metrics is not None and metrics.status_code == 503
    assert metrics.json() == {"status": "unknown", "error": "ConnectionError"}

    redis_server.start()
    wait_until("/health answers 200 healthy once Redis is up", health_is(serve, 200, "healthy"))
    metrics = answer(f"{base}/metrics")
    assert metrics is not None and metrics.status_code == 200
    assert "alchemiser_dlq_depth 0.0" in metrics.text

    redis_server.stop()
    wait_until("/health answers 503 unknown once Redis stops", health_is(serve, 503, "unknown"))
    redis_server.start()
    wait_until("/health answers 200 healthy once Redis is back", health_is(serve, 200, "healthy"))
    assert process.poll() is None  # the same process throughout
