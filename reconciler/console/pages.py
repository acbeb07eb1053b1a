"""The console's pages: overview, events, one event (and its replay), a user's timeline, audit.

Data comes from the functions the API and the CLI use (reconciler.replay, reconciler.audit.queries,
reconciler.session_queries); templates escape everything (Jinja autoescape, never `|safe`).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from flask import Response, render_template, request, url_for
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from receiver.canonical import utc
from receiver.providers import REGISTRY
from receiver.services import get_services
from receiver.store.db import transaction
from receiver.store.models import EventState
from reconciler.audit import queries as aq
from reconciler.console import bp, queries
from reconciler.console.docs import (
    BAD_INPUT,
    PAGE_SIZES,
    ConsoleAuditExportQuery,
    ConsoleAuditQuery,
    ConsoleCsrfForm,
    ConsoleEventQuery,
    ConsoleEventsQuery,
    ConsoleReplayForm,
    ConsoleTimelineQuery,
    answers,
    console_route,
    export_answers,
    form_answers,
    page_answers,
)
from reconciler.console.security import error_page, operator_only, principal
from reconciler.event_queries import (
    FILTER_KEYS,
    MAX_ID,
    FilterError,
    ListRequest,
    NotFound,
    event_json,
    list_events,
)
from reconciler.replay.execution import replay_event
from reconciler.replay.runs import list_replays
from reconciler.replay.shaping import replay_json, show_event
from reconciler.session_queries import list_sessions

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
EVENT_STATES = [state.value for state in EventState]
AUDIT_PAGE = 100
TIMELINE_AUDIT_LIMIT = 500
OVERDUE_SHOWN = 20
REPLAYS_SHOWN = 5
# ------------------------------------------------------------------ template helpers


@bp.app_template_filter("console_when")
def when(value: Any) -> str:
    """A time as `2024-05-01 12:00:05Z` (UTC), from a datetime or an ISO string; '' for None."""
    if value is None or value == "":
        return ""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return utc(moment).strftime("%Y-%m-%d %H:%M:%SZ")


@bp.app_template_filter("console_age")
def age(seconds: float | None) -> str:
    """A duration for people: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`."""
    if seconds is None:
        return ""
    total = int(seconds)
    if total < 60:
        return f"{total} s"
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 3600:
        return f"{minutes} min"
    if total < 86400:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def _given(names: tuple[str, ...]) -> dict[str, str]:
    """The non-empty query arguments among `names`, stripped."""
    return {name: value for name in names if (value := request.args.get(name, "").strip())}


# ------------------------------------------------------------------ pages


@bp.get("/console.css")
@console_route(answers(HTTP_200=(None, "The stylesheet"), media={"HTTP_200": ["text/css"]}))
def stylesheet() -> Response:
    """Console: its stylesheet

    The console's one stylesheet (read once).
    """
    response = Response(_static("console.css"), mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/favicon.svg")
@console_route(answers(HTTP_200=(None, "The icon"), media={"HTTP_200": ["image/svg+xml"]}))
def icon() -> Response:
    """Console: its icon

    The console's tab icon.
    """
    response = Response(_static("favicon.svg"), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@bp.get("/")
@console_route(page_answers())
def overview():  # type: ignore[no-untyped-def]
    """Console: overview (events by state, queue, overdue sessions, scheduler leader)

    Events by state, queue depth and age, failed/quarantined, overdue sessions, leader.
    """
    services = get_services()
    numbers = queries.overview(services)
    overdue, replays = [], []
    if numbers.available:
        try:
            overdue = list_sessions(services, overdue=True, limit=OVERDUE_SHOWN)
            replays = [replay_json(row) for row in list_replays(services, REPLAYS_SHOWN)]
        except SQLAlchemyError:
            log.warning("console overview could not read sessions or replays")
            numbers.available = False
    return render_template(
        "console/overview.html",
        numbers=numbers,
        states=EVENT_STATES,
        overdue=overdue,
        replays=replays,
        leader=queries.scheduler_leader(services),
    )


@bp.get("/events")
@console_route(
    page_answers(HTTP_400=(None, "A filter is not valid" + BAD_INPUT)), query=ConsoleEventsQuery
)
def events():  # type: ignore[no-untyped-def]
    """Console: stored events, newest first, filtered, in pages

    Events with filters and cursor pagination (the API's own query).
    """
    filters = _given(FILTER_KEYS)
    params: dict[str, str] = dict(filters)
    limit = request.args.get("limit", "").strip()
    if limit:
        params["limit"] = limit
    cursor = request.args.get("cursor", "").strip()
    rows: list[dict[str, Any]] = []
    next_url = problem = None
    try:
        wanted = ListRequest.parse({**params, **({"cursor": cursor} if cursor else {})})
    except FilterError as exc:
        problem = str(exc)
    else:
        with transaction(get_services().engine) as session:
            found, next_cursor = list_events(session, wanted)
            rows = [event_json(row) for row in found]
        if next_cursor:
            next_url = url_for("console.events", **params, cursor=next_cursor)
    page = render_template(
        "console/events.html",
        events=rows,
        filters=filters,
        limit=params.get("limit", ""),
        page_sizes=PAGE_SIZES,
        providers=sorted(REGISTRY),
        states=EVENT_STATES,
        problem=problem,
        next_url=next_url,
        first_url=url_for("console.events", **params) if cursor else None,
    )
    return page, 400 if problem else 200


def _pretty_body(body: str | None) -> str | None:
    """A JSON body indented for reading; anything else as it is."""
    if body is None:
        return None
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return body


@bp.get("/events/<int:event_id>")
@console_route(page_answers(HTTP_404=(None, "No such event")), query=ConsoleEventQuery)
def event(event_id: int):  # type: ignore[no-untyped-def]
    """Console: one event (metadata, errors, observations, the delivery)

    The delivery is shown redacted (names and size); an operator may ask for the decrypted
    headers and body with raw=1, which is written to the audit history.
    """
    if event_id > MAX_ID:
        return error_page(404, "No such event", f"No event has id {event_id}.")
    who = principal()
    raw = request.args.get("raw") == "1" and who.role == "operator"
    try:
        shown = show_event(
            get_services(), event_id, redacted=not raw, actor_name=who.name if raw else None
        )
    except NotFound:
        return error_page(404, "No such event", f"No event has id {event_id}.")
    delivery = shown["delivery"]
    return render_template(
        "console/event.html",
        event=shown,
        delivery=delivery,
        body=_pretty_body(delivery.get("body")),
        raw=raw,
    )


@bp.post("/events/<int:event_id>/replay")
@console_route(
    form_answers(
        HTTP_200=(None, "What the replay changed (or would change)"),
        HTTP_403=(None, "Not an operator"),
        HTTP_404=(None, "No such event"),
    ),
    form=ConsoleReplayForm,
)
@operator_only
def replay(event_id: int):  # type: ignore[no-untyped-def]
    """Console: replay one event now, or dry-run it (operators)

    Replays with the worker's code (audited as this operator) and shows the effect.
    """
    if event_id > MAX_ID:
        return error_page(404, "No such event", f"No event has id {event_id}.")
    dry_run = request.form.get("dry_run") == "1"
    try:
        outcome = replay_event(
            get_services(), event_id, actor_name=principal().name, dry_run=dry_run
        )
    except NotFound:
        return error_page(404, "No such event", f"No event has id {event_id}.")
    return render_template("console/replay.html", outcome=outcome, event_id=event_id)


@bp.get("/timeline")
@console_route(
    page_answers(HTTP_400=(None, "Not a valid user ref" + BAD_INPUT)), query=ConsoleTimelineQuery
)
def timeline():  # type: ignore[no-untyped-def]
    """Console: a user's verification timeline (sessions, their history, audit entries)

    A user's status, sessions with their histories, and audit entries in time order.
    """
    user_ref = request.args.get("user_ref", "").strip()
    if not user_ref:
        return render_template("console/timeline.html", user_ref="", timeline=None)
    try:
        aq.check_ref(user_ref, "user_ref")
    except aq.AuditQueryError as exc:
        return error_page(400, "Not a valid user ref", str(exc))
    services = get_services()
    found = queries.user_timeline(services, user_ref)
    page = aq.query_page(services.engine, aq.AuditFilter(user_ref=user_ref), TIMELINE_AUDIT_LIMIT)
    return render_template(
        "console/timeline.html",
        user_ref=user_ref,
        timeline=found,
        entries=page.entries,
        more_url=url_for("console.audit", user_ref=user_ref, after=page.next_cursor)
        if page.next_cursor
        else None,
    )


def _audit_filter() -> tuple[dict[str, str], aq.AuditFilter]:
    given = _given(aq.FILTER_NAMES)
    return given, aq.AuditFilter.parse(dict(given))


@bp.get("/audit")
@console_route(
    page_answers(HTTP_400=(None, "A filter is not valid" + BAD_INPUT)), query=ConsoleAuditQuery
)
def audit():  # type: ignore[no-untyped-def]
    """Console: the audit history, filtered, with export links and a verify button

    The audit history in chain order, filtered, a page at a time.
    """
    filters: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    next_url = problem = None
    try:
        filters, flt = _audit_filter()
        raw_after = request.args.get("after", "").strip() or "0"
        if not raw_after.isascii() or not raw_after.isdigit() or len(raw_after) > 18:
            raise aq.AuditQueryError("after must be a non-negative integer")
        page = aq.query_page(get_services().engine, flt, AUDIT_PAGE, int(raw_after))
    except aq.AuditQueryError as exc:
        problem = str(exc)
    else:
        entries = page.entries
        if page.next_cursor is not None:
            next_url = url_for("console.audit", **filters, after=page.next_cursor)
    answer = render_template(
        "console/audit.html",
        entries=entries,
        filters=filters,
        problem=problem,
        next_url=next_url,
        csv_url=url_for("console.audit_export", **filters, format="csv"),
        jsonl_url=url_for("console.audit_export", **filters, format="jsonl"),
        report=None,
    )
    return answer, 400 if problem else 200


@bp.get("/audit/export")
@console_route(export_answers(), query=ConsoleAuditExportQuery)
def audit_export():  # type: ignore[no-untyped-def]
    """Console: download the filtered audit history as CSV or JSON Lines

    The same export as `GET /api/v1/audit?format=csv|jsonl`, for a signed-in browser.
    """
    fmt = request.args.get("format", "csv")
    try:
        _, flt = _audit_filter()
        if fmt not in ("csv", "jsonl"):
            raise aq.AuditQueryError("format must be csv or jsonl")
        chunks = aq.export_chunks(get_services().engine, flt, fmt)
    except aq.AuditQueryError as exc:
        return error_page(400, "Cannot export", str(exc))
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    response = Response(chunks, content_type=content_type)
    response.headers["Content-Disposition"] = f'attachment; filename="audit.{fmt}"'
    return response


@bp.post("/audit/verify")
@console_route(
    form_answers(HTTP_200=(None, "The verdict: ok, or the first bad entry")), form=ConsoleCsrfForm
)
def audit_verify():  # type: ignore[no-untyped-def]
    """Console: verify the audit hash chain

    Walks the chain; shows ok with the count and head, or the first entry that does not chain.
    """
    report = aq.verify_stored_chain(get_services().engine)
    return render_template(
        "console/audit.html",
        entries=[],
        filters={},
        problem=None,
        next_url=None,
        csv_url=url_for("console.audit_export", format="csv"),
        jsonl_url=url_for("console.audit_export", format="jsonl"),
        report=aq.report_json(report),
        report_message=aq.report_message(report),
        first_bad_url=url_for("console.audit", after=report.first_bad - 1)
        if report.first_bad
        else None,
    )


@bp.errorhandler(SQLAlchemyError)
@bp.errorhandler(RedisError)
def unavailable(exc: Exception):  # type: ignore[no-untyped-def]
    """The database (or Redis) did not answer: say so plainly, with the request id."""
    log.warning("console: %s", type(exc).__name__)
    return error_page(
        503,
        "Store unavailable",
        "The database or Redis did not answer. Retry in a moment; check /readyz.",
    )
