"""What every fake server shares: ``with Fake() as fake`` starts it and stops it whatever
happens (:class:`Served`), and the HTTP fakes' threaded serving with a clean stop
(:class:`HttpFake`)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["HttpFake", "Served", "TrackingHandler", "TrackingServer"]


class Served(ABC):
    """A local server a test starts and stops; ``with`` does both."""

    @abstractmethod
    def start(self) -> Self:
        """Listen; return self."""

    @abstractmethod
    def stop(self) -> None:
        """Stop listening and release the port."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class TrackingHandler(BaseHTTPRequestHandler):
    """A request handler whose connections its :class:`HttpFake` can cut at stop: keep-alive,
    no Nagle delay, quiet (the fake keeps its own log)."""

    protocol_version = "HTTP/1.1"  # keep-alive: a client session reuses its connection
    # Headers and body leave in two writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK would stall every answer by ~40 ms.
    disable_nagle_algorithm = True
    timeout = 30.0  # an idle keep-alive connection gives its thread back after this
    server: TrackingServer

    def setup(self) -> None:
        super().setup()
        self.server.fake.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake.track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake's own request log is the log."""


class TrackingServer(ThreadingHTTPServer):
    """The fake's server: every handler thread is joined at close, none outlives stop()."""

    daemon_threads = False
    block_on_close = True
    request_queue_size = 128  # a burst of new connections must not wait on SYN retransmits

    def __init__(
        self, address: tuple[str, int], handler: type[TrackingHandler], fake: HttpFake
    ) -> None:
        super().__init__(address, handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) or a connection cut by stop() is no error.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class HttpFake(Served):
    """A local HTTP server served from a background thread. :meth:`stop` cuts waits short
    (``_stopping``), closes every open connection and joins every thread. ``_lock`` also
    guards what subclasses keep."""

    poll_interval_s = 0.05  # stop() waits at most this for the serving loop

    def __init__(self, handler: type[TrackingHandler], *, host: str, port: int) -> None:
        self._handler = handler
        self._address = (host, port)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: TrackingServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    def start(self) -> Self:
        """Bind and serve from a background thread."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self._stopping.clear()
        self._server = TrackingServer(self._address, self._handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll_interval_s},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop: cut waits short, close every connection, join every thread."""
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
        """``http://host:port``, without a trailing slash."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        """A handler's connection opened or closed (stop() cuts the open ones)."""
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)
