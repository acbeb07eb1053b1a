"""API for operators and auditors: stored events, replays (DESIGN §3).

- `GET /api/v1/events` (operator, auditor): filters `provider`, `state` (comma-separated lists
  allowed), `session_id`, `user_ref`, `since`, `until` (ISO 8601 or an age: `30m`, `2h`, `7d`),
  `limit` (1-500, default 50) and `cursor` (the previous page's `next_cursor`); newest first.
- `GET /api/v1/events/<id>` (operator, auditor): metadata, observations and the delivery:
  decrypted headers and body for operators (an audited operator action), names and sizes only for
  auditors.
- `POST /api/v1/events/<id>/replay` (operator) `{"dry_run": bool}` (default false): replay one
  event now with the worker's code; answers what changed.
- `POST /api/v1/replays` (operator) `{"filter": {…}, "dry_run": bool}`: `dry_run` (the default)
  answers the effect of the replay, computed by applying the events in a rolled-back
  transaction; `false` stores a bulk replay, queues it, and answers 202 with its URL.
- `GET /api/v1/replays`, `GET /api/v1/replays/<id>` (operator, auditor): state, total, done,
  progress (0..1) and summary.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request

from receiver.services import get_services
from receiver.store.db import transaction
from reconciler.api.auth import require_role
from reconciler.api.openapi import ERROR_400, ERROR_404, describe, error, json_response, query_param
from reconciler.replay import (
    DEFAULT_LIMIT,
    MAX_ID,
    MAX_LIMIT,
    MAX_REF_LENGTH,
    REF_PATTERN,
    EventFilter,
    FilterError,
    ListRequest,
    NotFound,
    QueueUnavailable,
    dry_run,
    event_json,
    list_replays,
    parse_limit,
    replay_event,
    replay_json,
    show_event,
    start_replay,
)
from reconciler.replay import get_replay as load_replay
from reconciler.replay import list_events as query_events

bp = Blueprint("events_api", __name__, url_prefix="/api/v1")
READERS = ("operator", "auditor")

REF = {"type": "string", "minLength": 1, "maxLength": MAX_REF_LENGTH, "pattern": REF_PATTERN}
NAMES = {"type": "string", "minLength": 1, "maxLength": 200}
TIME = {"type": "string", "minLength": 1, "maxLength": 64}
FILTER_PARAMS = (
    query_param("provider", "only these providers (comma-separated)", NAMES),
    query_param(
        "state",
        "only these states: received, applied, failed, quarantined, superseded (comma-separated)",
        NAMES,
    ),
    query_param("session_id", "only this provider session", REF),
    query_param("user_ref", "only this user", REF),
    query_param("since", "received at or after: ISO 8601 time or an age (30m, 2h, 7d)", TIME),
    query_param("until", "received before: ISO 8601 time or an age", TIME),
)
FILTER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "provider": {"type": ["string", "array"], "items": {"type": "string"}},
        "state": {"type": ["string", "array"], "items": {"type": "string"}},
        "session_id": REF,
        "user_ref": REF,
        "since": TIME,
        "until": TIME,
    },
}
CHANGE = {
    "type": "object",
    "properties": {
        "from": {"type": ["object", "null"]},
        "to": {"type": ["object", "null"]},
    },
}
EFFECT = {
    "type": "object",
    "description": "Counts, and the sessions and users that change (from, to).",
    "properties": {
        **{
            name: {"type": "integer"}
            for name in ("events", "applied", "superseded", "quarantined", "failed", "deferred")
        },
        "sessions_changed": {"type": "integer"},
        "users_changed": {"type": "integer"},
        "sessions": {"type": "array", "items": CHANGE},
        "users": {"type": "array", "items": CHANGE},
        "failures": {"type": "array", "items": {"type": "object"}},
    },
}
EVENT = {"type": "object", "required": ["id", "provider", "state"]}
REPLAY = {
    "type": "object",
    "required": ["id", "state", "total", "done", "progress"],
    "properties": {
        "state": {"type": "string", "enum": ["pending", "running", "done", "failed"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "summary": EFFECT,
    },
}
EVENT_ID = {"event_id": "stored event id"}


def _bad(message: str, status: int = 400):  # type: ignore[no-untyped-def]
    return jsonify({"error": message}), status


def _query_params() -> dict[str, str]:
    """Query parameters; a repeated one is joined with commas (`state=a&state=b`)."""
    return {key: ",".join(request.args.getlist(key)) for key in request.args}


def _json_body() -> dict[str, Any] | None:
    """The JSON object body, {} for an empty body, None when it is not a JSON object."""
    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


def _dry_run_flag(body: dict[str, Any], default: bool) -> bool | None:
    value = body.get("dry_run", default)
    return value if isinstance(value, bool) else None


@bp.get("/events")
@require_role(*READERS)
@describe(
    summary="Stored inbound events, newest first, filtered, in cursor pages",
    tag="events",
    roles=READERS,
    query=(
        *FILTER_PARAMS,
        query_param(
            "limit",
            "events per page",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        ),
        query_param("cursor", "next_cursor of the previous page", {"type": "string"}),
    ),
    responses={
        200: json_response(
            "A page of events (metadata only)",
            {
                "type": "object",
                "required": ["events", "next_cursor"],
                "properties": {
                    "events": {"type": "array", "items": EVENT},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
        ),
        400: ERROR_400,
    },
)
def list_events():  # type: ignore[no-untyped-def]
    """A page of stored events, newest first, and the cursor of the next page."""
    try:
        wanted = ListRequest.parse(_query_params())
    except FilterError as exc:
        return _bad(str(exc))
    with transaction(get_services().engine) as session:
        rows, next_cursor = query_events(session, wanted)
        events = [event_json(row) for row in rows]
    return jsonify({"events": events, "next_cursor": next_cursor, "limit": wanted.limit})


@bp.get("/events/<int:event_id>")
@require_role(*READERS)
@describe(
    summary="One event: metadata, observations, and the delivery (raw for operators only)",
    description=(
        "Operators see the decrypted headers and body; that view is written to the audit"
        " history. Auditors see header and query names and the body size only."
    ),
    tag="events",
    roles=READERS,
    path=EVENT_ID,
    responses={200: json_response("The event", EVENT), 404: ERROR_404},
)
def get_event(event_id: int):  # type: ignore[no-untyped-def]
    """One event; the raw delivery only for operators."""
    if event_id > MAX_ID:
        return _bad("unknown event", 404)
    operator = g.principal.role == "operator"
    try:
        shown = show_event(
            get_services(),
            event_id,
            redacted=not operator,
            actor_name=g.principal.name if operator else None,
        )
    except NotFound:
        return _bad("unknown event", 404)
    return jsonify(shown)


@bp.post("/events/<int:event_id>/replay")
@require_role("operator")
@describe(
    summary="Replay one event now with the worker's code (or dry-run it)",
    tag="events",
    roles=("operator",),
    path=EVENT_ID,
    body={
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"dry_run": {"type": "boolean", "default": False}},
                }
            }
        },
    },
    responses={
        200: json_response("What the replay changed (or would change)", EFFECT),
        400: ERROR_400,
        404: ERROR_404,
    },
)
def replay_one(event_id: int):  # type: ignore[no-untyped-def]
    """Replay one event now (or, with `dry_run`, say what that would change)."""
    if event_id > MAX_ID:
        return _bad("unknown event", 404)
    body = _json_body()
    if body is None:
        return _bad("expected a JSON object (or no body)")
    want_dry_run = _dry_run_flag(body, default=False)
    if want_dry_run is None:
        return _bad("dry_run must be true or false")
    try:
        outcome = replay_event(
            get_services(), event_id, actor_name=g.principal.name, dry_run=want_dry_run
        )
    except NotFound:
        return _bad("unknown event", 404)
    return jsonify(outcome)


@bp.post("/replays")
@require_role("operator")
@describe(
    summary="Bulk replay by filter: dry run (default) or start it in the background",
    description=(
        "A dry run applies the matching events in a transaction that is rolled back and answers"
        " which sessions and users would change, from what to what. `dry_run: false` stores a"
        " resumable replay, queues it for the workers and answers 202 with its URL."
    ),
    tag="events",
    roles=("operator",),
    body={
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["filter"],
                    "additionalProperties": False,
                    "properties": {
                        "filter": FILTER_SCHEMA,
                        "dry_run": {"type": "boolean", "default": True},
                    },
                }
            }
        },
    },
    responses={
        200: json_response("The dry run's effect", EFFECT),
        202: json_response("The replay is queued", REPLAY),
        400: ERROR_400,
        503: error("The replay is stored but the queue is unreachable"),
    },
)
def post_replay():  # type: ignore[no-untyped-def]
    """Dry-run (default) or start a bulk replay of the events matching a filter."""
    body = _json_body()
    if body is None:
        return _bad('expected a JSON object {"filter": {...}, "dry_run": bool}')
    unknown = sorted(set(body) - {"filter", "dry_run"})
    if unknown:
        return _bad(f"unknown field {', '.join(unknown)}; use filter, dry_run")
    values = body.get("filter", {})
    if not isinstance(values, dict):
        return _bad("filter must be a JSON object")
    want_dry_run = _dry_run_flag(body, default=True)
    if want_dry_run is None:
        return _bad("dry_run must be true or false")
    try:
        flt = EventFilter.parse(values)
        if flt.is_empty():
            raise FilterError("give at least one filter (state, provider, since, …)")
        services = get_services()
        if want_dry_run:
            return jsonify(dry_run(services, flt))
        row = start_replay(services, flt, actor_name=g.principal.name)
    except FilterError as exc:
        return _bad(str(exc))
    except QueueUnavailable as exc:
        return _bad(str(exc), 503)
    answer = replay_json(row)
    answer["url"] = f"/api/v1/replays/{row.id}"
    return jsonify(answer), 202, {"Location": answer["url"]}


@bp.get("/replays")
@require_role(*READERS)
@describe(
    summary="The newest bulk replays (without their summaries)",
    tag="events",
    roles=READERS,
    query=(
        query_param(
            "limit",
            "how many",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        ),
    ),
    responses={
        200: json_response(
            "Replays, newest first",
            {"type": "object", "properties": {"replays": {"type": "array", "items": REPLAY}}},
        ),
        400: ERROR_400,
    },
)
def get_replays():  # type: ignore[no-untyped-def]
    """The newest bulk replays (without their summaries)."""
    try:
        limit = parse_limit(request.args.get("limit"))
    except FilterError as exc:
        return _bad(str(exc))
    rows = list_replays(get_services(), limit)
    return jsonify(
        {"replays": [{k: v for k, v in replay_json(r).items() if k != "summary"} for r in rows]}
    )


@bp.get("/replays/<int:replay_id>")
@require_role(*READERS)
@describe(
    summary="A bulk replay: state, total, done, progress (0..1) and its summary",
    tag="events",
    roles=READERS,
    path={"replay_id": "replay id"},
    responses={200: json_response("The replay", REPLAY), 404: ERROR_404},
)
def get_replay(replay_id: int):  # type: ignore[no-untyped-def]
    """A bulk replay: state, total, done, progress (0..1) and its summary so far."""
    if replay_id > MAX_ID:
        return _bad("unknown replay", 404)
    try:
        row = load_replay(get_services(), replay_id)
    except NotFound:
        return _bad("unknown replay", 404)
    return jsonify(replay_json(row))
