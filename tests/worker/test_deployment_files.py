"""docker-compose.yml and the Dockerfile name real modules and real settings."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from worker.cli.main import app as cli
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
# Variables that belong to other programs in the stack, not to Alchemiser's settings.
FOREIGN_ENV = re.compile(r"^(FLOWER_[A-Z_]+|SENTRY_DSN|ALPACA_[A-Z_]+)$")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _known_env() -> set[str]:
    names = {f"ALCHEMISER_{name.upper()}" for name in Settings.model_fields}
    return names


def test_compose_parses_with_the_expected_services() -> None:
    """The file is valid YAML with Redis, a worker per queue, beat, Flower, the HTTP face and
    Mailpit."""
    services = _compose()["services"]
    assert set(services) == {
        "redis", "worker-trading", "worker-market-data", "worker-escalation", "beat", "flower",
        "web", "mailpit",
    }  # fmt: skip
    assert "--appendonly" in services["redis"]["command"]
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name


def test_every_worker_queue_is_served() -> None:
    """Each queue of the contract has a worker consuming it."""
    served: set[str] = set()
    for service in _compose()["services"].values():
        command = service.get("command", [])
        if "worker" in command and "-Q" in command:
            served.update(command[command.index("-Q") + 1].split(","))
    assert served == {"trading", "market_data", "escalation"}


def test_every_command_names_a_real_module() -> None:
    """``celery -A MODULE`` imports and exposes the app object; ``alchemiser CMD`` is the
    console script of pyproject.toml and CMD one of its commands."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = {c.name for c in cli.registered_commands} | {g.name for g in cli.registered_groups}
    checked = 0
    for name, service in _compose()["services"].items():
        command = service.get("command", [])
        if command and command[0] == "celery":
            module = importlib.import_module(command[command.index("-A") + 1])
            assert hasattr(module, "app"), name
            checked += 1
        elif command and command[0] == "alchemiser":
            assert scripts["alchemiser"] == "worker.cli.main:main", name
            assert command[1] in commands, name
            checked += 1
    assert checked == 6  # three workers, beat, Flower, the HTTP face


def test_every_service_is_watched_and_restarted() -> None:
    """Every long-running service but beat (no port to ask) has a healthcheck; the stack's
    ports are Flower's, the HTTP face's and Mailpit's UI."""
    services = _compose()["services"]
    unwatched = {name for name, service in services.items() if "healthcheck" not in service}
    assert unwatched == {"beat"}
    published = {port for s in services.values() for port in s.get("ports", [])}
    assert published == {"5555:5555", "8000:8000", "8025:8025"}


def test_every_env_var_is_a_known_setting() -> None:
    """Every ALCHEMISER_* variable in the stack is a field the settings read."""
    known = _known_env()
    for name, service in _compose()["services"].items():
        for variable in service.get("environment", {}):
            assert variable in known or FOREIGN_ENV.match(variable), (name, variable)


def test_dockerfile_copies_every_package() -> None:
    """The image contains the three packages the commands import."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("resilience", "tasks", "worker"):
        assert f"COPY {package} ./{package}" in dockerfile
