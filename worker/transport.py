"""The Redis broker transport, made to hand the worker every message, readable or not, to
survive a Redis restart, and to keep the messages it holds from being delivered twice.

kombu's Redis channel pops a message with BRPOP and parses it as JSON inside its event loop;
a list item that is not a kombu envelope (``LPUSH <ns>:trading 'not json'``) raises there, and
the worker exits with an "Unrecoverable error". Here such an item is wrapped into an envelope of
content type ``application/x-alchemiser-unreadable`` carrying the raw text, so it reaches the
consumer as a message it cannot decode, which quarantines and acknowledges it
(``worker.consumer``).

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
from typing import Any

import structlog
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

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

_log = structlog.get_logger("alchemiser.transport")


def restore_sweep_s(visibility_timeout_s: float) -> float:
    """How often workers look for messages past the visibility timeout: kombu's 10 s, or a
    renewal period when the timeout is short. A dead worker's messages are back on their queue
    within ``visibility_timeout_s + restore_sweep_s(visibility_timeout_s)`` of its death."""
    return min(RESTORE_SWEEP_MAX_S, visibility_timeout_s / LEASE_RENEWALS_PER_TIMEOUT)


def _is_envelope(item: bytes | str) -> bool:
    try:
        payload = json.loads(item)
    except (ValueError, TypeError):
        return False
    properties = payload.get("properties") if isinstance(payload, dict) else None
    return isinstance(properties, dict) and "delivery_tag" in properties


def readable(item: bytes | str, queue: str) -> bytes | str:
    """``item`` if it is a kombu envelope, else an envelope holding its raw text."""
    if _is_envelope(item):
        return item
    raw = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
    return json.dumps(
        {
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
    )


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

    def _create_client(self, asynchronous: bool = False) -> Any:
        create = super()._create_client  # type: ignore[misc]
        client = create(asynchronous)
        parse_response = client.parse_response
        sep = self.sep

        def parse_envelopes(connection: Any, command_name: str, **options: Any) -> Any:
            reply = parse_response(connection, command_name, **options)
            if command_name == "BRPOP" and reply:
                dest, item = reply
                queue = bytes_to_str(dest).rsplit(sep, 1)[0]
                return dest, readable(item, queue)
            return reply

        # This channel's own client object: the event loop's BRPOP replies pass through here.
        client.parse_response = parse_envelopes
        return client


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

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        cycle: Any = self.cycle
        # A reconnect registers again: the previous connection's timer must not pile up.
        previous = getattr(cycle, "_alchemiser_lease_tref", None)
        if previous is not None:
            previous.cancel()
        options = connection.client.transport_options
        timeout_s = float(options.get("visibility_timeout", kombu_redis.Channel.visibility_timeout))
        cycle._alchemiser_lease_tref = loop.call_repeatedly(
            timeout_s / LEASE_RENEWALS_PER_TIMEOUT, self._renew_leases
        )

    def _renew_leases(self) -> None:
        now_s = time.time()
        cycle: Any = self.cycle
        for channel in list(cycle._channels):
            try:
                renew_leases(channel, now_s)
            except channel.connection_errors as lost:
                # The consumer reconnects; the next renewal, a quarter timeout on, catches up.
                _log.warning("lease_renewal_failed", error=type(lost).__name__)
