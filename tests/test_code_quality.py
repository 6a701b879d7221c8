"""The style gates run with the tests, so CI enforces them on every change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_is_clean() -> None:
    """``ruff check`` reports nothing on the repository."""
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    """``mypy --strict`` (configured in pyproject) passes on resilience, tasks and worker."""
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_resilience_imports_nothing_of_the_application() -> None:
    """``resilience/`` never imports ``tasks`` or ``worker``; ``tasks/`` never ``worker``."""
    offenders = []
    for package, forbidden in (("resilience", ("tasks", "worker")), ("tasks", ("worker",))):
        for path in (ROOT / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if stripped.startswith(
                    tuple(f"{kw} {name}" for kw in ("import", "from") for name in forbidden)
                ):
                    offenders.append(f"{path.relative_to(ROOT)}: {stripped}")
    assert offenders == []
