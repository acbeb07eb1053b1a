"""gunicorn's own error answers in JSON, like every answer of the app.

Some requests never reach the app: gunicorn refuses them while parsing (a header over
`limit_request_field_size` → 431, a request line over `limit_request_line` → 414, a malformed
request → 400, too many headers → 431). gunicorn answers those with a small HTML page written by
its worker's `handle_error`. `JsonErrorThreadWorker` is the gthread worker with that page replaced
by `{"error": "<reason, lower case>"}`: gunicorn still chooses the status, logs the refusal and
closes the connection; only the body changes. Nothing from the request is echoed, nor logged:
gunicorn's log line of a refusal quotes the offending request line or header ("Invalid HTTP
request line: 'POST /webhooks/idvapi/<token> …'"), and of an application error the URI, either of
which may carry idvapi's token or a user ref; here the line names the kind of refusal only.
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


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, answering its own refusals (400, 414, 431, …) in JSON."""

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
        try:
            util.write_nonblock(client, json_error(status, reason))
        except Exception:  # the client may be gone already, as gunicorn itself allows
            self.log.debug("Failed to send error message.")
