"""Per-request plumbing: a request id for logs and answers, and an access log that carries no
secret and no personal reference.

The access log never writes the path a client sent: it writes the template of the route that
matched (`/webhooks/<name>/<segment>`, `/api/v1/users/<user_ref>`), so neither the idvapi URL
token nor a user ref can reach a log line however the URL is spelled. A path that matched no
route (404, 405, werkzeug's 308 to a path with `//` merged) is logged as its longest leading run
of segments that are fixed parts of the app's own routes, then `<unmatched>`
(`/webhooks/<unmatched>`). The query string is never logged.

Two shells serve requests: Flask's hooks (`init_app`, every route) and the inbound front of
receiver/webhooks.py (provider webhooks, before Flask). Each rule they share is written once here
and called by both: the request id (`adopt_request_id`), the refusal of control characters in the
URL (`refuse_control_characters`), the access line (`log_access`) and the answers for a database
out of reach and for anything unexpected (`unavailable_answer`, `internal_error_answer`; app.py's
error handlers give them for every Flask route).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from flask import Flask, g, jsonify, request
from flask.wrappers import Response
from werkzeug.exceptions import BadRequest
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response as WerkzeugResponse

from receiver.inputs import REF_RULE, is_ref
from receiver.services import get_services

if TYPE_CHECKING:
    from receiver.delivery_log import DeliveryLog

log = logging.getLogger("verihook.access")

_Body = WerkzeugResponse | str
ViewResult = _Body | tuple[_Body, int] | tuple[_Body, int, dict[str, Any]]
"""What a view returns (its return annotation). Not flask.typing.ViewResult: spectree
resolves a validated view's annotations at run time, and flask's alias names types it imports
only for type checkers."""

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What an incoming X-Request-ID may look like to be reused (anything else is replaced)."""

UNMATCHED = "<unmatched>"
"""What the access log shows for the part of a path that matched no route."""


CURRENT_REQUEST_ID: ContextVar[str | None] = ContextVar("verihook_request_id", default=None)
"""The id of the request being handled in this thread (set by Flask's hook and by the inbound
front of receiver/webhooks.py), for log records."""


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to every log record made inside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach `request_id` when there is one."""
        request_id = CURRENT_REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        return True


def request_id_for(given: str) -> str:
    """The caller's X-Request-ID when it looks like one, else a new id."""
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def adopt_request_id(given: str) -> tuple[str, Token[str | None]]:
    """The request's id (`request_id_for` the X-Request-ID sent), made current for log records;
    reset CURRENT_REQUEST_ID with the token when the request ends."""
    request_id = request_id_for(given)
    return request_id, CURRENT_REQUEST_ID.set(request_id)


RETRY_AFTER_SECONDS = "5"
"""The Retry-After of every 503."""


def json_response(body: dict[str, Any], status: int) -> WerkzeugResponse:
    """A JSON answer (what Flask's jsonify makes, without the app context); a 503 says when to
    retry."""
    text = json.dumps(body, separators=(",", ":")) + "\n"
    response = WerkzeugResponse(text, status=status, mimetype="application/json")
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def has_control_characters_in_url(path: str, args: Iterable[tuple[str, str]]) -> bool:
    """True when the path or a query key or value holds a control character."""
    return has_control_characters(path) or any(
        has_control_characters(k) or has_control_characters(v) for k, v in args
    )


def refuse_control_characters(
    path: str, args: Iterable[tuple[str, str]]
) -> WerkzeugResponse | None:
    """The 400 for a URL whose path or query holds a control character, else None."""
    if has_control_characters_in_url(path, args):
        return json_response({"error": "control characters in the URL"}, 400)
    return None


def unavailable_answer(exc: BaseException, logger: logging.Logger) -> WerkzeugResponse:
    """503 (retry later) when the database is out of reach (store/db.py UNAVAILABLE_ERRORS or
    StoreUnavailableError), logged as a warning naming the error."""
    logger.warning("database unavailable: %s", type(exc).__name__)
    return json_response({"error": "store unavailable"}, 503)


def internal_error_answer(logger: logging.Logger) -> WerkzeugResponse:
    """A bare 500 for anything unexpected, logged with its traceback (call it while handling)."""
    logger.exception("unhandled error")
    return json_response({"error": "internal error"}, 500)


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(value: str) -> bool:
    """True for text carrying NUL or other control characters (never valid in our URLs)."""
    return CONTROL.search(value) is not None


