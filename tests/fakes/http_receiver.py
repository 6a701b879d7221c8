"""A local HTTP receiver for the notification channels' tests: it logs and answers as scripted.

A real HTTP server (stdlib ``ThreadingHTTPServer`` on ``127.0.0.1``, a free port, HTTP/1.1
keep-alive, one thread per connection) standing in for a Slack incoming webhook, a generic
webhook, Twilio's REST API or PagerDuty's Events API v2. Every request (POST, or GET) is logged
on arrival as a :class:`ReceivedRequest` (:attr:`HttpReceiver.requests`), then answered with the
next :class:`Reply` of the script (:meth:`HttpReceiver.reply_with`), else with
:attr:`HttpReceiver.default` (200 ``ok``). A reply's ``delay_s`` passes in the handler thread
before it answers, so a client with a shorter timeout gives up first; :meth:`HttpReceiver.stop`
cuts such waits short and joins every thread. Nothing is written to stderr.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.lifecycle import HttpFake, TrackingHandler

__all__ = [
    "HttpReceiver",
    "ReceivedRequest",
    "Reply",
    "closed_port",
]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as the receiver saw it.

    ``path`` excludes the query (``query`` holds it, undecoded); ``headers`` has lower-case
    names (the last value of a repeated header); ``monotonic_s`` and ``wall_s`` are
    ``time.monotonic()`` and ``time.time()`` on arrival.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    monotonic_s: float
    wall_s: float

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` when it is not)."""
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded`` (the last of a repeated
        field; ``ValueError`` when it is not a form)."""
        text = self.body.decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: after ``delay_s``, ``status`` with ``body`` and ``headers``.

    ``Content-Length`` and ``Content-Type: text/plain`` are added unless ``headers`` names them
    (a test may send a ``Content-Length`` the body does not fill).
    """

    status: int = 200
    body: bytes = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.delay_s >= 0:
            raise ValueError("delay_s must be >= 0")


class HttpReceiver(HttpFake):
    """Logs every request and answers it from a script of :class:`Reply`; see the module."""

    poll_interval_s = 0.01

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_RequestHandler, host=host, port=port)
        self._log: list[ReceivedRequest] = []
        self._script: deque[Reply] = deque()
        self._default = Reply()

    # --- script ------------------------------------------------------------------------------

    def reply_with(self, *replies: Reply) -> None:
        """Queue ``replies`` for the next requests, one per request, in order."""
        with self._lock:
            self._script.extend(replies)

    def pending_replies(self) -> int:
        """How many scripted replies no request has consumed yet."""
        with self._lock:
            return len(self._script)

    @property
    def default(self) -> Reply:
        """The answer once the script has run out (200 ``ok`` unless set)."""
        with self._lock:
            return self._default

    @default.setter
    def default(self, reply: Reply) -> None:
        with self._lock:
            self._default = reply

    # --- request log -------------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._log)

    # --- serving -----------------------------------------------------------------------------

    def _serve(self, handler: _RequestHandler) -> None:
        # Read the body first, so the connection stays in step for keep-alive.
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        split = urlsplit(handler.path)
        received = ReceivedRequest(
            method=handler.command,
            path=split.path,
            query=split.query,
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            monotonic_s=time.monotonic(),
            wall_s=time.time(),
        )
        with self._lock:
            self._log.append(received)
            reply = self._script.popleft() if self._script else self._default
        if reply.delay_s > 0 and self._stopping.wait(reply.delay_s):
            handler.close_connection = True  # stopping: no answer
            return
        _send(handler, reply)


def _send(handler: _RequestHandler, reply: Reply) -> None:
    names = {name.lower() for name in reply.headers}
    no_body = reply.status in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED)
    handler.send_response(reply.status)
    if not no_body:
        if "content-type" not in names:
            handler.send_header("Content-Type", "text/plain; charset=utf-8")
        if "content-length" not in names:
            handler.send_header("Content-Length", str(len(reply.body)))
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if not no_body:
        handler.wfile.write(reply.body)


class _RequestHandler(TrackingHandler):
    @property
    def receiver(self) -> HttpReceiver:
        return cast("HttpReceiver", self.server.fake)

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.receiver._serve(self)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.receiver._serve(self)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
