"""The console's bulk replays: a dry run of the events page's filters (the effect, computed by
applying the events in a transaction that is rolled back), then an explicit confirmation that
stores the replay and queues it for the workers, and a page that follows its progress.

The confirmation replays what the dry run covered: its filter is sent back with times made
absolute, and an open-ended one ends when the dry run ran, so events arriving meanwhile are not
taken. The functions are the API's and the CLI's (reconciler.replay).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import redirect, render_template, request, url_for

from receiver.request_rules import ViewResult
from receiver.services import get_services
from receiver.store.models import utcnow
from reconciler.console.blueprint import bp
from reconciler.console.openapi_models import (
    ConsoleBulkReplayForm,
    ConsoleFilterForm,
    console_route,
    form_answers,
    page_answers,
)
from reconciler.console.security import error_page, operator_only, principal
from reconciler.event_queries import FILTER_KEYS, MAX_ID, EventFilter, FilterError, NotFound
from reconciler.replay.execution import dry_run
from reconciler.replay.queueing import QueueUnavailable, start_replay
from reconciler.replay.runs import get_replay
from reconciler.replay.shaping import replay_json


def form_filter() -> EventFilter:
    """The filter in the POSTed form, ending now at the latest; FilterError when bad or empty."""
    values = {k: v for k in FILTER_KEYS if (v := request.form.get(k, "").strip())}
    flt = EventFilter.parse(values)
    if flt.is_empty():
        raise FilterError("a bulk replay needs at least one filter (state, provider, since, …)")
    now = utcnow()
    return flt if flt.until is not None and flt.until <= now else replace(flt, until=now)


def form_fields(flt: EventFilter) -> dict[str, str]:
    """The filter as form fields (lists comma-separated, times ISO 8601)."""
    return {
        key: ",".join(value) if isinstance(value, list) else str(value)
        for key, value in flt.to_json().items()
        if value
    }


@bp.post("/replays/dry-run")
@console_route(
    form_answers(
        HTTP_200=(None, "What a replay of these events would change, and the confirm button"),
        HTTP_403=(None, "Not an operator"),
    ),
    form=ConsoleFilterForm,
)
@operator_only
def bulk_dry_run() -> ViewResult:
    """Console: dry-run a bulk replay of the filtered events (operators)

    Applies the matching events in a transaction that is rolled back and shows which sessions
    and users would change; nothing is changed. The page offers the confirmation.
    """
    try:
        flt = form_filter()
    except FilterError as exc:
        return error_page(400, "Cannot replay these events", str(exc))
    effect = dry_run(get_services(), flt)
    return render_template(
        "console/bulk_replay.html",
        effect=effect,
        description=flt.describe(),
        fields=form_fields(flt),
        events_url=url_for("console.events", **dict[str, Any](form_fields(flt))),
    )


@bp.post("/replays")
@console_route(
    form_answers(
        HTTP_403=(None, "Not an operator"),
        HTTP_503=(None, "Stored, but the queue is unreachable"),
    ),
    form=ConsoleBulkReplayForm,
)
@operator_only
def bulk_replay() -> ViewResult:
    """Console: start a bulk replay after its dry run (operators)

    Needs `confirm=1`. Stores a resumable replay of the filtered events, queues it for the
    workers (audited as this operator) and goes to its progress page.
    """
    if request.form.get("confirm") != "1":
        return error_page(400, "Not confirmed", "Run the dry run first, then confirm it.")
    try:
        flt = form_filter()
        row = start_replay(get_services(), flt, actor_name=principal().name)
    except FilterError as exc:
        return error_page(400, "Cannot replay these events", str(exc))
    except QueueUnavailable as exc:
        return error_page(503, "Replay stored, not queued", str(exc))
    return redirect(url_for("console.replay_run", replay_id=row.id))


@bp.get("/replays/<int:replay_id>")
@console_route(page_answers(HTTP_404=(None, "No such replay")))
def replay_run(replay_id: int) -> ViewResult:
    """Console: a bulk replay's progress and summary

    State, done / total, and the sessions and users it changed so far.
    """
    try:
        if replay_id > MAX_ID:
            raise NotFound(f"no replay {replay_id}")
        row = get_replay(get_services(), replay_id)
    except NotFound:
        return error_page(404, "No such replay", f"No bulk replay has id {replay_id}.")
    shown = replay_json(row)
    listed: dict[str, Any] = form_fields(EventFilter.parse(_stored(shown)))
    return render_template(
        "console/replay_run.html", run=shown, events_url=url_for("console.events", **listed)
    )


def _stored(shown: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in shown["filter"].items() if v is not None}
