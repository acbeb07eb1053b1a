"""The audit API (auditor, operator): history with filters and exports, as-of status, verify."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from receiver.request_rules import ViewResult
from receiver.services import get_services
from reconciler.api.auth import require_role
from reconciler.api.schemas.audit import AsOf, AsOfQuery, AuditPage, AuditQuery, AuditVerify
from reconciler.api.spec import answers, bearer, spec
from reconciler.audit import queries as aq

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")
ROLES = ("auditor", "operator")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def _bad(message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), 400


@bp.get("")
@require_role(*ROLES)
@spec.validate(
    query=AuditQuery,
    resp=answers(
        guarded=True,
        HTTP_200=(AuditPage, "A page (json) or the export (csv, jsonl)"),
        media={"HTTP_200": ["text/csv", "application/x-ndjson"]},
    ),
    tags=["audit"],
    security=bearer(*ROLES),
)
def history(query: AuditQuery) -> ViewResult:
    """The audit history, filtered; a page of JSON or a streamed CSV / JSON Lines export

    Entries in chain order (seq). `format=json` (default) answers one page of at most `limit`
    entries and a `next_cursor`; `format=csv` and `format=jsonl` stream every matching entry up
    to the chain head as it was when the export began.
    """
    flt, fmt, engine = query.parsed, query.format, get_services().engine
    if fmt == "json":
        try:
            page = aq.query_page(engine, flt, query.limit, query.cursor)
        except aq.AuditQueryError as exc:
            return _bad(str(exc))
        return jsonify({"entries": page.entries, "next_cursor": page.next_cursor})
    response = Response(aq.export_chunks(engine, flt, fmt), content_type=CONTENT_TYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="audit.{fmt}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/as-of")
@require_role(*ROLES)
@spec.validate(
    query=AsOfQuery,
    resp=answers(guarded=True, HTTP_200=(AsOf, "The status at that time")),
    tags=["audit"],
    security=bearer(*ROLES),
)
def as_of(query: AsOfQuery) -> ViewResult:
    """A user's status at a moment, and the audit entries that made it so

    Derived from the audit history alone: the last user entry at or before `at` gives the status
    and the deciding session; `entries` are that entry and the deciding session's entries up to
    `at`. A user with no entry by then is `unknown` (still 200).
    """
    user_ref, at = query.parsed
    answer = aq.status_as_of(get_services().engine, user_ref, at)
    return jsonify(answer.as_json())


@bp.get("/verify")
@require_role(*ROLES)
@spec.validate(
    resp=answers(guarded=True, HTTP_200=(AuditVerify, "The verdict (ok true or false)")),
    tags=["audit"],
    security=bearer(*ROLES),
)
def verify() -> ViewResult:
    """Walk the hash chain and report the first entry that does not chain

    Detects an edited, removed or reordered entry, and removed last entries (the head row keeps
    the last seq and hash).
    """
    report = aq.verify_stored_chain(get_services().engine)
    body: dict[str, Any] = aq.report_json(report)
    return jsonify(body)
