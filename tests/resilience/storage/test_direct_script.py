"""Tests of ``resilience.storage.direct_script.DirectScript``: EVALSHA over a connection held per
thread and per process, on a real Redis (and, for a late reply, on a tiny fake server)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import ResponseError, TimeoutError

from resilience.storage.connection import connect
from resilience.storage.direct_script import IDLE_CHECK_S, DirectScript
from tests.forking import run_forked

ECHO = "return {KEYS[1], ARGV[1], 7}"


@pytest.fixture
def decoded(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis as the guard gets it (decodes to str)."""
    conn = connect(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def echo(decoded: redis.Redis) -> Iterator[DirectScript]:
    """A script replying with its key, its argument and 7; its connections closed after."""
    script = DirectScript(decoded, ECHO)
    yield script
    connection = getattr(script._local, "connection", None)
    if connection is not None:
        connection.disconnect()


def held(script: DirectScript) -> Any:
    """The connection the calling thread holds for ``script``."""
    return script._local.connection


def client_id(connection: Any) -> int:
    """The Redis client id of a held connection (asked over it)."""
    connection.send_command("CLIENT", "ID")
    return int(connection.read_response())


# --- a fake server whose first EVALSHA reply comes late --------------------------------------


class LateReplyServer:
    """Speaks just enough RESP for redis-py: HELLO gets proto 3, PING gets PONG, other
    commands OK; the first EVALSHA gets ``:1`` only once released, every later one ``:2`` at
    once."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.release = threading.Event()
        self.stale_sent = threading.Event()
        self.evalshas = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while (command := self._read_command(reader)) is not None:
                name = command[0].upper()
                if name == b"HELLO":  # redis-py 8 speaks RESP3 by default
                    conn.sendall(b"%1\r\n+proto\r\n:3\r\n")
                elif name == b"PING":
                    conn.sendall(b"+PONG\r\n")
                elif name != b"EVALSHA":
                    conn.sendall(b"+OK\r\n")
                else:
                    with self._lock:
                        self.evalshas += 1
                        first = self.evalshas == 1
                    if first:
                        self.release.wait(timeout=5)
                        try:
                            conn.sendall(b":1\r\n")
                        finally:
                            self.stale_sent.set()
                    else:
                        conn.sendall(b":2\r\n")
        except OSError:
            pass
        finally:
            reader.close()
            conn.close()

    @staticmethod
    def _read_command(reader: Any) -> list[bytes] | None:
        header = reader.readline()
        if not header.startswith(b"*"):
            return None
        parts = []
        for _ in range(int(header[1:])):
            length = int(reader.readline()[1:])
            parts.append(reader.read(length + 2)[:-2])
        return parts

    def close(self) -> None:
        self.release.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        for conn in self._sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._accepting.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def late_server() -> Iterator[LateReplyServer]:
    """A started :class:`LateReplyServer`, closed and its threads joined afterwards."""
    server = LateReplyServer()
    yield server
    server.close()


# --- tests -----------------------------------------------------------------------------------


def test_returns_the_scripts_reply_decoded_like_the_client(echo: DirectScript) -> None:
    """The reply comes back as the client would give it: str for strings, int for numbers."""
    assert echo(keys=["k"], args=["a"]) == ["k", "a", 7]
    assert echo(keys=["other"], args=[3.5]) == ["other", "3.5", 7]


def test_a_script_flushed_from_redis_is_loaded_again(
    echo: DirectScript, decoded: redis.Redis
) -> None:
    """After SCRIPT FLUSH the next call gets NOSCRIPT, loads the script and succeeds."""
    assert echo(keys=["k"], args=["before"]) == ["k", "before", 7]
    decoded.script_flush()
    assert decoded.script_exists(echo.sha) == [False]
    assert echo(keys=["k"], args=["after"]) == ["k", "after", 7]
    assert decoded.script_exists(echo.sha) == [True]


def test_a_connection_redis_closed_is_replaced_and_the_call_sent_again(
    echo: DirectScript, decoded: redis.Redis
) -> None:
    """A held connection the server killed while idle: the next call reconnects and answers."""
    assert echo(keys=["k"], args=["a"]) == ["k", "a", 7]
    connection = held(echo)
    killed = client_id(connection)
    assert decoded.client_kill_filter(_id=str(killed)) == 1
    echo._local.used_at -= IDLE_CHECK_S  # idle long enough to be checked before use

    assert echo(keys=["k"], args=["b"]) == ["k", "b", 7]
    assert held(echo) is connection
    assert client_id(connection) != killed


def test_a_connection_shut_down_locally_is_replaced(echo: DirectScript) -> None:
    """A held connection whose socket was shut down: the next call reconnects and answers."""
    assert echo(keys=["k"], args=["a"]) == ["k", "a", 7]
    connection = held(echo)
    connection._sock.shutdown(socket.SHUT_RDWR)
    assert echo(keys=["k"], args=["b"]) == ["k", "b", 7]


def test_a_timed_out_call_leaves_no_stale_reply_for_the_next(
    late_server: LateReplyServer,
) -> None:
    """A call that timed out raises TimeoutError; its reply, arriving later, is not read as
    the next call's (which gets its own: 2, not 1)."""
    client = connect(
        f"redis://127.0.0.1:{late_server.port}/0",
        socket_timeout_s=0.05,
        connect_timeout_s=1.0,
        retries=0,
    )
    script = DirectScript(client, "return 1")
    try:
        with pytest.raises(TimeoutError):
            script(keys=[], args=[])
        late_server.release.set()
        assert late_server.stale_sent.wait(timeout=5)
        assert script(keys=[], args=[]) == 2
        assert late_server.evalshas == 2
    finally:
        held(script).disconnect()
        client.close()


def test_each_thread_holds_its_own_connection(echo: DirectScript) -> None:
    """Two threads calling the same script use two connections, each getting its own reply."""
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def call(name: str) -> None:
        try:
            barrier.wait(timeout=5)
            results[name] = (echo(keys=[name], args=[name.upper()]), held(echo))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=call, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert errors == []
    (reply_a, conn_a), (reply_b, conn_b) = results["a"], results["b"]
    assert (reply_a, reply_b) == (["a", "A", 7], ["b", "B", 7])
    assert conn_a is not conn_b
    assert getattr(echo._local, "connection", None) is None  # the main thread made none
    for conn in (conn_a, conn_b):
        conn.disconnect()


def test_a_forked_child_uses_a_connection_of_its_own(echo: DirectScript) -> None:
    """A forked child gets a new connection and answers; the parent's still works after the
    child exits."""
    assert echo(keys=["k"], args=["parent"]) == ["k", "parent", 7]
    parent_connection = held(echo)
    parent_id = client_id(parent_connection)

    def child() -> int:
        reply = echo(keys=["k"], args=["child"])
        ok = reply == ["k", "child", 7] and held(echo) is not parent_connection
        ok = ok and client_id(held(echo)) != parent_id
        return 0 if ok else 3

    assert run_forked(child) == 0
    assert echo(keys=["k"], args=["again"]) == ["k", "again", 7]
    assert held(echo) is parent_connection
    assert client_id(parent_connection) == parent_id


def test_an_exception_while_reading_disconnects_and_propagates(
    echo: DirectScript, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BaseException raised mid-read (a soft time limit) propagates and drops the
    connection, so the unread reply is not taken by the next call, which answers its own."""
    assert echo(keys=["k"], args=["warm"]) == ["k", "warm", 7]
    connection = held(echo)
    read = connection.read_response
    interrupts = [KeyboardInterrupt()]

    def interrupted() -> Any:
        if interrupts:
            raise interrupts.pop()
        return read()

    monkeypatch.setattr(connection, "read_response", interrupted)
    with pytest.raises(KeyboardInterrupt):
        echo(keys=["k"], args=["first"])
    assert connection._sock is None
    assert echo(keys=["k"], args=["second"]) == ["k", "second", 7]


def test_an_error_reply_propagates_and_the_next_call_works(decoded: redis.Redis) -> None:
    """A script's error reply raises ResponseError; the next call answers normally."""
    script = DirectScript(
        decoded, "if ARGV[1] == 'fail' then return redis.error_reply('no') end return ARGV[1]"
    )
    try:
        with pytest.raises(ResponseError, match="no"):
            script(keys=[], args=["fail"])
        assert script(keys=[], args=["fine"]) == "fine"
    finally:
        held(script).disconnect()
