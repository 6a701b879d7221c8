"""Task messages that show no secret: the ``argsrepr``/``kwargsrepr`` headers every task message
carries (Flower, ``celery inspect`` and task events display them) are built from scrubbed copies
of the arguments. The arguments themselves travel unchanged: the task needs them.
"""

from __future__ import annotations

import inspect
from typing import Any

from celery.app.amqp import AMQP
from celery.utils.saferepr import saferepr

from resilience.scrub import Scrubber

__all__ = ["SCRUBBER_SETTING", "ScrubbingAMQP"]

# Where create_app leaves the app's scrubber for its AMQP object.
SCRUBBER_SETTING = "alchemiser_scrubber"

# Celery passes most of as_task_v2's arguments by position: bind them to find ours.
_AS_TASK_V2 = inspect.signature(AMQP.as_task_v2)


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
