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

import contextlib
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.lifecycle import Served

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


class HttpReceiver(Served):
    """Logs every request and answers it from a script of :class:`Reply`; see the module."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._lock = threading.Lock()  # script, default, log, open connections
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._log: list[ReceivedRequest] = []
        self._script: deque[Reply] = deque()
        self._default = Reply()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve from a background thread."""
        if self._server is not None:
            raise RuntimeError("HttpReceiver is already started")
        self._stopping.clear()
        self._server = _Server(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits at most this for the loop
            name="http-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop: cut delays short, close every connection, join every thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client closed it already
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins the handler threads
        thread.join()
        self._server = self._thread = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port``, without a trailing slash."""
        if self._server is None:
            raise RuntimeError("HttpReceiver is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

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

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

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


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client session reuses its connection
    disable_nagle_algorithm = True  # headers and body leave in two writes: no 40 ms stall
    timeout = 30.0  # an idle keep-alive connection gives its thread back after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.receiver._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.receiver._track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: :attr:`HttpReceiver.requests` is the log."""

    def do_POST(self) -> None:
        self.server.receiver._serve(self)

    def do_GET(self) -> None:
        self.server.receiver._serve(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads: none outlives stop()

    def __init__(self, address: tuple[str, int], receiver: HttpReceiver) -> None:
        super().__init__(address, _RequestHandler)
        self.receiver = receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) or a connection cut by stop() is no error.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
