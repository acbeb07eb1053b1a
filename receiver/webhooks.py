"""Inbound provider traffic: `/webhooks/…` and `/callbacks/…` (DESIGN §3).

`take_in` is the whole ingest answer for one request (a werkzeug Request, no Flask globals).
Two shells call it:
- `InboundFront`, a WSGI middleware in front of the Flask app (`init_app` always installs it),
  serves `POST /webhooks/<name>` and `POST /webhooks/<name>/<segment>`, the path every provider
  delivery takes, without Flask's per-request machinery (request context, URL map, hooks). It
  calls the functions of receiver/request_rules.py that Flask's hooks and error handlers call for
  every other route: request id, URL check, access line, 503 and 500;
- the blueprint's browser callbacks (`GET /callbacks/<name>`, which redirect).
The blueprint also holds the webhook URLs as rules without a view: the front answers every POST
to them before Flask could, so Flask only answers their other methods (405, OPTIONS) and names
them in the access log and the OpenAPI document.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, g, redirect, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from receiver.canonical import Source
from receiver.exceptions import AuthenticationError, StoreUnavailableError, UnknownProviderError
from receiver.ingest import IngestResult, Outcome, ingest
from receiver.metrics import AUTH_FAILURES, DELIVERIES, INGEST_SECONDS, inc
from receiver.providers import get_provider
from receiver.providers.base import HEADER_LINES_KEY, Delivery, Provider, separate_header_lines
from receiver.request_rules import (
    CURRENT_REQUEST_ID,
    adopt_request_id,
    internal_error_answer,
    json_response,
    log_access,
    refuse_control_characters,
    unavailable_answer,
)
from receiver.services import Services, get_services
from receiver.store.db import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Headers never stored with an event."""

WEBHOOK_PATH = re.compile(r"/webhooks/([^/]+)(?:/([^/]+))?")
"""The webhook URLs, as the blueprint's rules match them (a segment is anything but '/')."""
WEBHOOK_RULE = "/webhooks/<name>"
WEBHOOK_SEGMENT_RULE = "/webhooks/<name>/<segment>"
"""The blueprint's webhook rules; the inbound front logs these templates, as Flask's access log
does (receiver/request_rules.py), never the path as sent (it may carry idvapi's token)."""

_ANSWERS = {
    401: "unauthenticated",
    404: "unknown_provider",
    413: "too_large",
    415: "unsupported_type",
    503: "unavailable",
}


@dataclass
class Taken:
    """What happened to one inbound request: the ingest result or an error answer, and the
    fields of its log line."""

    provider: Provider | None
    result: IngestResult | None
    error: Response | None = None
    fields: dict[str, object] = field(default_factory=dict)


