"""The console's overview page, its stylesheet and icon, and what every console page shares:
the time and age filters of the templates, reading query arguments, the store-unavailable page.

The other pages are in event_pages.py, audit_pages.py and sign_in.py. Data comes from the
functions the API and the CLI use (reconciler.replay, reconciler.session_queries); templates
escape everything (Jinja autoescape, never `|safe`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from flask import Response, render_template, request
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from receiver.canonical import utc
from receiver.request_rules import ViewResult
from receiver.services import get_services
from receiver.store.models import EventState
from reconciler.api.spec import answers
from reconciler.console import overview_queries
from reconciler.console.blueprint import bp
from reconciler.console.openapi_models import console_route, page_answers
from reconciler.console.security import error_page
from reconciler.replay.runs import list_replays
from reconciler.replay.shaping import replay_json
from reconciler.session_listing import list_sessions

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
EVENT_STATES = [state.value for state in EventState]
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


def query_args(names: tuple[str, ...]) -> dict[str, str]:
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
def overview() -> ViewResult:
    """Console: overview (events by state, queue, overdue sessions, scheduler leader)

    Events by state, queue depth and age, failed/quarantined, overdue sessions, leader.
    """
    services = get_services()
    numbers = overview_queries.overview(services)
    overdue, replays = [], []
    if numbers.available:
        try:
            overdue = list_sessions(services.engine, overdue=True, limit=OVERDUE_SHOWN)
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
        leader=overview_queries.scheduler_leader(services),
    )


@bp.errorhandler(SQLAlchemyError)
@bp.errorhandler(RedisError)
def unavailable(exc: Exception) -> ViewResult:
    """The database (or Redis) did not answer: say so plainly, with the request id."""
    log.warning("console: %s", type(exc).__name__)
    return error_page(
        503,
        "Store unavailable",
        "The database or Redis did not answer. Retry in a moment; check /readyz.",
    )
