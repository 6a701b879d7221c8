"""The fleet's HTTP face: ``/health`` for load balancers and uptime monitors, ``/metrics`` for
Prometheus, and the dashboard page at ``/``.

Every answer is computed from Redis when asked, so any instance (``alchemiser serve``, one per
host or one for the fleet) shows the whole fleet. ``/health`` answers 200 while the fleet is
healthy or in warning and 503 when it is critical, with the health report as JSON either way, so
a load balancer or an uptime monitor needs no parsing. The dashboard is one static page
(``worker/web/dashboard.html``, no outside assets: trading hosts often have no internet) that
reads ``/api/dashboard`` every few seconds.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import structlog

from resilience.observability.health import HealthReport, HealthStatus

__all__ = ["ObservabilityServer", "Sources"]

_log = structlog.get_logger("alchemiser.http")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A connection that sends nothing for this long is closed: idle sockets must not hold threads.
READ_TIMEOUT_S = 10.0
# Connections served at once; one more is answered 503 at once, without a thread of its own.
MAX_CONNECTIONS = 32
# While Redis is down every probe fails alike: said once a minute, not once a request.
FAILURE_LOG_EVERY_S = 60.0
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n"
)


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops connections under a burst of probes.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        max_connections: int,
    ) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):  # the client may be gone already
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


@dataclass(frozen=True, slots=True)
class Sources:
    """Where each answer comes from; each is called once per request."""

    health: Callable[[], HealthReport]
    metrics: Callable[[], bytes]
    # The dashboard's extras beside the health report: the error series, the limits.
    dashboard: Callable[[HealthReport], dict[str, Any]]


class ObservabilityServer:
    """A threaded HTTP server for the routes above; :meth:`start` serves in the background."""

    def __init__(
        self,
        sources: Sources,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._sources = sources
        page = resources.files("worker").joinpath("web/dashboard.html").read_bytes()
        handler = _handler(sources, page, read_timeout_s)
        self._server = _BoundedServer((host, port), handler, max_connections)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ObservabilityServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="alchemiser-http", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _handler(sources: Sources, page: bytes, read_timeout_s: float) -> type[BaseHTTPRequestHandler]:
    failures_logged_at: dict[str, float] = {}

    def log_failure(path: str, failed: Exception) -> None:
        key = f"{path} {type(failed).__name__}"
        now = time.monotonic()
        if now - failures_logged_at.get(key, -FAILURE_LOG_EVERY_S) >= FAILURE_LOG_EVERY_S:
            failures_logged_at[key] = now
            _log.warning("http_request_failed", path=path, error=type(failed).__name__)

    class Handler(BaseHTTPRequestHandler):
        server_version = "alchemiser"
        # StreamRequestHandler puts this on the connection's socket.
        timeout = read_timeout_s

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/health":
                    report = sources.health()
                    status = (
                        HTTPStatus.SERVICE_UNAVAILABLE
                        if report.status is HealthStatus.CRITICAL
                        else HTTPStatus.OK
                    )
                    self._send(status, "application/json", _json(report.to_dict()))
                elif path == "/metrics":
                    self._send(HTTPStatus.OK, PROMETHEUS_CONTENT_TYPE, sources.metrics())
                elif path == "/api/dashboard":
                    report = sources.health()
                    document = {"health": report.to_dict(), **sources.dashboard(report)}
                    self._send(HTTPStatus.OK, "application/json", _json(document))
                elif path in ("/", "/dashboard"):
                    self._send(HTTPStatus.OK, "text/html; charset=utf-8", page)
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
            except Exception as failed:
                # Redis down is the usual cause; the class says which without leaking a URL.
                log_failure(path, failed)
                unknown = _json({"status": "unknown", "error": type(failed).__name__})
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "application/json", unknown)

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Scrapes and health checks every few seconds would flood the log.
            return

    return Handler


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=str).encode()
