"""Each worker remembers the fleet epoch (:mod:`resilience.storage.epoch`) and looks at it again.

A worker looks when its consumer starts, which it does again after every reconnection to the
broker (on the Redis broker: right after Redis came back), and then every
``redis_epoch_check_s`` on the consumer's own timer, which also covers a state Redis that is
not the broker. The worker's memory is what outlives a Redis restart: on a loss it logs
``redis_data_lost`` (CRITICAL) once, and the one worker of the fleet that records the loss
escalates it as a ``RedisDataLost`` alert.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from celery import Celery, bootsteps

from resilience.policy.context import ErrorNotificationData
from resilience.storage.connection import connect
from resilience.storage.epoch import EpochStore, Sighting, to_failure
from resilience.storage.keys import KeySpace
from resilience.storage.server_clock import ServerClock
from worker.settings import Settings

__all__ = ["EpochStep", "EpochWatch"]

_log = structlog.get_logger("alchemiser.worker")


class EpochWatch:
    """One process's memory of the epoch, and what it does when the epoch is gone."""

    def __init__(
        self, store: EpochStore, escalate: Callable[[ErrorNotificationData], object]
    ) -> None:
        self._store = store
        self._escalate = escalate
        self._last: Sighting | None = None
        self._failing = False

    def look(self) -> None:
        """Look once; never raises (it runs in the consumer's event loop)."""
        try:
            seen = self._store.look(self._last)
        except Exception as exc:  # Redis away: the next look tells
            if not self._failing:
                _log.warning("epoch_check_failed", error=repr(exc))
            self._failing = True
            return
        self._failing = False
        loss = seen.loss
        if loss is not None:
            _log.critical(
                "redis_data_lost",
                message=loss.message,
                lost_epoch=loss.lost_epoch,
                epoch=loss.epoch,
                cause=loss.cause.value,
            )
            if seen.recorded:
                self._escalate_loss(to_failure(loss))
        elif seen.restarted:
            _log.info("redis_restarted", epoch=seen.sighting.epoch.epoch_id, data="kept")
        self._last = seen.sighting

    def _escalate_loss(self, failure: ErrorNotificationData) -> None:
        try:
            self._escalate(failure)
        except Exception as exc:  # health still reports the loss
            _log.warning("data_loss_not_escalated", error=repr(exc))


def build_watch(settings: Settings, app: Celery) -> EpochWatch:
    """The watch of a worker of the deployment ``settings`` describe; it escalates on ``app``."""
    client = connect(settings.redis_url, socket_timeout_s=settings.redis_socket_timeout_s)
    keys = KeySpace(settings.namespace)
    store = EpochStore(client, keys, ServerClock(client, keys))
    return EpochWatch(
        store,
        lambda failure: app.send_task("tasks.escalate", kwargs={"notification": failure}),
    )


class EpochStep(bootsteps.StartStopStep):
    """The consumer's step that runs the worker's :class:`EpochWatch`."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        settings: Settings = parent.app.conf["alchemiser_settings"]
        self._watch = build_watch(settings, parent.app)
        self._every_s = settings.redis_epoch_check_s
        self._timer: Any = None

    def start(self, parent: Any) -> None:
        self._watch.look()
        self._timer = parent.timer.call_repeatedly(self._every_s, self._watch.look)

    def stop(self, parent: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    shutdown = stop
