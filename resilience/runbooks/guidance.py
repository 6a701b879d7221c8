"""What any deployment should check and do about an error class, before its own history says
more: diagnostic and prevention steps per family of the hierarchy (the nearest class wins)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from resilience.errors import (
    AdmissionRefusedError,
    AlchemiserError,
    CircuitBreakerOpenError,
    ConfigurationError,
    MalformedMessageError,
    NotificationError,
    PoisonMessageError,
    RateLimitError,
    RemoteServiceError,
    SecurityError,
    StaleOrderError,
    ValidationError,
)

__all__ = ["DEAD_LETTERS_STEP", "PATTERNS_STEP", "Guidance", "guidance_for"]


@dataclass(frozen=True, slots=True)
class Guidance:
    """Steps for one family of errors."""

    diagnose: tuple[str, ...]
    prevent: tuple[str, ...]


DEAD_LETTERS_STEP = (
    "List its dead letters and read their messages: `alchemiser dlq list --error {t}`."
)
PATTERNS_STEP = "See when it happens and what comes before it: `alchemiser patterns`."

_GUIDANCE: dict[type[AlchemiserError], Guidance] = {
    AlchemiserError: Guidance(
        diagnose=(DEAD_LETTERS_STEP, PATTERNS_STEP),
        prevent=("Fix the cause the dead letters name, then replay them.",),
    ),
    RemoteServiceError: Guidance(
        diagnose=(
            "Check the remote service's status page and latency.",
            "See whether its breaker opened: `alchemiser breaker list`.",
            PATTERNS_STEP,
        ),
        prevent=(
            "Keep the resource's breaker and retry budget on, so a failing service is cut off"
            " for the whole fleet at once.",
        ),
    ),
    RateLimitError: Guidance(
        diagnose=(
            "See the limiter's usage and refusals: `alchemiser limits list`.",
            "Compare the configured rate with the API's documented limit.",
        ),
        prevent=(
            "Set the resource's shared rate limit a little under the API's, so the fleet waits"
            " in Redis instead of being refused by the API.",
        ),
    ),
    CircuitBreakerOpenError: Guidance(
        diagnose=("See which breaker is open and why: `alchemiser breaker list`.",),
        prevent=("Find what made the resource fail (its own error type's runbook).",),
    ),
    AdmissionRefusedError: Guidance(
        diagnose=("See which limit refused the runs: `alchemiser limits list`.",),
        prevent=("Raise the limit if the API allows it, or spread the schedule.",),
    ),
    StaleOrderError: Guidance(
        diagnose=(
            "The order waited past its deadline: look for a backlog or a long outage before it"
            " (`alchemiser health`, `alchemiser patterns`).",
        ),
        prevent=("Give orders deadlines the fleet can meet, and enough workers for the peak.",),
    ),
    PoisonMessageError: Guidance(
        diagnose=("The task killed its worker repeatedly: read the workers' logs around it.",),
        prevent=("Fix the crash before replaying; a replay would kill a worker again.",),
    ),
    MalformedMessageError: Guidance(
        diagnose=("Read the raw body kept in the dead letter: `alchemiser dlq show ID`.",),
        prevent=("Fix the publisher: send tasks by name with JSON keyword arguments.",),
    ),
    ValidationError: Guidance(
        diagnose=(DEAD_LETTERS_STEP,),
        prevent=("Validate payloads where they are produced; a replay fails the same way.",),
    ),
    ConfigurationError: Guidance(
        diagnose=("Run `alchemiser health`; a bad setting is named on one line.",),
        prevent=("Check settings in CI with the same command the workers start with.",),
    ),
    SecurityError: Guidance(
        diagnose=("Credentials were refused: check their expiry and permissions now.",),
        prevent=("Rotate credentials before they expire; alert on the first refusal.",),
    ),
    NotificationError: Guidance(
        diagnose=("Check the channel's credentials and endpoint (log event names the channel).",),
        prevent=("Configure a fallback channel for every escalation level.",),
    ),
}


def guidance_for(
    error_class: type[AlchemiserError],
    own: Mapping[type[AlchemiserError], Guidance] | None = None,
) -> Guidance:
    """The guidance of the nearest class of ``error_class``'s family that has some, the
    application's ``own`` (its domain's words) before the generic."""
    known = {**_GUIDANCE, **(own or {})}
    for cls in error_class.__mro__:
        if cls in known:
            found = known[cls]
            name = error_class.__name__
            return Guidance(
                diagnose=tuple(step.format(t=name) for step in found.diagnose),
                prevent=tuple(step.format(t=name) for step in found.prevent),
            )
    raise TypeError(f"{error_class!r} is not an AlchemiserError class")