def read_body(req: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes even when no Content-Length was sent."""
    body = req.stream.read(limit + 1)  # the stream is capped at limit + 1 bytes
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


CALLBACK_HEADERS = frozenset({"user-agent"})
"""The only headers kept from a browser redirect: anyone can send one, so what it stores is
bounded (DESIGN §3), whatever a stranger pads it with."""
CALLBACK_MAX_PARAMS = 8
CALLBACK_MAX_NAME = 32
CALLBACK_MAX_VALUE = 512
CALLBACK_MAX_HEADER = 256


def _headers(req: Request, source: Source) -> tuple[tuple[str, str], ...]:
    if source is Source.CALLBACK:
        return tuple(
            (k, v[:CALLBACK_MAX_HEADER])
            for k, v in req.headers.items()
            if k.lower() in CALLBACK_HEADERS
        )
    return tuple((k, v) for k, v in req.headers.items() if k.lower() not in DROPPED_HEADERS)


def _query(req: Request, source: Source) -> tuple[tuple[str, str], ...]:
    """A redirect's query, bounded: at most a few short parameters (a longer value is cut, so a
    provider's id that long cannot pass a check it would fail anyway)."""
    items = tuple(req.args.items(multi=True))
    if source is not Source.CALLBACK:
        return items
    return tuple(
        (k[:CALLBACK_MAX_NAME], v[:CALLBACK_MAX_VALUE]) for k, v in items[:CALLBACK_MAX_PARAMS]
    )


def _delivery(
    req: Request, provider: Provider, source: Source, segment: str | None, limit: int
) -> Delivery:
    path_role = provider.path_segment
    headers = _headers(req, source)
    lines = req.environ.get(HEADER_LINES_KEY)
    if lines and source is Source.WEBHOOK:  # a header sent on several lines: keep them apart
        headers = separate_header_lines(headers, lines)
    return Delivery(
        provider=provider.name,
        source=source,
        body=read_body(req, limit) if source is Source.WEBHOOK else b"",
        headers=headers,
        query=_query(req, source),
        notification=segment if path_role == "notification" else None,
        received_at=datetime.now(UTC),
        path_token=segment if path_role == "token" else None,
    )


def take_in(
    services: Services, req: Request, name: str, source: Source, segment: str | None
) -> Taken:
    """Authenticate, store and count one inbound request; the caller answers and logs."""
    started = time.perf_counter()
    taken = _take_in(services, req, name, source, segment)
    label = name if name in services.providers else "unknown"
    if taken.result is not None:
        outcome = taken.result.outcome.value
        INGEST_SECONDS.labels(label).observe(time.perf_counter() - started)
        taken.fields["event_id"] = taken.result.event_id
    else:
        status = taken.error.status_code if taken.error is not None else 500
        outcome = _ANSWERS.get(status, str(status))
    inc(DELIVERIES, label, outcome)
    taken.fields.update(provider=label, outcome=outcome)
    return taken


def _take_in(
    services: Services, req: Request, name: str, source: Source, segment: str | None
) -> Taken:
    try:
        provider = get_provider(services.providers, name)
    except UnknownProviderError:
        known = name in services.providers  # a provider verihook knows, without credentials
        error = "provider not configured" if known else "unknown provider"
        return Taken(None, None, json_response({"error": error}, 404))
    if source not in provider.sources or (segment is not None and provider.path_segment is None):
        return Taken(None, None, json_response({"error": "unknown provider"}, 404))
    limit = services.settings.max_body_bytes
    if source is Source.WEBHOOK:
        if (req.content_length or 0) > limit:
            return Taken(provider, None, json_response({"error": "body too large"}, 413))
        if req.mimetype not in provider.content_types:
            return Taken(provider, None, json_response({"error": "unsupported content type"}, 415))
    try:
        delivery = _delivery(req, provider, source, segment, limit)
    except RequestEntityTooLarge:
        return Taken(provider, None, json_response({"error": "body too large"}, 413))
    try:
        result = ingest(
            delivery,
            provider,
            engine=services.engine,
            keyring=services.keyring,
            writer=services.event_writer,
            now=time.time(),
        )
    except AuthenticationError as exc:
        inc(AUTH_FAILURES, provider.name, exc.reason)
        services.refusals.record(provider.name, exc.reason)  # in memory: never delays the 401
        answer = json_response({"error": "authentication failed"}, 401)
        return Taken(provider, None, answer, {"reason": exc.reason})
    except StoreUnavailableError:
        log.error("event store unavailable", extra={"provider": name})
        return Taken(provider, None, json_response({"error": "store unavailable"}, 503))
    if result.needs_apply:
        services.waker.request()
    return Taken(provider, result)


class StoredAnswer:
    """The answer to a stored delivery (200/202 and its JSON), as a WSGI app: what
    `webhook_answer` gives, without building a werkzeug Response on the inbound front's hot path
    (the same status line, headers and body)."""

    def __init__(self, result: IngestResult) -> None:
        self.status_code = 202 if result.outcome is Outcome.QUARANTINED else 200
        self.body = f'{{"status":"{result.outcome.value}","event_id":{result.event_id}}}\n'.encode()
        self.headers: dict[str, str] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """Answer as a WSGI app."""
        start_response(
            "200 OK" if self.status_code == 200 else "202 ACCEPTED",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(self.body))),
                *self.headers.items(),
            ],
        )
        return [self.body]


def webhook_answer(taken: Taken) -> Response:
    """200 accepted/duplicate, 202 quarantined, or the error answer."""
    if taken.error is not None or taken.result is None:
        return taken.error or json_response({"error": "internal error"}, 500)
    result = taken.result
    status = 202 if result.outcome is Outcome.QUARANTINED else 200
    return json_response({"status": result.outcome.value, "event_id": result.event_id}, status)


# ------------------------------------------------------------------------ the Flask routes

# The webhook URLs, without a view: InboundFront serves every POST to them (see the module
# docstring); reconciler/api/inbound_openapi.py describes the endpoint in the OpenAPI document.
bp.add_url_rule(WEBHOOK_RULE, endpoint="webhook", methods=["POST"])
bp.add_url_rule(WEBHOOK_SEGMENT_RULE, endpoint="webhook", methods=["POST"])


