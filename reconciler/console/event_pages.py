"""The console's event pages: stored events (filtered, searched, in pages), one event, and its
replay: a dry run first, a real replay only when confirmed (`confirm=1`).

Data comes from the functions the API and the CLI use (reconciler.event_queries,
reconciler.replay); templates escape everything (Jinja autoescape, never `|safe`).
"""

from __future__ import annotations

import json
from typing import Any

from flask import render_template, request

from receiver.providers import REGISTRY
from receiver.request_rules import ViewResult
from receiver.services import get_services
from receiver.store.db import transaction
from reconciler.console import triage_queries
from reconciler.console.blueprint import bp, page_url
from reconciler.console.openapi_models import (
    BAD_INPUT,
    PAGE_SIZES,
    ConsoleEventQuery,
    ConsoleEventsQuery,
    ConsoleReplayForm,
    console_route,
    form_answers,
    page_answers,
)
from reconciler.console.pages import EVENT_STATES, query_args
from reconciler.console.security import error_page, is_operator, operator_only, principal
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
from reconciler.replay.shaping import show_event

LISTED = ("provider", "state")
"""Filters that may be given several times (or comma-separated): joined with commas."""


def event_filters() -> dict[str, str]:
    """The events filters of this request, several states (or providers) joined by commas."""
    found = query_args(FILTER_KEYS)
    for name in LISTED:
        values = [v.strip() for v in request.args.getlist(name) if v.strip()]
        if values:
            found[name] = ",".join(dict.fromkeys(",".join(values).split(",")))
    return found


@bp.get("/events")
@console_route(
    page_answers(HTTP_400=(None, "A filter is not valid" + BAD_INPUT)), query=ConsoleEventsQuery
)
def events() -> ViewResult:
    """Console: stored events, newest first, filtered, in pages

    Events with filters and cursor pagination (the API's own query).
    """
    filters = event_filters()
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
        with transaction(get_services().engine) as db:
            found, next_cursor = list_events(db, wanted)
            rows = [event_json(row) for row in found]
            ids = [row["id"] for row in rows]
            results = triage_queries.results_of(db, ids)
            deliveries = triage_queries.deliveries_of(db, ids)
        for row in rows:
            row["results"], row["deliveries"] = results[row["id"]], deliveries[row["id"]]
        if next_cursor:
            next_url = page_url("console.events", params, cursor=next_cursor)
    page = render_template(
        "console/events.html",
        events=rows,
        filters=filters,
        limit=params.get("limit", ""),
        page_sizes=PAGE_SIZES,
        providers=sorted(REGISTRY),
        states=EVENT_STATES,
        chosen_states=set(filters.get("state", "").split(",")),
        problem=problem,
        next_url=next_url,
        first_url=page_url("console.events", params) if cursor else None,
        can_bulk_replay=is_operator() and bool(filters) and not problem,
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
def event(event_id: int) -> ViewResult:
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
    with transaction(get_services().engine) as db:
        shown["deliveries"] = triage_queries.deliveries_of(db, [event_id])[event_id]
        shown["last_repeat_at"] = triage_queries.last_repeat_at(db, event_id)
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
def replay(event_id: int) -> ViewResult:
    """Console: dry-run one event's replay, or replay it when confirmed (operators)

    A dry run unless the form says `confirm=1` (the dry run's page offers that button): replays
    with the worker's code (audited as this operator) and shows the effect.
    """
    if event_id > MAX_ID:
        return error_page(404, "No such event", f"No event has id {event_id}.")
    dry_run = request.form.get("confirm") != "1" or request.form.get("dry_run") == "1"
    try:
        outcome = replay_event(
            get_services(), event_id, actor_name=principal().name, dry_run=dry_run
        )
    except NotFound:
        return error_page(404, "No such event", f"No event has id {event_id}.")
    return render_template("console/replay.html", outcome=outcome, event_id=event_id)
