"""Task messages that show no secret: the ``argsrepr``/``kwargsrepr`` headers every task message
carries (Flower, ``celery inspect`` and task events display them) are built from scrubbed copies
of the arguments. The arguments themselves travel unchanged: the task needs them.

sentry-sdk's Celery integration adds ``sentry-trace`` and ``baggage`` headers to every task it
sees published; the baggage names the DSN's public key (``sentry-public_key=…``), which would
then sit in Redis with every queued message. That member is dropped before the message is sent;
the trace (``sentry-trace``, the baggage's trace id) still propagates.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from celery.app.amqp import AMQP
from celery.utils.saferepr import saferepr

from resilience.scrub import Scrubber

__all__ = ["SCRUBBER_SETTING", "ScrubbingAMQP", "without_public_key"]

# Where create_app leaves the app's scrubber for its AMQP object.
SCRUBBER_SETTING = "alchemiser_scrubber"

# Celery passes most of as_task_v2's arguments by position: bind them to find ours.
_AS_TASK_V2 = inspect.signature(AMQP.as_task_v2)

_BAGGAGE = "baggage"
_PUBLIC_KEY_MEMBER = "sentry-public_key"


def _baggage_without_public_key(baggage: str) -> str:
    members = (member.strip() for member in baggage.split(","))
    return ",".join(
        member
        for member in members
        if member and member.partition("=")[0].strip() != _PUBLIC_KEY_MEMBER
    )


def without_public_key(headers: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of task message ``headers`` whose baggage (top level and the nested ``headers``
    Celery keeps for the worker) has no ``sentry-public_key`` member."""
    stripped = dict(headers)
    if isinstance(stripped.get(_BAGGAGE), str):
        stripped[_BAGGAGE] = _baggage_without_public_key(stripped[_BAGGAGE])
    nested = stripped.get("headers")
    if isinstance(nested, Mapping):
        stripped["headers"] = without_public_key(nested)
    return stripped


class ScrubbingAMQP(AMQP):
    """Celery's AMQP message builder, with the arguments' reprs scrubbed."""

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:
        scrubber: Scrubber | None = self.app.conf.get(SCRUBBER_SETTING)
        if scrubber is None:
            return super().as_task_v2(*args, **kwargs)
        bound = _AS_TASK_V2.bind(self, *args, **kwargs)
        given = bound.arguments
        levels = self.app.conf.task_repr_maxlevels
        if given.get("argsrepr") is None:
            given["argsrepr"] = saferepr(
                tuple(scrubber(list(given.get("args") or ()))),
                self.argsrepr_maxsize,
                maxlevels=levels,
            )
        if given.get("kwargsrepr") is None:
            given["kwargsrepr"] = saferepr(
                scrubber(dict(given.get("kwargs") or {})), self.kwargsrepr_maxsize, maxlevels=levels
            )
        return super().as_task_v2(*bound.args[1:], **bound.kwargs)

    def _create_task_sender(self) -> Callable[..., Any]:
        # Celery's send_task_message (a cached property) is what this returns; not in the stubs.
        send = super()._create_task_sender()  # type: ignore[misc]

        def send_task_message(*args: Any, headers: Any = None, **kwargs: Any) -> Any:
            if isinstance(headers, Mapping):
                headers = without_public_key(headers)
            return send(*args, headers=headers, **kwargs)

        return send_task_message
