"""The TOML config file ``ALCHEMISER_CONFIG`` names, read into setting names: sections become
prefixes (``[deadletter] max_entries`` is ``dlq_max_entries``) and the tables validated whole
(``[resources]``, ``[escalation]``, ...) stay tables."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from resilience.errors import ConfigurationError

__all__ = ["CONFIG_ENV", "MAX_CONFIG_BYTES", "read_config_file"]

CONFIG_ENV = "ALCHEMISER_CONFIG"
MAX_CONFIG_BYTES = 1024 * 1024


# Config file tables kept whole rather than flattened into section_key settings.
_WHOLE_TABLES = frozenset({"resources", "escalation", "notification_limits", "alert_thresholds"})


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``[deadletter] max_entries = 5`` becomes ``dlq_max_entries``-style keys: section_key."""
    aliases = {
        "deadletter": "dlq",
        "celery": "",
        "orders": "order",
        "paper": "paper",
        "redis": "redis",
    }
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key in _WHOLE_TABLES and not prefix:
            # Kept whole: resource names contain dots; escalation rules and notification
            # limits are validated as one table each.
            flat[key] = value
        elif isinstance(value, dict):
            section = aliases.get(key, key)
            flat.update(_flatten(value, f"{section}_" if section else ""))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_text(path: Path) -> str:
    """The text of the config file; ``ConfigurationError`` beyond ``MAX_CONFIG_BYTES`` (read no
    further: ``/dev/zero`` never ends)."""
    with path.open("rb") as file:
        data = file.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigurationError(
            f"{CONFIG_ENV} names {path}, which is larger than {MAX_CONFIG_BYTES} bytes "
            "(a config file is a short TOML text)"
        )
    return data.decode("utf-8")


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of the config file at ``path`` (and ``config``, its path);
    ``ConfigurationError`` saying why it cannot be read."""
    try:
        values = _flatten(tomllib.loads(_read_text(path)))
    except FileNotFoundError:
        raise ConfigurationError(f"{CONFIG_ENV} names {path}, which does not exist") from None
    except OSError as unreadable:  # a directory, no permission
        raise ConfigurationError(
            f"{CONFIG_ENV} names {path}, which cannot be read ({unreadable.strerror})"
        ) from None
    except UnicodeDecodeError as bad:
        raise ConfigurationError(
            f"{CONFIG_ENV} names {path}, which is not UTF-8 text (byte {bad.start})"
        ) from None
    except tomllib.TOMLDecodeError as bad:
        raise ConfigurationError(f"{path} is not valid TOML: {bad}") from None
    values["config"] = path
    return values
