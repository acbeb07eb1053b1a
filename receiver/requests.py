"""Per-request plumbing: a request id for logs and answers, and a redacted access log."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, has_request_context, jsonify, request
from flask.wrappers import Response

from receiver.services import get_services

log = logging.getLogger("verihook.access")

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What an incoming X-Request-ID may look like to be reused (anything else is replaced)."""

SECRET_PATH = re.compile(r"^(/webhooks/idvapi/)[^/]+")
"""Paths that carry a secret segment, redacted in the access log."""


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to every log record made inside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach `request_id` when there is one."""
        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        return True


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(value: str) -> bool:
    """True for text carrying NUL or other control characters (never valid in our URLs)."""
    return CONTROL.search(value) is not None


def redacted_path(path: str) -> str:
    """The request path with secret segments replaced (no query string ever)."""
    return SECRET_PATH.sub(r"\1<redacted>", path)


def init_app(app: Flask) -> None:
    """Assign request ids, echo them in `X-Request-ID`, and log each request without secrets."""

    @app.before_request
    def assign_request_id():  # type: ignore[no-untyped-def]
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.started = time.perf_counter()
        if has_control_characters(request.path) or any(
            has_control_characters(k) or has_control_characters(v)
            for k, v in request.args.items(multi=True)
        ):
            return jsonify({"error": "control characters in the URL"}), 400
        return None

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        delivery = g.get("delivery")
        if delivery is None and not log.isEnabledFor(logging.INFO):
            return response
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        line = (request.method, redacted_path(request.path), response.status_code, elapsed_ms)
        if delivery is not None:  # one line per delivery, sampled under load
            get_services().delivery_log.delivery(line, delivery)
        else:
            log.info("%s %s %s %.1fms", *line)
        return response

    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
