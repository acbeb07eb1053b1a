"""The audit API (auditor, operator): history with filters and exports, as-of status, verify."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from receiver.services import get_services
from reconciler.api.auth import require_role
from reconciler.api.openapi import ERROR_400, describe, json_response, query_param, ref
from reconciler.audit import queries as aq

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")
ROLES = ("auditor", "operator")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

REF_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": aq.REF_PATTERN}
TIME_SCHEMA = {"type": "string", "format": "date-time"}
FILTER_PARAMS = (
    query_param("user_ref", "only this user's entries", REF_SCHEMA),
    query_param("provider", "only this provider's entries", REF_SCHEMA),
    query_param("session_id", "only this session's entries", REF_SCHEMA),
    query_param("since", "entries at or after this ISO-8601 time", TIME_SCHEMA),
    query_param("until", "entries before this ISO-8601 time (exclusive)", TIME_SCHEMA),
)


def _bad(message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), 400


def _integer(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise aq.AuditQueryError(f"{name} must be a non-negative integer")
    return int(raw)


@bp.get("")
@require_role(*ROLES)
@describe(
    summary="The audit history, filtered; a page of JSON or a streamed CSV / JSON Lines export",
    description=(
        "Entries in chain order (seq). `format=json` (default) answers one page of at most"
        " `limit` entries and a `next_cursor`; `format=csv` and `format=jsonl` stream every"
        " matching entry up to the chain head as it was when the export began."
    ),
    tag="audit",
    roles=ROLES,
    query=(
        *FILTER_PARAMS,
        query_param("format", "json, csv or jsonl", {"type": "string", "enum": list(aq.FORMATS)}),
        query_param(
            "limit",
            "json: entries per page",
            {"type": "integer", "minimum": 1, "maximum": aq.MAX_PAGE, "default": aq.DEFAULT_PAGE},
        ),
        query_param(
            "cursor",
            "json: continue after this seq (next_cursor)",
            {"type": "integer", "minimum": 0, "maximum": aq.MAX_SEQ},
        ),
    ),
    responses={
        200: {
            "description": "A page (json) or the export (csv, jsonl)",
            "content": {
                "application/json": {"schema": ref("AuditPage")},
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        },
        400: ERROR_400,
    },
)
def history():  # type: ignore[no-untyped-def]
    """The audit history."""
    try:
        flt = aq.AuditFilter.parse({k: request.args.get(k) for k in aq.FILTER_NAMES})
        fmt = request.args.get("format", "json")
        if fmt not in aq.FORMATS:
            raise aq.AuditQueryError(f"format must be one of {', '.join(aq.FORMATS)}")
        engine = get_services().engine
        if fmt == "json":
            page = aq.query_page(
                engine, flt, _integer("limit", aq.DEFAULT_PAGE), _integer("cursor", 0)
            )
            return jsonify({"entries": page.entries, "next_cursor": page.next_cursor})
    except aq.AuditQueryError as exc:
        return _bad(str(exc))
    response = Response(aq.export_chunks(engine, flt, fmt), content_type=CONTENT_TYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="audit.{fmt}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/as-of")
@require_role(*ROLES)
@describe(
    summary="A user's status at a moment, and the audit entries that made it so",
    description=(
        "Derived from the audit history alone: the last user entry at or before `at` gives the"
        " status and the deciding session; `entries` are that entry and the deciding session's"
        " entries up to `at`. A user with no entry by then is `unknown` (still 200)."
    ),
    tag="audit",
    roles=ROLES,
    query=(
        query_param("user_ref", "the user", REF_SCHEMA, True),
        query_param("at", "ISO-8601 time", TIME_SCHEMA, True),
    ),
    responses={200: json_response("The status at that time", ref("AsOf")), 400: ERROR_400},
)
def as_of():  # type: ignore[no-untyped-def]
    """A user's status as of a time."""
    user_ref, at = request.args.get("user_ref"), request.args.get("at")
    if user_ref is None or at is None:
        return _bad("user_ref and at are required")
    try:
        answer = aq.status_as_of(
            get_services().engine, aq.check_ref(user_ref, "user_ref"), aq.parse_instant(at, "at")
        )
    except aq.AuditQueryError as exc:
        return _bad(str(exc))
    return jsonify(answer.as_json())


@bp.get("/verify")
@require_role(*ROLES)
@describe(
    summary="Walk the hash chain and report the first entry that does not chain",
    description=(
        "Detects an edited, removed or reordered entry, and removed last entries (the head row"
        " keeps the last seq and hash)."
    ),
    tag="audit",
    roles=ROLES,
    responses={200: json_response("The verdict (ok true or false)", ref("AuditVerify"))},
)
def verify():  # type: ignore[no-untyped-def]
    """Verify the audit chain."""
    report = aq.verify_stored_chain(get_services().engine)
    body: dict[str, Any] = aq.report_json(report)
    return jsonify(body)
