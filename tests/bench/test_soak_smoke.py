"""The soak benchmark, small: run as a user runs it, its figures add up and its invariants hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_soak_books_each_order_once_through_every_kind_of_fault() -> None:
    """60 orders, one Redis restart, one worker kill, one malformed message of each kind (a
    4 s visibility timeout so the killed worker's orders come back soon): every order booked
    exactly once or dead-lettered, none lost or twice, each malformed message quarantined and
    its order never booked, only the killed worker gone, and each fault settled."""
    # This checkout's modules, also in the worker processes the soak starts.
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--orders", "60", "--restarts", "1",
         "--malformed", "3", "--worker-kills", "1", "--visibility-timeout", "4",
         "--settle-timeout", "40", "--json"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True,
        timeout=85, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["sent"] == 60
    assert report["booked_once"] + report["dead_lettered"] == 60
    assert sum(report["dead_lettered_by_type"].values()) == report["dead_lettered"]
    assert (report["booked_twice"], report["lost"]) == (0, 0)
    assert report["malformed_sent"] == {"dict-body": 1, "raw-item": 1, "timelimit": 1}
    assert (report["quarantined"], report["quarantined_other"]) == (3, 0)
    assert report["malformed_orders_booked"] == 0
    assert [f["kind"] for f in report["faults"]] == ["redis-restart", "worker-kill"]
    for fault in report["faults"]:
        assert fault["back_s"] is not None, fault
        assert fault["settle_s"] is not None, fault
    assert [w["killed_by_soak"] for w in report["workers"]] == [True, False, False]
    assert [w["exit_code"] is None for w in report["workers"]] == [False, True, True]
    assert report["unexpected_worker_exits"] == []
    assert report["ok"] is True
    assert result.returncode == 0, result.stderr[-4000:]
