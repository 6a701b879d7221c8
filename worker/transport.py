"""The Redis broker transport, made to hand the worker every message, readable or not, and
to survive a Redis restart.

kombu's Redis channel pops a message with BRPOP and parses it as JSON inside its event loop;
a list item that is not a kombu envelope (``LPUSH <ns>:trading 'not json'``) raises there, and
the worker exits with an "Unrecoverable error". Here such an item is wrapped into an envelope of
content type ``application/x-alchemiser-unreadable`` carrying the raw text, so it reaches the
consumer as a message it cannot decode, which quarantines and acknowledges it
(``worker.consumer``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

__all__ = ["UNREADABLE_CONTENT_TYPE", "QuarantiningRedisTransport", "readable"]

UNREADABLE_CONTENT_TYPE = "application/x-alchemiser-unreadable"


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


class QuarantiningRedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`_Channel`."""

    Channel = _Channel
