"""API views: users, sessions (read and register)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from receiver.providers import REGISTRY
from receiver.services import get_services
from receiver.store.db import transaction
from receiver.store.models import ObservationRecord, UserRecord, VerificationSession, utcnow
from receiver.store.sessions import session_row
from reconciler.api.auth import require_role

bp = Blueprint("api", __name__, url_prefix="/api/v1")
READERS = ("backend", "operator", "auditor")
MAX_REF_LENGTH = 128


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def session_json(row: VerificationSession) -> dict[str, Any]:
    """A session as the API shows it."""
    return {
        "provider": row.provider,
        "session_id": row.session_id,
        "user_ref": row.user_ref,
        "status": row.status,
        "decided_by": row.decided_by,
        "status_observed_at": _iso(row.status_observed_at),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "next_check_at": _iso(row.next_check_at),
        "overdue": row.overdue,
    }


def history_json(row: ObservationRecord) -> dict[str, Any]:
    """One observation of a session's history (no PII: details stay encrypted)."""
    import json

    return {
        "status": row.status,
        "decided_by": row.decided_by,
        "occurred_at": _iso(row.occurred_at),
        "source": row.source,
        "provider_status": row.provider_status,
        "reasons": json.loads(row.reasons),
        "event_id": row.event_id,
        "disposition": row.disposition,
        "recorded_at": _iso(row.recorded_at),
    }


@bp.get("/users/<user_ref>")
@require_role(*READERS)
def get_user(user_ref: str):  # type: ignore[no-untyped-def]
    """A user's verification status and sessions; 404 with status unknown if never seen."""
    with transaction(get_services().engine) as session:
        record = session.get(UserRecord, user_ref)
        sessions = list(
            session.execute(
                select(VerificationSession)
                .where(VerificationSession.user_ref == user_ref)
                .order_by(VerificationSession.id)
            ).scalars()
        )
    if record is None:
        body = {
            "user_ref": user_ref,
            "status": "unknown",
            "decided_by": None,
            "provider": None,
            "session_id": None,
            "updated_at": None,
            "verified_at": None,
            "sessions": [session_json(s) for s in sessions],
        }
        return jsonify(body), 404
    return jsonify(
        {
            "user_ref": record.user_ref,
            "status": record.status,
            "decided_by": record.decided_by,
            "provider": record.provider,
            "session_id": record.session_id,
            "updated_at": _iso(record.updated_at),
            "verified_at": _iso(record.verified_at),
            "sessions": [session_json(s) for s in sessions],
        }
    )


@bp.get("/sessions/<provider>/<session_id>")
@require_role(*READERS)
def get_session(provider: str, session_id: str):  # type: ignore[no-untyped-def]
    """A session, its status and its whole history."""
    with transaction(get_services().engine) as session:
        row = session_row(session, provider, session_id)
        if row is None:
            return jsonify({"error": "unknown session"}), 404
        history = list(
            session.execute(
                select(ObservationRecord)
                .where(ObservationRecord.session_pk == row.id)
                .order_by(ObservationRecord.occurred_at, ObservationRecord.id)
            ).scalars()
        )
    return jsonify({**session_json(row), "history": [history_json(h) for h in history]})


def _bad(message: str, status: int = 400):  # type: ignore[no-untyped-def]
    return jsonify({"error": message}), status


@bp.post("/sessions")
@require_role("backend")
def post_session():  # type: ignore[no-untyped-def]
    """Create a session at the provider (`{provider, user_ref, options?}`) or register one
    created elsewhere (`{provider, session_id, user_ref}`)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _bad("expected a JSON object")
    provider, session_id, user_ref = (body.get(k) for k in ("provider", "session_id", "user_ref"))
    if provider not in REGISTRY:
        return _bad(f"unknown provider; one of {', '.join(sorted(REGISTRY))}")
    checks = [("user_ref", user_ref)] + (
        [("session_id", session_id)] if "session_id" in body else []
    )
    for name, value in checks:
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_REF_LENGTH:
            return _bad(f"{name} must be a non-empty string of at most {MAX_REF_LENGTH} characters")
    if "session_id" in body:
        return _register(provider, session_id, user_ref)
    options = body.get("options", {})
    if not isinstance(options, dict):
        return _bad("options must be a JSON object")
    return _create(provider, user_ref, options)


def _create(provider: str, user_ref: str, options: dict[str, Any]):  # type: ignore[no-untyped-def]
    from receiver.providers.http import ProviderRejected, ProviderUnavailable
    from reconciler.session_queries import create_session

    services = get_services()
    if not services.providers[provider].is_enabled():
        return _bad(f"provider {provider} is not configured", 404)
    try:
        row, start_url = create_session(services, provider, user_ref, options)
    except (ProviderUnavailable, ProviderRejected) as exc:
        return _bad(f"the provider did not create the session ({type(exc).__name__})", 502)
    return jsonify(
        {"provider": provider, "session_id": row.session_id, "start_url": start_url}
    ), 201


def _register(provider: str, session_id: str, user_ref: str):  # type: ignore[no-untyped-def]
    with transaction(get_services().engine) as session:
        row = session_row(session, provider, session_id)
        if row is not None and row.user_ref not in (None, user_ref):
            return _bad("session is registered to another user", 409)
        created = row is None
        row = row or VerificationSession(provider=provider, session_id=session_id)
        row.user_ref, row.updated_at = user_ref, utcnow()
        session.add(row)
        session.flush()
        answer = session_json(row)
    return jsonify(answer), 201 if created else 200
