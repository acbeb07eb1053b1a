"""verihook's gunicorn worker: gthread, with a deadline for slow clients, errors in JSON, and
repeated header lines kept apart.

**Slow clients.** gunicorn's gthread worker reads a request on one of its threads with a
blocking socket and no time limit, so a client that sends its head or its body a byte at a
time holds that thread for as long as it keeps sending: 16 such connections (2 processes × 8
threads) stopped `/healthz` and every delivery. gunicorn has no setting for it (its docs send
slow clients to a buffering proxy, which deploy/nginx/verihook.conf is). `DeadlineThreadWorker`
bounds the read instead: from the moment a thread takes a connection, the request's head and
its whole body (up to the body limit) must arrive within `VERIHOOK_CLIENT_TIMEOUT` seconds. Each
`recv()` waits at most for what is left of that deadline, and the body is read into memory
before the app is called, so the app never waits for a client. A client that misses the
deadline is answered 408 and disconnected. A connection being closed is finished at once on its
thread, not lingered over on the main thread (`finish_now`).

**Errors in JSON.** gunicorn refuses some requests while parsing (431, 414, 400) with a small
HTML page written by `handle_error`; here that page is replaced by `{"error": "<reason>"}`.
gunicorn still chooses the status, logs the refusal and closes the connection. Nothing from the
request is echoed, nor logged: gunicorn's own refusal line quotes the request line or header (and
an application error's line the URI), which may carry idvapi's token or a user ref, so here the
line names the kind of refusal only.

**Repeated header lines.** gunicorn joins repeated header lines with "," when it builds the
WSGI environ, so the app could not tell two `Contiguity-Signature` lines from one holding two
signatures. The worker keeps the lines of such a header apart under the environ key
`HEADER_LINES_KEY` (receiver/providers/base.py), where `Delivery.single_header` refuses the
repeat; a thread-local carries the request from `handle_request` to the app call.

This leans on gthread's internals (gunicorn ≥ 26: `TConn.parser`, `wait_for_data`, the
`_DEFER` sentinel, `Request._expected_100_continue`); tests/test_slow_clients.py and
tests/test_repeated_headers.py run it against real clients.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from gunicorn import http, util
from gunicorn.http.body import Body
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

from receiver.providers.base import HEADER_LINES_KEY, repeated_header_lines

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ([^\r\n]*)\r\n")


class ClientTimedOut(Exception):
    """The client did not send its request (head and body) within the deadline."""


class DeadlineUnreader(SocketUnreader):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's socket reader, each `recv()` bounded by what is left of `deadline`
    (`time.monotonic()`; None: no deadline, gunicorn's own behaviour)."""

    deadline: float | None = None

    def chunk(self, size_hint: int | None = None) -> bytes:
        """The next bytes from the socket, or ClientTimedOut once the deadline has passed."""
        if self.deadline is None:
            return cast(bytes, super().chunk(size_hint))  # gunicorn is untyped
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ClientTimedOut()
        before = self.sock.gettimeout()
        self.sock.settimeout(remaining)
        try:
            return cast(bytes, super().chunk(size_hint))  # gunicorn is untyped
        except TimeoutError:  # socket.timeout
            raise ClientTimedOut() from None
        finally:
            self.sock.settimeout(before)


class _Prefetched:
    """A body reader serving the bytes already read, then the rest of the original body."""

    def __init__(self, data: bytes, rest: Body) -> None:
        self.data, self.rest = data, rest

    def read(self, size: int) -> bytes:
        """Up to `size` bytes."""
        if self.data:
            out, self.data = self.data[:size], self.data[size:]
            return out
        return cast(bytes, self.rest.read(size))  # gunicorn is untyped


def declared_length(req: Any) -> int | None:
    """The request's Content-Length (gunicorn has checked it is one number), or None."""
    for name, value in req.headers:
        if name == "CONTENT-LENGTH":
            return int(value)
    return None


def read_body_now(req: Any, sock: socket.socket, cap: int) -> bool:
    """Read up to `cap` bytes of the request's body now (under the socket reader's deadline), so
    that the app reads it from memory; True when that is the whole body the app will read. A
    body declared longer than `cap` is left unread (False): the app refuses it (413) unread."""
    length = declared_length(req)
    expects_continue = getattr(req, "_expected_100_continue", False)
    if expects_continue:
        req._expected_100_continue = False  # not again in gunicorn's wsgi.create
    if length is not None and length > cap:
        return False  # and no invitation to send a body that will not be read
    if expects_continue:  # the client waits for this before it sends its body
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    req.body = Body(_Prefetched(req.body.read(cap), req.body))
    return True


