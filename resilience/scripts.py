"""Lua scripts loaded once from ``.lua`` files beside the package that owns them.

redis-py's ``Script`` runs EVALSHA and reloads the script on NOSCRIPT.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis import Redis
from redis.commands.core import Script

__all__ = ["lua_source", "register", "script_source"]


@cache
def lua_source(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua``."""
    return resources.files(package).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


Libraries = str | tuple[str, ...] | None


def script_source(package: str, name: str, *, library: Libraries = None) -> str:
    """The text of ``<package>/lua/<name>.lua`` with ``library`` (one ``.lua`` file of the same
    package, or several in order) prepended, since Lua scripts cannot call one another."""
    libraries = (library,) if isinstance(library, str) else library or ()
    return "\n".join([*(lua_source(package, lib) for lib in libraries), lua_source(package, name)])


def register(client: Redis, package: str, name: str, *, library: Libraries = None) -> Script:
    """A callable script bound to ``client`` (see :func:`script_source`)."""
    return client.register_script(script_source(package, name, library=library))
