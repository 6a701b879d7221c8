"""What the configuration models of the building block share: a table that refuses keys it
does not know (naming the ones it does), a message that says what a setting is, and the one
line a pydantic ``ValidationError`` of those models becomes.

A model's error reads as the setting's place, then what is allowed and what was given:
``notification_limits.critical.limit is a whole number >= 1, got 0``; a problem of a whole
table reads ``notification_limits.critical: unknown key(s) limits; known: limit, window_s``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "PREDICATE",
    "ConfigTable",
    "Number",
    "Seconds",
    "Strings",
    "WholeNumber",
    "describe_errors",
    "is_",
    "placed",
    "problem",
    "unknown_keys",
]

# The error type of a message that says what the setting is: joined to its place by a space.
PREDICATE = "setting_is"
# The error type of a message that names its place itself (a ConfigurationError's).
PLACED = "placed"


def is_(what: str, given: object) -> PydanticCustomError:
    """``<place> is <what>, got <given>``."""
    return PydanticCustomError(
        PREDICATE, "is {what}, got {given}", {"what": what, "given": repr(given)}
    )


def placed(message: str) -> PydanticCustomError:
    """A message that already names the setting's place, kept as it is."""
    return PydanticCustomError(PLACED, "{message}", {"message": message})


def problem(message: str) -> PydanticCustomError:
    """``<place>: <message>``: what a building block's own check refused (its
    ``ConfigurationError``), at the place of the table it was built from."""
    return PydanticCustomError("refused", "{message}", {"message": message})


def unknown_keys(kind: str, unknown: Iterable[str], known: Iterable[str]) -> PydanticCustomError:
    """``<place>: unknown <kind> a, b; known: c, d``."""
    return PydanticCustomError(
        "unknown_keys",
        "unknown {kind} {unknown}; known: {known}",
        {"kind": kind, "unknown": ", ".join(unknown), "known": ", ".join(sorted(known))},
    )


def _number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise is_("a number", value)
    return value


def _whole_number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int):
        raise is_("a whole number", value)
    return value


def _seconds(value: object) -> object:
    # "not 0 <= value < inf" also refuses nan, which compares false with everything.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise is_("a finite number of seconds >= 0", value)
    return value


def _strings(value: object) -> object:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise is_("a list of strings", value)
    return tuple(value)


# TOML gives true and "2" as happily as 2: a number setting is refused anything but a number.
Number = Annotated[float, BeforeValidator(_number)]
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
Seconds = Annotated[float, BeforeValidator(_seconds)]
Strings = Annotated[tuple[str, ...], BeforeValidator(_strings)]


class ConfigTable(BaseModel):
    """A table of the config file: frozen, and a key it does not know is refused by name (a
    misspelt key silently ignored would leave its default in force)."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            *rest, last = sorted(cls.model_fields)
            keys = f"{', '.join(rest)} and {last}" if rest else last
            raise is_(f"a table of {keys}", value)
        unknown = sorted(str(key) for key in value if key not in cls.model_fields)
        if unknown:
            raise unknown_keys("key(s)", unknown, cls.model_fields)
        return value


def _place(root: str, location: tuple[int | str, ...]) -> str:
    """``escalation.rules[0].levels[1]``: keys joined by dots, list positions in brackets."""
    place = root
    for part in location:
        if isinstance(part, int):
            place += f"[{part}]"
        elif part != "":
            place = f"{place}.{part}" if place else part
    return place or "settings"


def describe_errors(invalid: ValidationError, root: str = "") -> str:
    """Every problem of ``invalid`` on one line, each led by its place (``root`` before the
    model's own locations); never the input, which may be a secret."""
    problems = []
    for error in invalid.errors(include_input=False):
        place = _place(root, error["loc"])
        if error["type"] == PLACED:
            problems.append(error["msg"])
        elif error["type"] == "missing":
            problems.append(f"{place} is required")
        else:
            separator = " " if error["type"] == PREDICATE else ": "
            problems.append(f"{place}{separator}{error['msg']}")
    return "; ".join(problems)
