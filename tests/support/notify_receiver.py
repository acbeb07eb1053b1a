"""A tiny real HTTP backend for notification tests: records every request, answers as scripted."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass(frozen=True)
class Received:
    """One request as the backend saw it, and the status it answered."""

    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def webhook_id(self) -> str:
        """The `webhook-id` header."""
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


class NotifyReceiver:
    """A threaded werkzeug server on a free 127.0.0.1 port; 200 unless scripted otherwise.

    `delay_seconds` slows every answer; `max_in_flight` is the most requests seen at once.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._fail_next = 0
        self._fail_ids: dict[str, int | None] = {}
        self.delay_seconds = 0.0
        self.in_flight = self.max_in_flight = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> NotifyReceiver:
        """Serve in a background thread."""
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> NotifyReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Where to POST notifications."""
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_port}/hooks/verihook"

    def fail_next(self, count: int) -> None:
        """Answer 500 to the next `count` requests, whatever they carry."""
        with self._lock:
            self._fail_next = count

    def fail_id(self, webhook_id: str, times: int | None = None) -> None:
        """Answer 500 to this webhook-id `times` times (None: until `heal`)."""
        with self._lock:
            self._fail_ids[webhook_id] = times

    def heal(self) -> None:
        """Answer 200 to everything from now on."""
        with self._lock:
            self._fail_next, self._fail_ids = 0, {}

    def delivered(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.received if r.status < 300]

    def _status_for(self, webhook_id: str) -> int:
        if self._fail_next > 0:
            self._fail_next -= 1
            return 500
        if webhook_id in self._fail_ids:
            left = self._fail_ids[webhook_id]
            if left is None:
                return 500
            if left > 0:
                self._fail_ids[webhook_id] = left - 1
                return 500
        return 200

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.delay_seconds)
        with self._lock:
            self.in_flight -= 1
            status = self._status_for(headers.get("webhook-id", ""))
            self.received.append(Received(headers=headers, body=body, status=status))
        answer = Response(
            json.dumps({"ok": status == 200}), status=status, content_type="application/json"
        )
        return answer(environ, start_response)
