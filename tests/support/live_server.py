"""Serve a WSGI app on a real 127.0.0.1 socket in a background thread, with clean shutdown."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server


class LiveServer:
    """A threaded werkzeug server on a free port; `url` is its base URL."""

    def __init__(self, app: Any) -> None:
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="live-server",
            daemon=True,
        )

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        """Start serving in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wait for the serving thread, close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()


@contextmanager
def live_server(app: Any) -> Iterator[LiveServer]:
    """`with live_server(app) as server: httpx.get(server.url + …)`."""
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()
