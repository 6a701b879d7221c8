"""A local stand-in for Sentry's ingest endpoint: it accepts and decodes envelopes.

Built on :class:`~tests.fakes.http_receiver.HttpReceiver`: sentry-sdk, given
:meth:`SentryReceiver.dsn`, posts to ``/api/<project>/envelope/``; every such request's body is
decompressed (``Content-Encoding: gzip`` or ``deflate``, sentry-sdk's default being gzip when
Brotli is not installed) and split into its items (envelope header line, then per item a
header line and a payload, of the header's ``length`` or up to the next newline).
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Self

from tests.fakes.http_receiver import HttpReceiver, ReceivedRequest
from tests.fakes.lifecycle import Served

__all__ = ["Envelope", "EnvelopeItem", "SentryReceiver", "decode_envelope"]

ENVELOPE_PATH = re.compile(r"^/api/(?P<project>[^/]+)/envelope/$")


@dataclass(frozen=True, slots=True)
class EnvelopeItem:
    """One item of an envelope: its header and its payload bytes."""

    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        """The item's type (``event``, ``check_in``, ``client_report``, ...)."""
        return str(self.headers.get("type", ""))

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One envelope as posted: ``body`` is the decompressed request body, byte for byte."""

    project: str
    headers: dict[str, Any]
    items: tuple[EnvelopeItem, ...]
    body: bytes


def _decompress(request: ReceivedRequest) -> bytes:
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding == "gzip":
        return gzip.decompress(request.body)
    if encoding == "deflate":
        return zlib.decompress(request.body)
    if encoding not in ("", "identity"):
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    return request.body


def decode_envelope(body: bytes, project: str = "") -> Envelope:
    """Split an (uncompressed) envelope into its header and items."""
    header_line, _, rest = body.partition(b"\n")
    items: list[EnvelopeItem] = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item_headers: dict[str, Any] = json.loads(item_line)
        length = item_headers.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:].removeprefix(b"\n")
        items.append(EnvelopeItem(item_headers, payload))
    return Envelope(project, json.loads(header_line), tuple(items), body)


class SentryReceiver(Served):
    """A local Sentry DSN endpoint that keeps every envelope it was sent."""

    def __init__(self) -> None:
        self._http = HttpReceiver()

    def start(self) -> Self:
        """Listen on a free port of 127.0.0.1."""
        self._http.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        self._http.stop()

    def dsn(self, project: int = 1, key: str = "public") -> str:
        """The DSN that sends to this receiver."""
        host = self._http.url.removeprefix("http://")
        return f"http://{key}@{host}/{project}"

    def envelopes(self) -> list[Envelope]:
        """Every envelope posted so far, decoded, in arrival order."""
        found = []
        for request in self._http.requests:
            match = ENVELOPE_PATH.match(request.path)
            if request.method == "POST" and match:
                found.append(decode_envelope(_decompress(request), match["project"]))
        return found

    def items(self, item_type: str) -> list[dict[str, Any]]:
        """The JSON payloads of every item of ``item_type`` so far."""
        return [
            item.json()
            for envelope in self.envelopes()
            for item in envelope.items
            if item.type == item_type
        ]

    def events(self) -> list[dict[str, Any]]:
        """Every error event so far."""
        return self.items("event")
