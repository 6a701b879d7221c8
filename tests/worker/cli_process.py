"""The ``alchemiser`` CLI as users run it: a separate process of this checkout's code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "cli_environment", "run_cli"]

ROOT = Path(__file__).resolve().parents[2]
# Settings of the deployment come from these; the tests give each process its own.
_SETTING_PREFIXES = ("ALCHEMISER_", "ALPACA_", "SENTRY_")


def cli_environment(**variables: str) -> dict[str, str]:
    """This process's environment without any setting (no config file, no notification
    channel), with ``variables`` over it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTING_PREFIXES)}
    env.update(variables)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``python -m worker.cli.main ARGS`` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
