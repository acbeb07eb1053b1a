"""Simulator test fixtures: an HTTP client and a tiny local receiver recording what it gets."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

REPO_ROOT = Path(__file__).resolve().parents[2]
if (
    str(REPO_ROOT) not in sys.path
):  # so `pytest tests/simulators` works without installing the project
    sys.path.insert(0, str(REPO_ROOT))


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    method: str
    path: str
    args: dict[str, str]
    headers: dict[str, str]
    body: bytes


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log."""


class Receiver:
    """A local HTTP server standing in for verihook; records requests, answers status_for()."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status_for: Callable[[Received], int] = lambda received: 200
        self._cond = threading.Condition()
        self._server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        received = Received(
            request.method,
            request.path,
            dict(request.args),
            dict(request.headers),
            request.get_data(),
        )
        status = self.status_for(received)
        with self._cond:
            self.requests.append(received)
            self._cond.notify_all()
        return Response("ok", status=status)(environ, start_response)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Wait until at least count requests arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return list(self.requests)

    def stop(self) -> None:
        """Shut the server down."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running Receiver."""
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An HTTP client that ignores proxy settings from the environment."""
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        yield client
