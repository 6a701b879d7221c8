"""The Redis broker transport, made to hand the worker every message, readable or not, to
survive a Redis restart, and to keep the messages it holds from being delivered twice.

kombu's Redis channel pops a message with BRPOP and parses it as JSON inside its event loop;
a list item that is not a kombu envelope (``LPUSH <ns>:trading 'not json'``) raises there, and
the worker exits with an "Unrecoverable error". Here such an item is wrapped into an envelope of
content type ``application/x-alchemiser-unreadable`` carrying the raw text, so it reaches the
consumer as a message it cannot decode, which quarantines and acknowledges it
(``worker.consumer``).

kombu takes a message with BRPOP and records it as unacknowledged in a second command; a worker
killed between the two (the reply waiting in its socket while the event loop is busy), or a
Redis killed after logging the pop and before the reply reached the worker, lost the message
for good (celery #4354): the soak lost 1 order in 1,000 that way. Here the worker takes a
message with one script that pops it and records it as held (``lua/pop_and_hold.lua``), sent
and read through kombu's own asynchronous BRPOP path; an idle worker looks again every
:data:`IDLE_POLL_S`.

kombu restores an unacknowledged message once it is older than the visibility timeout, whoever
holds it: with the 1 h default, the orders a killed worker held came back an hour later, past
their deadline; with a short timeout, a retry a live worker holds until its countdown ends was
delivered twice. Here each worker renews the delivery time of the messages it holds
(:func:`renew_leases`, every quarter of the timeout), so the timeout only runs for messages
whose worker stopped renewing: a dead worker's are restored within the visibility timeout plus
one restore sweep, and a live worker's are never taken from it.
"""

from __future__ import annotations

import json
import time
import uuid
from queue import Empty
from typing import Any

import structlog
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str

from resilience.storage.scripts import lua_source

__all__ = [
    "LEASE_RENEWALS_PER_TIMEOUT",
    "UNREADABLE_CONTENT_TYPE",
    "ResilientRedisTransport",
    "readable",
    "renew_leases",
    "restore_sweep_s",
]

UNREADABLE_CONTENT_TYPE = "application/x-alchemiser-unreadable"
# A held message's delivery time is renewed this many times per visibility timeout: a worker
# whose event loop stalls for up to three quarters of the timeout keeps its messages.
LEASE_RENEWALS_PER_TIMEOUT = 4

# kombu's default sweep period for messages past the visibility timeout.
RESTORE_SWEEP_MAX_S = 10.0
# How soon a worker whose queues were empty looks at them again (a busy queue is read back to
# back): the longest a message waits on an idle worker.
IDLE_POLL_S = 0.05

_log = structlog.get_logger("alchemiser.transport")


def restore_sweep_s(visibility_timeout_s: float) -> float:
    """How often workers look for messages past the visibility timeout: kombu's 10 s, or a
    renewal period when the timeout is short. A dead worker's messages are back on their queue
    within ``visibility_timeout_s + restore_sweep_s(visibility_timeout_s)`` of its death."""
    return min(RESTORE_SWEEP_MAX_S, visibility_timeout_s / LEASE_RENEWALS_PER_TIMEOUT)


def _envelope(item: bytes | str) -> dict[str, Any] | None:
    """``item`` parsed, if it is a kombu envelope (what the pop script records as held)."""
    try:
        payload = json.loads(item)
    except (ValueError, TypeError):
        return None
    properties = payload.get("properties") if isinstance(payload, dict) else None
    # What the pop script records as held, and what kombu needs to record it itself.
    if not isinstance(properties, dict) or not isinstance(properties.get("delivery_tag"), str):
        return None
    if not isinstance(properties.get("delivery_info"), dict):
        return None
    envelope: dict[str, Any] = payload
    return envelope


def readable(item: bytes | str, queue: str) -> dict[str, Any]:
    """``item`` parsed if it is a kombu envelope, else an envelope holding its raw text."""
    payload = _envelope(item)
    if payload is not None:
        return payload
    raw = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
    return {
        "body": raw,
        "content-encoding": "utf-8",
        "content-type": UNREADABLE_CONTENT_TYPE,
        "headers": {"x-alchemiser-unreadable": "not a kombu message envelope"},
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": queue},
            "body_encoding": None,
        },
    }


class _QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        held: set[str] = self.channel.__dict__.setdefault("_held_by_script", set())
        if delivery_tag in held:
            # The pop script recorded it already: only this process's bookkeeping is left.
            held.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)


