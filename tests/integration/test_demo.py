"""``alchemiser demo`` on a machine with no Redis configured: both embedded defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DEAD_REDIS = "redis://127.0.0.1:1/0"


def _run_demo(path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALCHEMISER_REDIS_URL": DEAD_REDIS, "PATH": path, "COLUMNS": "200"}
    env.pop("ALCHEMISER_BROKER_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "worker.cli.main", "demo", "--orders", "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_demo_runs_on_a_private_redis_server() -> None:
    """With no Redis answering, the demo starts redis-server from PATH and loses nothing."""
    result = _run_demo(os.environ["PATH"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Redis: redis-server" in result.stdout
    assert "OK: duplicates: 0, lost: 0" in result.stdout
    # The outage opens the shared breaker. (With --orders 8 it sent 2 orders, too few calls to
    # trip it: the breaker never opened and the demo waited out 90 s.)
    assert "breaker opened after" in result.stdout
    # Live counters after every phase, and none of the demo process's log lines mixed in.
    counters = [line for line in result.stdout.splitlines() if "sent " in line and "booked" in line]
    assert len(counters) >= 3, result.stdout
    assert "dead-lettered 2" in counters[-1]
    assert not [line for line in result.stdout.splitlines() if line.lstrip().startswith("{")]


def test_demo_falls_back_to_fakeredis_without_redis_server(tmp_path: Path) -> None:
    """With no redis-server on PATH either, the demo runs on fakeredis' TCP server."""
    result = _run_demo(str(tmp_path))  # an empty PATH: no redis-server to find
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Redis: fakeredis" in result.stdout
    assert "OK: duplicates: 0, lost: 0" in result.stdout
