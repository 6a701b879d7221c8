"""Dependencies by purpose: a worker, beat, the CLI and ``serve`` need only the runtime
dependencies; the demo's fallback, Flower and the benchmarks' peers are extras."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ("fakeredis", "flower", "pybreaker", "limits")
# Test tools must not be needed by production code either.
DEV_ONLY = ("pytest", "hypothesis", "aiosmtpd", "httpx", "yaml")

# Makes every name in BLOCKED unimportable, as on a machine without the extras.
BLOCKER = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
"""


def _project() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project: dict[str, object] = config["project"]
    return project


def _names(requirements: object) -> set[str]:
    assert isinstance(requirements, list)
    return {
        str(r).split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() for r in requirements
    }


def _run_blocked(code: str, *blocked: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = BLOCKER.format(blocked=sorted(blocked)) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_extras_hold_what_only_the_demo_operators_and_benchmarks_use() -> None:
    """Runtime dependencies name none of them; each sits in its extra; ``dev`` pulls them all
    (README's two commands install ``.[dev]``)."""
    project = _project()
    runtime = _names(project["dependencies"])
    assert runtime.isdisjoint(EXTRAS_ONLY)
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    assert _names(extras["demo"]) == {"fakeredis"}
    assert _names(extras["ops"]) == {"flower"}
    assert _names(extras["bench"]) == {"pybreaker", "limits"}
    assert "alchemiser[demo,ops,bench]" in extras["dev"]
    assert project["license"] == "MIT" and (ROOT / "LICENSE").is_file()


def test_a_worker_the_cli_and_serve_import_without_the_extras() -> None:
    """With every extra and test tool unimportable, the app, its tasks, the runtime, the CLI,
    the exporter and the HTTP server load, and the runtime builds."""
    result = _run_blocked(
        """
        from worker import app
        import worker.cli.main, worker.http, worker.exporter, worker.runtime, worker.demo
        import tasks.trading, tasks.escalation, resilience
        from worker.settings import load_settings
        from worker.runtime import build_runtime
        runtime = build_runtime(load_settings())
        assert type(app).__name__ == "Celery"
        print("ok", sorted(app.tasks)[0])
        """,
        *EXTRAS_ONLY,
        *DEV_ONLY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok ")


def test_the_demo_without_any_redis_says_what_to_install(tmp_path: Path) -> None:
    """No Redis answering, no redis-server on PATH, no fakeredis: one line naming the three
    sources and the extra, exit 1, no traceback."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = Path(sys.executable)
    result = _run_blocked(
        """
        import sys
        from worker.cli.main import main
        sys.argv = ["alchemiser", "demo"]
        main()
        """,
        "fakeredis",
        PATH=f"{bin_dir}{os.pathsep}{python.parent}",
        ALCHEMISER_REDIS_URL="redis://127.0.0.1:1/0",
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: no Redis for the demo")
    assert "alchemiser[demo]" in lines[0] and "redis-server" in lines[0]
    assert result.stdout == ""
