"""Lua scripts loaded once from ``.lua`` files beside the package that owns them.

redis-py's ``Script`` runs EVALSHA and reloads the script on NOSCRIPT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from redis import Redis
from redis.commands.core import Script

__all__ = ["CLOCK_LIB", "LuaFile", "lua_source", "register", "script_source"]


@dataclass(frozen=True, slots=True)
class LuaFile:
    """``<package>/lua/<name>.lua``: a script, or a library prepended to scripts."""

    package: str
    name: str


CLOCK_LIB = LuaFile("resilience.storage", "clock_lib")
"""Redis server time with the drill's shift, for every script that decides by the clock."""


@cache
def lua_source(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua``."""
    return resources.files(package).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def script_source(package: str, name: str, *, library: Sequence[LuaFile] = ()) -> str:
    """The text of ``<package>/lua/<name>.lua`` with the ``library`` files prepended in order,
    since Lua scripts cannot call one another."""
    parts = [lua_source(lib.package, lib.name) for lib in library]
    return "\n".join([*parts, lua_source(package, name)])


def register(client: Redis, package: str, name: str, *, library: Sequence[LuaFile] = ()) -> Script:
    """A callable script bound to ``client`` (see :func:`script_source`)."""
    return client.register_script(script_source(package, name, library=library))