@bp.get("/callbacks/<name>")
def callback(name: str) -> Response:
    """A browser redirect from a provider: record it (bounded), then always send the person on
    to the return URL, even when the redirect cannot be used (DESIGN §3): never a JSON error."""
    services = get_services()
    try:
        taken = take_in(services, request._get_current_object(), name, Source.CALLBACK, None)  # type: ignore[attr-defined]
    except Exception as exc:  # the store is out of reach, or a bug: the person still goes on
        level = logging.WARNING if isinstance(exc, UNAVAILABLE_ERRORS) else logging.ERROR
        log.log(level, "callback not recorded: %s", type(exc).__name__, exc_info=True)
        provider = services.providers.get(name)
        enabled = provider if provider is not None and provider.is_enabled() else None
        taken = Taken(enabled, None, json_response({"error": "unavailable"}, 503))
    g.delivery = taken.fields
    if taken.provider is None:  # unknown or disabled provider: nothing to send the person on to
        return webhook_answer(taken)
    return_url = services.settings.provider(taken.provider.name).return_url
    if return_url:
        return redirect(return_url, code=302)
    if taken.result is not None:
        status, message = 200, "Thank you. You can close this window."
    elif taken.error is not None and taken.error.status_code == 503:
        status, message = 503, "Please try again in a moment."  # nothing was recorded
    else:
        status, message = 400, "This link could not be used. You can close this window."
    return Response(CALLBACK_PAGE.format(message=message), status=status, mimetype="text/html")


CALLBACK_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Verification</title>"
    "<p>{message}</p></html>\n"
)
"""What a person sees when no return URL is configured."""


# ------------------------------------------------------------------------ the inbound front

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class InboundFront:
    """WSGI middleware: provider webhooks served without Flask's request machinery.

    Only `POST /webhooks/<name>[/<segment>]` is taken here (the method in any case, as Flask's
    URL map matches it: Flask never reaches these rules with a POST); every other request goes
    on to the Flask app unchanged. The request id, URL check, access line and 5xx answers are
    those of every Flask route (receiver/request_rules.py).
    """

    def __init__(self, app: Flask, services: Services, downstream: WSGIApp) -> None:
        self.app, self.services, self.downstream = app, services, downstream

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Serve a webhook, or pass the request on."""
        method = environ.get("REQUEST_METHOD", "").upper()
        if method != "POST" or not environ.get("PATH_INFO", "").startswith("/webhooks/"):
            return self.downstream(environ, start_response)
        req = Request(environ)
        match = WEBHOOK_PATH.fullmatch(req.path)
        if match is None:
            return self.downstream(environ, start_response)
        req.max_content_length = self.services.settings.max_body_bytes + 1
        return self._serve(req, *match.groups())(environ, start_response)

    def _serve(self, req: Request, name: str, segment: str | None) -> Response | StoredAnswer:
        started = time.perf_counter()
        request_id, token = adopt_request_id(req.headers.get("X-Request-ID", ""))
        try:
            fields: dict[str, object] | None = None
            response: Response | StoredAnswer | None
            response = refuse_control_characters(req.path, req.args.items(multi=True))
            if response is None:
                response, fields = self._answer(req, name, segment)
            response.headers["X-Request-ID"] = request_id
            route = WEBHOOK_RULE if segment is None else WEBHOOK_SEGMENT_RULE
            status = response.status_code
            log_access("POST", route, status, started, fields, self.services.delivery_log)
            return response
        finally:
            CURRENT_REQUEST_ID.reset(token)

    def _answer(
        self, req: Request, name: str, segment: str | None
    ) -> tuple[Response | StoredAnswer, dict[str, object] | None]:
        """As the Flask app's error handlers would: 503 when the store is out of reach, a bare
        500 for anything unexpected."""
        try:
            taken = take_in(self.services, req, name, Source.WEBHOOK, segment)
        except UNAVAILABLE_ERRORS as exc:
            self._count(name, "unavailable")
            return unavailable_answer(exc, log), None
        except Exception:
            self._count(name, "error")
            return internal_error_answer(log), None
        if taken.error is None and taken.result is not None:
            return StoredAnswer(taken.result), taken.fields
        return webhook_answer(taken), taken.fields

    def _count(self, name: str, answer: str) -> None:
        """Count an answer that take_in did not reach (the 5xx rate alert reads them)."""
        inc(DELIVERIES, name if name in self.services.providers else "unknown", answer)


def init_app(app: Flask, services: Services) -> None:
    """Register the routes and put the inbound front before the Flask app."""
    app.register_blueprint(bp)
    app.wsgi_app = InboundFront(app, services, app.wsgi_app)  # type: ignore[method-assign]
