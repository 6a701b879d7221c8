"""``python -m worker.cli.main``, the way the tests and some operators run the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_running_the_module_prints_nothing_but_its_answer() -> None:
    """No runpy RuntimeWarning ('found in sys.modules') on stderr: the package does not import
    the module it is run as."""
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli.main", "dlq", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0
    assert result.stderr == ""
    assert "replay" in result.stdout
