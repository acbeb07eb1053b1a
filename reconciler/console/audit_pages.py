"""The console's audit pages: a user's timeline, the audit history (filtered, exported, its hash
chain verified).

Data comes from the functions the API and the CLI use (reconciler.audit.queries,
reconciler/console/overview_queries.py); templates escape everything (Jinja autoescape, never
`|safe`).
"""

from __future__ import annotations

from typing import Any

from flask import Response, render_template, request, url_for

from receiver.request_rules import ViewResult
from receiver.services import get_services
from reconciler.audit import queries as aq
from reconciler.console import overview_queries
from reconciler.console.blueprint import bp, page_url
from reconciler.console.openapi_models import (
    BAD_INPUT,
    ConsoleAuditExportQuery,
    ConsoleAuditQuery,
    ConsoleCsrfForm,
    ConsoleTimelineQuery,
    console_route,
    export_answers,
    form_answers,
    page_answers,
)
from reconciler.console.pages import query_args
from reconciler.console.security import error_page

AUDIT_PAGE = 100
TIMELINE_AUDIT_LIMIT = 500


@bp.get("/timeline")
@console_route(
    page_answers(HTTP_400=(None, "Not a valid user ref" + BAD_INPUT)), query=ConsoleTimelineQuery
)
def timeline() -> ViewResult:
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
    found = overview_queries.user_timeline(services, user_ref)
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
    given = query_args(aq.FILTER_NAMES)
    return given, aq.AuditFilter.parse(dict(given))


@bp.get("/audit")
@console_route(
    page_answers(HTTP_400=(None, "A filter is not valid" + BAD_INPUT)), query=ConsoleAuditQuery
)
def audit() -> ViewResult:
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
            next_url = page_url("console.audit", filters, after=page.next_cursor)
    answer = render_template(
        "console/audit.html",
        entries=entries,
        filters=filters,
        problem=problem,
        next_url=next_url,
        csv_url=page_url("console.audit_export", filters, format="csv"),
        jsonl_url=page_url("console.audit_export", filters, format="jsonl"),
        report=None,
    )
    return answer, 400 if problem else 200


@bp.get("/audit/export")
@console_route(export_answers(), query=ConsoleAuditExportQuery)
def audit_export() -> ViewResult:
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
def audit_verify() -> ViewResult:
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