class _Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """kombu's parameters, remembered for when the transport was detached.

        When Redis goes away, Celery's consumer collects the broken connection (which detaches
        the transport from it, ``transport.client = None``) and then closes it; that close, and
        the acks of tasks still running, build a new client for this channel, and kombu reads
        the host from the detached client: ``AttributeError: 'NoneType' object has no attribute
        'hostname'``, an "Unrecoverable error" that stops the worker. With the parameters
        remembered, they reach Redis (or fail with a connection error, which kombu and Celery
        handle) and the consumer reconnects.
        """
        remembered: dict[bool, dict[str, Any]] = self.__dict__.setdefault("_remembered", {})
        if getattr(self.connection, "client", None) is None and asynchronous in remembered:
            return dict(remembered[asynchronous])
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[misc]
        remembered[asynchronous] = dict(params)
        return params

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Send the pop script where kombu sends BRPOP (the event loop reads its reply).

        Without an event loop (a client waiting for control replies) there is no timer to come
        back after an empty look, and nothing it takes is a task: kombu's BRPOP serves it.
        """
        self._pop_script_sent = False
        if not getattr(self.connection, "event_loop_registered", False):
            super()._brpop_start(timeout)  # type: ignore[misc]
            return
        if time.monotonic() - self.__dict__.get("_empty_at", 0.0) < IDLE_POLL_S:
            return  # idle: the transport's timer brings the loop back (register_with_event_loop)
        kombu: Any = self  # kombu's Channel is untyped beyond its public surface
        queues = kombu._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        prefix = self.global_keyprefix or ""
        keys = [
            prefix + kombu._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues
        ]
        keys += [prefix + self.unacked_key, prefix + self.unacked_index_key]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        self._pop_script_sent = True
        self.client.connection.send_command(
            "EVAL", lua_source("worker", "pop_and_hold"), len(keys), *keys, repr(time.time())
        )

    def _brpop_read(self, **options: Any) -> bool:
        if not self.__dict__.get("_pop_script_sent", False):
            return bool(super()._brpop_read(**options))  # type: ignore[misc]
        kombu: Any = self
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVAL", **options)
            except kombu.connection_errors:
                self.client.connection.disconnect()  # the next poll reconnects
                raise
            if not reply:
                self._empty_at = time.monotonic()
                raise Empty()
            key, item = reply
            name = bytes_to_str(key).removeprefix(self.global_keyprefix or "")
            queue = name.rsplit(self.sep, 1)[0]
            payload = readable(item, queue)
            if payload.get("content-type") != UNREADABLE_CONTENT_TYPE:
                self.__dict__.setdefault("_held_by_script", set()).add(
                    payload["properties"]["delivery_tag"]
                )
            kombu._queue_cycle.rotate(queue)
            self.connection._deliver(payload, queue)
            return True
        finally:
            self._in_poll = None
            kombu._flush_brpop_reauth()


def _wake() -> None:
    """Nothing: the timer entry only ends the event loop's wait."""


def renew_leases(channel: kombu_redis.Channel, now_s: float) -> int:
    """Set the delivery time of the messages ``channel`` holds unacknowledged to ``now_s``;
    how many were renewed. ``XX``: a message acknowledged meanwhile is not brought back."""
    tags = list(channel.qos._delivered or ())
    if not tags:
        return 0
    with channel.conn_or_acquire() as client:
        return int(
            client.zadd(channel.unacked_index_key, dict.fromkeys(tags, now_s), xx=True, ch=True)
            or 0
        )


class ResilientRedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`_Channel` and lease renewal."""

    Channel = _Channel
    # Set once a worker's event loop drives this transport (see _Channel._brpop_start).
    event_loop_registered = False

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        self.event_loop_registered = True
        cycle: Any = self.cycle
        # A reconnect registers again: the previous connection's timers must not pile up.
        for previous in (
            getattr(cycle, "_alchemiser_lease_tref", None),
            getattr(cycle, "_alchemiser_idle_tref", None),
        ):
            if previous is not None:
                previous.cancel()
        options = connection.client.transport_options
        timeout_s = float(options.get("visibility_timeout", kombu_redis.Channel.visibility_timeout))
        cycle._alchemiser_lease_tref = loop.call_repeatedly(
            timeout_s / LEASE_RENEWALS_PER_TIMEOUT, self._renew_leases
        )
        # The pop script does not block as BRPOP did: this timer wakes the loop, whose next
        # tick sends the script again on an idle channel.
        cycle._alchemiser_idle_tref = loop.call_repeatedly(IDLE_POLL_S, _wake)

    def _renew_leases(self) -> None:
        now_s = time.time()
        cycle: Any = self.cycle
        for channel in list(cycle._channels):
            try:
                renew_leases(channel, now_s)
            except channel.connection_errors as lost:
                # The consumer reconnects; the next renewal, a quarter timeout on, catches up.
                _log.warning("lease_renewal_failed", error=type(lost).__name__)
