"""gunicorn's own error answers in JSON, like every answer of the app.

Some requests never reach the app: gunicorn refuses them while parsing (a header over
`limit_request_field_size` → 431, a request line over `limit_request_line` → 414, a malformed
request → 400, too many headers → 431). gunicorn answers those with a small HTML page written by
its worker's `handle_error`. `JsonErrorThreadWorker` is the gthread worker with that page replaced
by `{"error": "<reason, lower case>"}`: gunicorn still chooses the status, logs the refusal and
closes the connection; only the body changes. Nothing from the request is echoed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

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


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, answering its own refusals (400, 414, 431, …) in JSON."""

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