def json_error(status: int, reason: str) -> bytes:
    """The whole HTTP answer: status line, JSON body, connection closed."""
    body = json.dumps({"error": reason.lower()}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def hang_up(sock: socket.socket) -> None:
    """Shut both directions now, so that closing the socket later (gunicorn's graceful close
    runs on the worker's main thread, lingering up to 2 s while the peer still sends) returns
    at once."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def finish_now(sock: socket.socket, max_drain: int = 65536) -> None:
    """Close a connection's way out without waiting: FIN after the answer, read what the client
    has already sent (so that closing sends no reset over the answer), then stop reading.

    gunicorn's graceful close does the same but waits up to 2 s for the client to finish, on
    the worker's main thread, which accepts every connection: clients that keep their socket
    open after an answer (or a refusal) would stall the whole process 2 s each."""
    try:
        sock.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < max_drain:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
            if not data:
                break
            drained += len(data)
    except OSError:  # nothing more to read now (EAGAIN), or the client is gone
        pass
    hang_up(sock)


class _Captured:
    """A stand-in socket that keeps what gunicorn would have written."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        """As a non-blocking socket (gunicorn's write_nonblock asks)."""
        return 0.0

    def sendall(self, data: bytes) -> None:
        """Keep the bytes."""
        self.data += data


_handling = threading.local()
"""The gunicorn request this thread is handling (`request`), while it is handled."""


class KeepHeaderLines:
    """Wraps the WSGI app: gives it the lines of the headers the request repeated."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Add HEADER_LINES_KEY when a header came on several lines, then call the app."""
        req = getattr(_handling, "request", None)
        if req is not None:
            lines = repeated_header_lines(req.headers)
            if lines:
                environ[HEADER_LINES_KEY] = lines
        return self.app(environ, start_response)


_QUIET: dict[type[BaseException], type[BaseException]] = {}


def _quiet_class(kind: type[BaseException]) -> type[BaseException]:
    """A subclass of `kind` (so gunicorn's isinstance checks choose the same status) whose text
    is its kind's name, not the request text gunicorn's exceptions quote (made once per kind)."""
    if kind not in _QUIET:
        text = f"{kind.__name__} (not shown)"
        _QUIET[kind] = type(kind.__name__, (kind,), {"__str__": lambda self: text})
    return _QUIET[kind]


def quiet(exc: BaseException) -> BaseException:
    """`exc` as a `_quiet_class` instance with the same attributes, and no args (its repr
    would show them)."""
    copy = BaseException.__new__(_quiet_class(type(exc)))
    copy.__dict__.update(exc.__dict__)
    return copy.with_traceback(exc.__traceback__)


class JsonErrorThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's gthread worker, answering its own refusals (400, 414, 431, …) in JSON and
    telling the app which header lines were repeated."""

    def load_wsgi(self) -> None:
        """gunicorn's, with the app wrapped in KeepHeaderLines."""
        super().load_wsgi()
        self.wsgi = KeepHeaderLines(self.wsgi)  # type: ignore[has-type]  # gunicorn is untyped

    def handle_request(self, req: Any, conn: Any) -> Any:
        """gunicorn's, with `req` known to KeepHeaderLines meanwhile."""
        _handling.request = req
        try:
            return super().handle_request(req, conn)
        finally:
            _handling.request = None

    def handle_http2_request(self, req: Any, conn: Any, h2_conn: Any) -> Any:
        """gunicorn's, with `req` known to KeepHeaderLines meanwhile."""
        _handling.request = req
        try:
            return super().handle_http2_request(req, conn, h2_conn)
        finally:
            _handling.request = None

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Let gunicorn choose the status and log the refusal, without the request (see the
        module docstring: no request, so no URI; a quiet exception, so no request line), then
        send the answer as JSON instead of HTML. (Without a request gunicorn writes no access
        line for it either; its access log is off.)"""
        captured = _Captured()
        super().handle_error(None, captured, addr, quiet(exc))
        found = STATUS_LINE.match(captured.data)
        if found is None:
            return
        status, reason = int(found.group(1)), found.group(2).decode("latin-1")
        self.send_error(client, status, reason)

    def send_error(self, client: Any, status: int, reason: str) -> None:
        """Send a JSON error answer without waiting for the client to read it."""
        try:
            util.write_nonblock(client, json_error(status, reason))
        except Exception:  # the client may be gone already, as gunicorn itself allows
            self.log.debug("Failed to send error message.")


class DeadlineThreadWorker(JsonErrorThreadWorker):
    """The JSON-error gthread worker with a deadline for each request's head and body.

    `client_timeout` and `body_cap` come from the app's settings (`VERIHOOK_CLIENT_TIMEOUT`,
    `VERIHOOK_MAX_BODY_BYTES` + 1, what the app reads at most) when the worker loads it.
    """

    client_timeout: float = 10.0
    body_cap: int = 1024 * 1024 + 1

    def load_wsgi(self) -> None:
        """Load the app, then take the deadline and the body limit from its settings."""
        super().load_wsgi()
        from receiver.services import EXTENSION_KEY

        app = getattr(self.wsgi, "app", self.wsgi)  # inside KeepHeaderLines
        services = getattr(app, "extensions", {}).get(EXTENSION_KEY)
        if services is not None:
            self.client_timeout = services.settings.client_timeout
            self.body_cap = services.settings.max_body_bytes + 1

    def _reader(self, conn: Any) -> DeadlineUnreader | None:
        """The connection's deadline reader, making its HTTP/1 parser now if it has none yet
        (as TConn.init would, with the socket reader replaced). None for TLS, HTTP/2 or uwsgi,
        which verihook does not configure: gunicorn's own reading then."""
        if conn.parser is None:
            if self.cfg.is_ssl or negotiation.prior_knowledge_allowed(self.cfg, conn.client):
                return None
            parser = http.get_parser(self.cfg, conn.sock, conn.client)
            if type(parser.unreader) is SocketUnreader:
                parser.unreader = DeadlineUnreader(conn.sock)
            conn.parser = parser
        reader = getattr(conn.parser, "unreader", None)
        return reader if isinstance(reader, DeadlineUnreader) else None

    def handle(self, conn: Any) -> Any:
        """Serve one request of a connection, its head and body due by the deadline (set when
        a thread first takes the connection for this request)."""
        reader = self._reader(conn)
        if reader is None:
            return super().handle(conn)
        if reader.deadline is None:
            reader.deadline = time.monotonic() + self.client_timeout
        if not conn.initialized and not conn.data_ready:
            # gthread waits up to 5 s for a new connection's first byte, then parks it in the
            # poller without a thread (_DEFER); never longer than the deadline here
            remaining = reader.deadline - time.monotonic()
            wait = min(remaining, gthread.DEFAULT_WORKER_DATA_TIMEOUT)
            if not conn.wait_for_data(max(wait, 0.0)):
                if time.monotonic() < reader.deadline:
                    return gthread._DEFER
                self.log.debug("Closing a connection that sent nothing in %ss", self.client_timeout)
                hang_up(conn.sock)
                return False
        keepalive = super().handle(conn)
        if keepalive is False:  # gunicorn closes it next, on the main thread: make that quick
            finish_now(conn.sock)
        return keepalive

    def handle_request(self, req: Any, conn: Any) -> bool:
        """Read the body under the deadline, lift the deadline, then run the app."""
        reader = getattr(conn.parser, "unreader", None)
        if not isinstance(reader, DeadlineUnreader) or reader.deadline is None:
            return cast(bool, super().handle_request(req, conn))  # gunicorn is untyped
        read_whole = read_body_now(req, conn.sock, self.body_cap)
        reader.deadline = None  # the app never waits for the client
        keepalive: bool = super().handle_request(req, conn)
        if not read_whole:  # refused unread: no draining a body that may never end
            hang_up(conn.sock)
            return False
        return keepalive

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """A client too slow for the deadline: 408, then disconnect. Anything else: as gunicorn
        decides, in JSON."""
        if not isinstance(exc, ClientTimedOut):
            return super().handle_error(req, client, addr, exc)
        ip = addr[0] if addr else ""
        self.log.warning(
            "Request not received within %ss, disconnecting ip=%s", self.client_timeout, ip
        )
        self.send_error(client, 408, "Request Timeout")
        hang_up(client)
