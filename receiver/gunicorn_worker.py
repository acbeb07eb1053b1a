"""The gunicorn worker of the receiver: gunicorn's own error answers in JSON, like every answer
of the app, and header lines kept apart where they repeat.

Some requests never reach the app: gunicorn refuses them while parsing (a header over
`limit_request_field_size` → 431, a request line over `limit_request_line` → 414, a malformed
request → 400, too many headers → 431). gunicorn answers those with a small HTML page written by
its worker's `handle_error`. `JsonErrorThreadWorker` is the gthread worker with that page replaced
by `{"error": "<reason, lower case>"}`: gunicorn still chooses the status, logs the refusal and
closes the connection; only the body changes. Nothing from the request is echoed.

gunicorn joins repeated header lines with "," when it builds the WSGI environ, so the app could
not tell two `Contiguity-Signature` lines from one holding two signatures. The worker keeps the
lines of such a header apart under the environ key `HEADER_LINES_KEY`
(receiver/providers/base.py), where `Delivery.single_header` refuses the repeat. gunicorn builds
the environ and calls the app in the thread that handles the request, right after this worker's
`handle_request` (or `handle_http2_request`) received it, so a thread-local carries the request
from one to the other.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from receiver.providers.base import HEADER_LINES_KEY, repeated_header_lines

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ([^\r\n]*)\r\n")


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


def json_error(status: int, reason: str) -> bytes:
    """The whole HTTP answer: status line, JSON body, connection closed."""
    body = json.dumps({"error": reason.lower()}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


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


class JsonErrorThreadWorker(ThreadWorker):
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
        """Let gunicorn choose the status (and log), then send it as JSON instead of HTML."""
        captured = _Captured()
        super().handle_error(req, captured, addr, exc)
        found = STATUS_LINE.match(captured.data)
        if found is None:
            return
        status, reason = int(found.group(1)), found.group(2).decode("latin-1")
        try:
            util.write_nonblock(client, json_error(status, reason))
        except Exception:  # the client may be gone already, as gunicorn itself allows
            self.log.debug("Failed to send error message.")
