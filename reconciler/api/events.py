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

from flask import Blueprint, g, jsonify

from receiver.request_rules import ViewResult
from receiver.services import get_services
from receiver.store.db import transaction
from reconciler.api.auth import require_role
from reconciler.api.schemas.common import Error
from reconciler.api.schemas.events import (
    Effect,
    EventDetail,
    EventPage,
    EventsQuery,
    LimitQuery,
    Replay,
    ReplayList,
    ReplayOne,
    ReplayRequest,
)
from reconciler.api.spec import answers, bearer, spec
from reconciler.event_queries import MAX_ID, FilterError, NotFound, event_json
from reconciler.event_queries import list_events as query_events
from reconciler.replay.execution import dry_run, replay_event
from reconciler.replay.queueing import QueueUnavailable, start_replay
from reconciler.replay.runs import get_replay as load_replay
from reconciler.replay.runs import list_replays
from reconciler.replay.shaping import replay_json, show_event

bp = Blueprint("events_api", __name__, url_prefix="/api/v1")
READERS = ("operator", "auditor")
EVENT_ID = {"event_id": "stored event id"}
NOT_FOUND = (Error, "Not found")


def _bad(message: str, status: int = 400) -> ViewResult:
    return jsonify({"error": message}), status


@bp.get("/events")
@require_role(*READERS)
@spec.validate(
    query=EventsQuery,
    resp=answers(guarded=True, HTTP_200=(EventPage, "A page of events (metadata only)")),
    tags=["events"],
    security=bearer(*READERS),
)
def list_events(query: EventsQuery) -> ViewResult:
    """Stored inbound events, newest first, filtered, in cursor pages"""
    wanted = query.parsed
    with transaction(get_services().engine) as db:
        rows, next_cursor = query_events(db, wanted)
        events = [event_json(row) for row in rows]
    return jsonify({"events": events, "next_cursor": next_cursor, "limit": wanted.limit})


@bp.get("/events/<int:event_id>")
@require_role(*READERS)
@spec.validate(
    resp=answers(guarded=True, HTTP_200=(EventDetail, "The event"), HTTP_404=NOT_FOUND),
    tags=["events"],
    security=bearer(*READERS),
    path_parameter_descriptions=EVENT_ID,
)
def get_event(event_id: int) -> ViewResult:
    """One event: metadata, observations, and the delivery (raw for operators only)

    Operators see the decrypted headers and body; that view is written to the audit history.
    Auditors see header and query names and the body size only.
    """
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
@spec.validate(
    json=ReplayOne,
    resp=answers(
        guarded=True,
        HTTP_200=(Effect, "What the replay changed (or would change)"),
        HTTP_404=NOT_FOUND,
    ),
    tags=["events"],
    security=bearer("operator"),
    path_parameter_descriptions=EVENT_ID,
)
def replay_one(event_id: int, json: ReplayOne) -> ViewResult:
    """Replay one event now with the worker's code (or dry-run it)

    The body is optional: `{"dry_run": true}` says what the replay would change and changes
    nothing.
    """
    if event_id > MAX_ID:
        return _bad("unknown event", 404)
    try:
        outcome = replay_event(
            get_services(), event_id, actor_name=g.principal.name, dry_run=json.dry_run
        )
    except NotFound:
        return _bad("unknown event", 404)
    return jsonify(outcome)


@bp.post("/replays")
@require_role("operator")
@spec.validate(
    json=ReplayRequest,
    resp=answers(
        guarded=True,
        HTTP_200=(Effect, "The dry run's effect"),
        HTTP_202=(Replay, "The replay is queued"),
        HTTP_503=(Error, "The replay is stored but the queue is unreachable"),
    ),
    tags=["events"],
    security=bearer("operator"),
)
def post_replay(json: ReplayRequest) -> ViewResult:
    """Bulk replay by filter: dry run (default) or start it in the background

    A dry run applies the matching events in a transaction that is rolled back and answers which
    sessions and users would change, from what to what. `dry_run: false` stores a resumable
    replay, queues it for the workers and answers 202 with its URL.
    """
    flt = json.filter.parsed
    if flt.is_empty():
        return _bad("give at least one filter (state, provider, since, …)")
    services = get_services()
    try:
        if json.dry_run:
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
@spec.validate(
    query=LimitQuery,
    resp=answers(guarded=True, HTTP_200=(ReplayList, "Replays, newest first")),
    tags=["events"],
    security=bearer(*READERS),
)
def get_replays(query: LimitQuery) -> ViewResult:
    """The newest bulk replays (without their summaries)"""
    rows = list_replays(get_services(), query.parsed)
    return jsonify(
        {"replays": [{k: v for k, v in replay_json(r).items() if k != "summary"} for r in rows]}
    )


@bp.get("/replays/<int:replay_id>")
@require_role(*READERS)
@spec.validate(
    resp=answers(guarded=True, HTTP_200=(Replay, "The replay"), HTTP_404=NOT_FOUND),
    tags=["events"],
    security=bearer(*READERS),
    path_parameter_descriptions={"replay_id": "replay id"},
)
def get_replay(replay_id: int) -> ViewResult:
    """A bulk replay: state, total, done, progress (0..1) and its summary so far"""
    if replay_id > MAX_ID:
        return _bad("unknown replay", 404)
    try:
        row = load_replay(get_services(), replay_id)
    except NotFound:
        return _bad("unknown replay", 404)
    return jsonify(replay_json(row))
