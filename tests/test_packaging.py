"""An installed (non-editable) copy carries every Lua script the code loads."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_lua_file_is_package_data() -> None:
    """Each ``<package>/lua/*.lua`` matches a package-data pattern of its own package: setuptools
    ships data per package, and a script missing from the wheel fails only at its first call."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    lua_files = [
        path.relative_to(ROOT)
        for top in ("resilience", "tasks", "worker")
        for path in (ROOT / top).rglob("*.lua")
    ]
    assert len(lua_files) >= 17
    missing = []
    for path in lua_files:
        package_dir = path.parent.parent
        package = ".".join(package_dir.parts)
        relative = path.relative_to(package_dir).as_posix()
        if not any(fnmatch(relative, pattern) for pattern in package_data.get(package, [])):
            missing.append(str(path))
    assert missing == []
