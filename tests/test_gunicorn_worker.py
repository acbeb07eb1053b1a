"""The pieces of receiver/gunicorn_worker.py's client deadline, on socket pairs (no server; the
real-process tests are in tests/test_slow_clients.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from gunicorn.config import Config
from gunicorn.http.message import Request
from gunicorn.workers import gthread

from receiver.gunicorn_worker import (
    ClientTimedOut,
    DeadlineThreadWorker,
    DeadlineUnreader,
    finish_now,
    read_body_now,
)
from receiver.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, client side) of a connected socket pair."""
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def trickle(sock: socket.socket, data: bytes, interval: float) -> threading.Thread:
    """Send `data` one byte every `interval` seconds from a thread (stops quietly when closed)."""

    def run() -> None:
        try:
            for byte in data:
                sock.sendall(bytes([byte]))
                time.sleep(interval)
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def request(server: socket.socket, deadline: float | None = None) -> Request:
    """gunicorn's parse of the next request on `server`, read through a DeadlineUnreader."""
    reader = DeadlineUnreader(server)
    reader.deadline = deadline
    return Request(Config(), reader, ("127.0.0.1", 1))


def test_the_deadline_bounds_the_whole_read_not_each_recv(pair) -> None:  # type: ignore[no-untyped-def]
    """A byte every 20 ms never makes one recv() wait long; the deadline still ends the read."""
    server, client = pair
    trickle(client, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 1000, 0.02)
    started = time.monotonic()
    with pytest.raises(ClientTimedOut):
        request(server, deadline=started + 0.3)
    assert 0.3 <= time.monotonic() - started < 0.6
    assert server.gettimeout() is None  # the socket is left blocking, as gunicorn expects


def test_a_request_sent_in_time_is_read_and_no_deadline_means_no_limit(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert request(server, deadline=time.monotonic() + 1).path == "/healthz"
    client.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert request(server, deadline=None).path == "/readyz"


def test_the_body_is_read_under_the_deadline_before_the_app(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    client.sendall(b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    trickle(client, b"0123456789", 0.05)
    started = time.monotonic()
    req = request(server, deadline=started + 0.2)
    with pytest.raises(ClientTimedOut):
        read_body_now(req, server, cap=1024)
    assert time.monotonic() - started < 0.5


def test_a_body_read_now_is_served_from_memory_in_full(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    body = b'{"a": 1}' * 100
    client.sendall(b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n" + body)
    req = request(server, deadline=time.monotonic() + 1)
    assert read_body_now(req, server, cap=1025) is True
    client.close()  # nothing more comes from the client: the app reads from memory
    assert req.body.read(500) + req.body.read() == body


def test_a_chunked_body_over_the_cap_keeps_its_rest_for_the_app_to_refuse(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    chunks = b"".join(b"%x\r\n%s\r\n" % (100, b"z" * 100) for _ in range(5)) + b"0\r\n\r\n"
    client.sendall(b"POST /w HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    req = request(server, deadline=time.monotonic() + 1)
    assert read_body_now(req, server, cap=201) is True
    assert len(req.body.read(201)) == 201  # the app's limit + 1: it answers 413
    assert req.body.read() == b"z" * 299  # and what is left is still framed (gunicorn drains it)


def test_a_body_declared_over_the_cap_is_left_unread(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    client.sendall(
        b"POST /w HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
    )
    req = request(server, deadline=time.monotonic() + 1)
    started = time.monotonic()
    assert read_body_now(req, server, cap=1025) is False  # no wait for a body the app refuses
    assert time.monotonic() - started < 0.1
    assert req._expected_100_continue is False  # nor an invitation to send it
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(100)


def test_expect_100_continue_is_answered_before_the_body_is_read(pair) -> None:  # type: ignore[no-untyped-def]
    """A client sending `Expect: 100-continue` waits for `100 Continue` before its body."""
    server, client = pair
    client.sendall(
        b"POST /w HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    )
    req = request(server, deadline=time.monotonic() + 2)

    def client_side() -> None:
        client.settimeout(2)
        if client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n":
            client.sendall(b"body")

    thread = threading.Thread(target=client_side)
    thread.start()
    assert read_body_now(req, server, cap=1025) is True
    thread.join(timeout=3)
    assert req.body.read() == b"body"
    assert req._expected_100_continue is False  # gunicorn does not send a second one


def test_finish_now_sends_the_answer_and_an_end_without_waiting_for_the_client(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    client.sendall(b"more than was read")  # what the client sent on: drained, not reset over
    server.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
    started = time.monotonic()
    finish_now(server)  # the client keeps its end open and says nothing
    assert time.monotonic() - started < 0.1
    client.settimeout(1)
    assert client.recv(100) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert client.recv(100) == b""  # the end of the answer
    finish_now(server)  # twice is harmless (gunicorn closes it afterwards)


def test_the_gthread_internals_the_worker_builds_on_are_there(pair) -> None:  # type: ignore[no-untyped-def]
    """DeadlineThreadWorker.handle() works around these (gunicorn ≥ 26): a gunicorn without
    them must fail here, not quietly lose the deadline. (`Request._expected_100_continue`: the
    test above.)"""
    assert gthread._DEFER is not None and gthread.DEFAULT_WORKER_DATA_TIMEOUT > 0
    conn = gthread.TConn(Config(), pair[0], ("127.0.0.1", 1), ("127.0.0.1", 2))
    assert (conn.parser, conn.initialized, conn.data_ready) == (None, False, False)
    assert conn.wait_for_data(0.01) is False
    pair[1].sendall(b"G")
    assert conn.wait_for_data(1) is True and conn.data_ready
    assert issubclass(DeadlineThreadWorker, gthread.ThreadWorker)


def test_the_client_timeout_setting() -> None:
    assert Settings().client_timeout == 10.0
    assert Settings(client_timeout=2.5).client_timeout == 2.5  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Settings(client_timeout=0)  # type: ignore[arg-type]
