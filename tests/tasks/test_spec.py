"""The application's one declaration (tasks/spec.py): what the worker builds from it, and the
mistakes it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.spec import SPEC, AppSpec, PeriodicTask, TaskRoute

ROOT = Path(__file__).resolve().parents[2]


def test_the_worker_registers_exactly_the_routed_tasks_and_reads_the_spec() -> None:
    """In a fresh interpreter, the app's task modules register one task per route (none
    unrouted, none missing), with the spec's routes, default queue and beat schedule."""
    probe = (
        "import json; from worker import app; app.loader.import_default_modules();"
        " print(json.dumps({'tasks': sorted(n for n in app.tasks if not n.startswith('celery.')),"
        " 'routes': app.conf.task_routes, 'default': app.conf.task_default_queue,"
        " 'beat': sorted(e['task'] for e in app.conf.beat_schedule.values()),"
        " 'include': list(app.conf.include)}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    app = json.loads(result.stdout)
    assert app["tasks"] == sorted(route.name for route in SPEC.routes)
    assert app["routes"] == SPEC.task_routes()
    assert app["default"] == SPEC.default_queue == "trading"
    assert app["beat"] == sorted(p.task for p in SPEC.periodic)
    assert app["include"] == list(SPEC.modules)


def _spec(**changes: object) -> AppSpec:
    fields: dict[str, object] = {
        "modules": ("m",),
        "queues": ("a", "b"),
        "default_queue": "a",
        "routes": (TaskRoute("t.one", "a"), TaskRoute("t.two", "b")),
        "resources_for": lambda broker: {},
        "domain": SPEC.domain,
        "advice": {},
    }
    fields.update(changes)
    return AppSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"routes": (TaskRoute("t.one", "nope"),)}, "undeclared queues: \\['nope'\\]"),
        ({"default_queue": "nope"}, "undeclared queues"),
        ({"routes": (TaskRoute("t.one", "a"), TaskRoute("t.one", "b"))}, "routed twice"),
        ({"periodic": (PeriodicTask("p", "t.three", 60.0),)}, "without a route: \\['t.three'\\]"),
    ],
)
def test_a_spec_refuses_routes_it_cannot_honour(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**changes)


def test_a_broker_adds_its_modules() -> None:
    """Alpaca's adapter is imported once in the worker's parent; paper needs nothing more."""
    assert SPEC.modules_for("paper") == SPEC.modules
    assert SPEC.modules_for("alpaca") == (*SPEC.modules, "tasks.brokers.alpaca")
