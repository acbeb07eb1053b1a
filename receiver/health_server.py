"""`/healthz`, `/readyz` and `/metrics` for the processes that serve no HTTP: the worker and the
scheduler, when `VERIHOOK_HEALTH_BIND` (e.g. `0.0.0.0:9100`) is set.

Orchestrators need a liveness probe for them, and their metrics (apply latency and failures,
polls, heals, leadership) must be scrapable where they run: on another machine than the
receivers, no shared PROMETHEUS_MULTIPROC_DIR brings them to the receivers' `/metrics`.
The endpoints are the receiver's own (receiver/health.py). `/healthz` answers 503 when the
process's loop has not beaten for `VERIHOOK_HEALTH_MAX_AGE_SECONDS` (a wedged loop); `/readyz`
answers 503 while Redis is out of reach (a worker or scheduler does nothing without it).
Each beat also sets `verihook_heartbeat_timestamp_seconds{role}` for the alert rules.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from receiver import health
from receiver.exceptions import ConfigurationError
from receiver.metrics import HEARTBEAT
from receiver.services import Services, init_app

log = logging.getLogger(__name__)


class Heartbeat:
    """When a process's main loop last made progress (monotonic clock).

    With a `role` (`worker`, `scheduler`) every beat is also exported as
    `verihook_heartbeat_timestamp_seconds{role}` (wall clock).
    """

    def __init__(self, role: str | None = None) -> None:
        self.role = role
        self._gauge = HEARTBEAT.labels(role) if role else None
        self.beat()

    def beat(self) -> None:
        """The loop made progress now."""
        self._last = time.monotonic()
        if self._gauge is not None:
            self._gauge.set(time.time())

    def age(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self._last


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Probes every few seconds would flood the log; errors are still logged."""

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """A refusal, by its status code only: the server's own message quotes the request line
        (`Bad request syntax ('GET /…')`), which may carry a secret or a user ref."""
        codes = [arg for arg in args if isinstance(arg, int)]
        super().log_error("refused a request: %s", codes[0] if codes else "error")


def parse_bind(bind: str) -> tuple[str, int]:
    """`HOST:PORT` → (host, port); a clear error otherwise."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(f"VERIHOOK_HEALTH_BIND must be HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


def start_health_server(services: Services, heartbeat: Heartbeat) -> BaseWSGIServer | None:
    """Serve the health endpoints in a daemon thread when configured; None when not."""
    bind = services.settings.health_bind
    if not bind:
        return None
    host, port = parse_bind(bind)
    app = Flask("verihook-health", static_folder=None)
    init_app(app, services)
    app.extensions[health.HEARTBEAT_KEY] = heartbeat
    app.extensions[health.ROLE_KEY] = heartbeat.role or "worker"  # never the web role
    app.register_blueprint(health.bp)
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="health-http", daemon=True)
    thread.start()
    log.info("health endpoints listening on %s:%d", host, server.server_port)
    return server