def fixed_prefixes(rules: Iterable[str]) -> set[tuple[str, ...]]:
    """Every leading run of fixed segments of the route templates `rules` (`/api/v1/users/<ref>`
    gives (), ("api",), ("api", "v1") and ("api", "v1", "users")): text the app itself wrote."""
    found: set[tuple[str, ...]] = {()}
    for rule in rules:
        segments = rule.split("/")[1:]
        for index, segment in enumerate(segments):
            if "<" in segment:
                break
            found.add(tuple(segments[: index + 1]))
    return found


def unmatched_path(path: str, prefixes: set[tuple[str, ...]]) -> str:
    """A path no route matched, as the access log shows it: its longest leading run of segments
    among `prefixes` (fixed parts of the app's routes), then `<unmatched>` for the rest."""
    segments = path.split("/")[1:]
    kept = 0
    while kept < len(segments) and tuple(segments[: kept + 1]) in prefixes:
        kept += 1
    shown = "/" + "/".join(segments[:kept])
    if kept == len(segments):
        return shown
    return shown.rstrip("/") + "/" + UNMATCHED


def access_line(
    method: str, route: str, status: int, elapsed_ms: float
) -> tuple[str, str, int, float]:
    """The fields of an access log line: `route` is a route template or an `unmatched_path`,
    never the path as sent; the method only when it is one the app could route."""
    return (method if method in LOGGED_METHODS else "OTHER", route, status, elapsed_ms)


LOGGED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods written as sent; any other word (a client chooses it) is logged as OTHER."""


def log_access(
    method: str,
    route: str,
    status: int,
    started: float,
    delivery: dict[str, object] | None,
    delivery_log: DeliveryLog,
) -> None:
    """Write a request's access line (`access_line`; `started` from time.perf_counter): with a
    delivery's fields, one line per delivery (sampled under load), else at info."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    line = access_line(method, route, status, elapsed_ms)
    if delivery is not None:
        delivery_log.delivery(line, delivery)
    else:
        log.info("%s %s %s %.1fms", *line)


CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
"""A rule's variable with its converter (`<ref:user_ref>`), logged by its name (`<user_ref>`)."""


def flask_route(app: Flask) -> str:
    """The access log's path of the current Flask request (see the module docstring)."""
    rule = request.url_rule
    if rule is not None:
        return CONVERTER.sub(r"<\1>", rule.rule)
    prefixes = app.extensions.get(PREFIXES_KEY)
    if prefixes is None:  # once: Flask takes no new routes after the first request
        prefixes = fixed_prefixes(r.rule for r in app.url_map.iter_rules())
        app.extensions[PREFIXES_KEY] = prefixes
    return unmatched_path(request.path, prefixes)


PREFIXES_KEY = "verihook.route_prefixes"
"""app.extensions key of the app's `fixed_prefixes`."""


class RefRefused(BadRequest):
    """A path parameter that is not a ref (receiver/inputs.py): answered 400."""

    description = f"a user ref or session id in the path must be {REF_RULE}"


class RefConverter(BaseConverter):
    """`<ref:user_ref>`: a path segment holding a user ref or session id, by the one rule of
    receiver/inputs.py (a segment that breaks it is a 400, not a look-up)."""

    def to_python(self, value: str) -> str:
        """The segment, or RefRefused."""
        if not is_ref(value):
            raise RefRefused()
        return value


def refused_ref(exc: RefRefused) -> tuple[Response, int]:
    """400 naming the rule a path parameter broke."""
    return jsonify({"error": exc.description}), 400


def init_app(app: Flask) -> None:
    """Assign request ids, echo them in `X-Request-ID`, and log each request without secrets;
    add the `ref` URL converter (register routes that use it after this)."""
    app.url_map.converters["ref"] = RefConverter
    app.register_error_handler(RefRefused, refused_ref)

    @app.before_request
    def assign_request_id() -> ViewResult | None:
        g.request_id, g.request_id_token = adopt_request_id(request.headers.get("X-Request-ID", ""))
        g.started = time.perf_counter()
        return refuse_control_characters(request.path, request.args.items(multi=True))

    @app.teardown_request
    def forget_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            CURRENT_REQUEST_ID.reset(token)

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        delivery = g.get("delivery")
        if delivery is None and not log.isEnabledFor(logging.INFO):
            return response
        started = g.get("started", time.perf_counter())
        route, status = flask_route(app), response.status_code
        log_access(request.method, route, status, started, delivery, get_services().delivery_log)
        return response

    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
