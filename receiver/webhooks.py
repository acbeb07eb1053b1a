"""Blueprint for inbound provider traffic: `/webhooks/…` and `/callbacks/…` (DESIGN §3)."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from flask import Blueprint, Response, g, jsonify, redirect, request
from werkzeug.exceptions import RequestEntityTooLarge

from receiver.canonical import Source
from receiver.exceptions import AuthenticationError, StoreUnavailableError, UnknownProviderError
from receiver.ingest import IngestResult, Outcome, ingest
from receiver.metrics import AUTH_FAILURES, DELIVERIES, INGEST_SECONDS, inc
from receiver.providers import get_provider
from receiver.providers.base import Delivery, Provider
from receiver.services import Services, get_services

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Headers never stored with an event."""

RETRY_AFTER_SECONDS = "5"


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def read_body(limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes even when no Content-Length was sent."""
    body = request.stream.read(limit + 1)  # the app caps the stream at limit + 1 bytes
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


def _delivery(provider: Provider, source: Source, segment: str | None, limit: int) -> Delivery:
    path_role = provider.path_segment
    return Delivery(
        provider=provider.name,
        source=source,
        body=read_body(limit) if source is Source.WEBHOOK else b"",
        headers=tuple(
            (k, v) for k, v in request.headers.items() if k.lower() not in DROPPED_HEADERS
        ),
        query=tuple(request.args.items(multi=True)),
        notification=segment if path_role == "notification" else None,
        received_at=datetime.now(UTC),
        path_token=segment if path_role == "token" else None,
    )


def _receive(
    name: str, source: Source, segment: str | None
) -> Response | tuple[Provider, IngestResult]:
    started = time.perf_counter()
    answer = _take_in(name, source, segment)
    label = name if name in get_services().providers else "unknown"
    outcome = (
        answer[1].outcome.value
        if isinstance(answer, tuple)
        else _ANSWERS.get(answer.status_code, str(answer.status_code))
    )
    inc(DELIVERIES, label, outcome)
    fields: dict[str, object] = {"provider": label, "outcome": outcome}
    if isinstance(answer, tuple):
        INGEST_SECONDS.labels(label).observe(time.perf_counter() - started)
        fields["event_id"] = answer[1].event_id
    if "refusal_reason" in g:
        fields["reason"] = g.refusal_reason
    g.delivery = fields  # logged with the request's line (receiver/requests.py)
    return answer


_ANSWERS = {
    401: "unauthenticated",
    404: "unknown_provider",
    413: "too_large",
    415: "unsupported_type",
    503: "unavailable",
}


def _take_in(
    name: str, source: Source, segment: str | None
) -> Response | tuple[Provider, IngestResult]:
    services: Services = get_services()
    try:
        provider = get_provider(services.providers, name)
    except UnknownProviderError:
        return _error(404, "unknown provider")
    if source not in provider.sources or (segment is not None and provider.path_segment is None):
        return _error(404, "unknown provider")
    if source is Source.WEBHOOK:
        if (request.content_length or 0) > services.settings.max_body_bytes:
            return _error(413, "body too large")
        if request.mimetype not in provider.content_types:
            return _error(415, "unsupported content type")
    try:
        delivery = _delivery(provider, source, segment, services.settings.max_body_bytes)
    except RequestEntityTooLarge:
        return _error(413, "body too large")
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
        g.refusal_reason = exc.reason
        inc(AUTH_FAILURES, provider.name, exc.reason)
        return _error(401, "authentication failed")
    except StoreUnavailableError:
        log.error("event store unavailable", extra={"provider": name})
        return _error(503, "store unavailable")
    if result.needs_apply:
        services.waker.request()
    return provider, result


@bp.post("/webhooks/<name>")
@bp.post("/webhooks/<name>/<segment>")
def webhook(name: str, segment: str | None = None) -> Response:
    """A provider webhook: 200 accepted/duplicate, 202 quarantined, or an error."""
    received = _receive(name, Source.WEBHOOK, segment)
    if isinstance(received, Response):
        return received
    _, result = received
    return Response(
        json.dumps({"status": result.outcome.value, "event_id": result.event_id}) + "\n",
        status=202 if result.outcome is Outcome.QUARANTINED else 200,
        mimetype="application/json",
    )


@bp.get("/callbacks/<name>")
def callback(name: str) -> Response:
    """A browser redirect from a provider: record it, then send the user to the return URL."""
    received = _receive(name, Source.CALLBACK, None)
    if isinstance(received, Response):
        return received
    provider, result = received
    return_url = get_services().settings.provider(provider.name).return_url
    if return_url:
        return redirect(return_url, code=302)
    return jsonify({"status": result.outcome.value, "event_id": result.event_id})
