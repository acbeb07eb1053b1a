"""API views: users, sessions (read and register)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import select
from sqlmodel import col

from receiver.request_rules import ViewResult
from receiver.services import get_services
from receiver.store.db import transaction
from receiver.store.events import fill_user_refs
from receiver.store.models import ObservationRecord, UserRecord, VerificationSession, utcnow
from receiver.store.read_models import HistoryItem, Session
from receiver.store.sessions import session_row
from reconciler.api.auth import require_role
from reconciler.api.schemas.common import Error
from reconciler.api.schemas.sessions import NewSession, SessionDetail, SessionMade, User
from reconciler.api.spec import answers, bearer, spec

bp = Blueprint("api", __name__, url_prefix="/api/v1")
READERS = ("backend", "operator", "auditor")


def session_json(row: VerificationSession) -> dict[str, Any]:
    """A session as the API shows it."""
    return Session.from_row(row).answer()


def history_json(row: ObservationRecord) -> dict[str, Any]:
    """One observation of a session's history (no PII: details stay encrypted)."""
    return HistoryItem.from_row(row).answer()


@bp.get("/users/<ref:user_ref>")
@require_role(*READERS)
@spec.validate(
    resp=answers(
        guarded=True,
        HTTP_200=(User, "The user"),
        HTTP_404=(User, "Never seen: status `unknown`"),
    ),
    tags=["users"],
    security=bearer(*READERS),
    path_parameter_descriptions={"user_ref": "the product's user reference"},
)
def get_user(user_ref: str) -> ViewResult:
    """A user's verification status and sessions

    404 with status `unknown` when the user was never seen.
    """
    with transaction(get_services().engine) as db:
        record = db.get(UserRecord, user_ref)
        sessions = list(
            db.execute(
                select(VerificationSession)
                .where(col(VerificationSession.user_ref) == user_ref)
                .order_by(col(VerificationSession.id))
            ).scalars()
        )
    if record is None:
        return jsonify(User.unknown(user_ref, sessions).answer()), 404
    return jsonify(User.from_row(record, sessions=sessions).answer())


@bp.get("/sessions/<provider>/<ref:session_id>")
@require_role(*READERS)
@spec.validate(
    resp=answers(
        guarded=True,
        HTTP_200=(SessionDetail, "The session"),
        HTTP_404=(Error, "Unknown session"),
    ),
    tags=["sessions"],
    security=bearer(*READERS),
    path_parameter_descriptions={
        "provider": "provider name",
        "session_id": "the provider's session id",
    },
)
def get_session(provider: str, session_id: str) -> ViewResult:
    """A session, its status and its whole history"""
    with transaction(get_services().engine) as db:
        row = session_row(db, provider, session_id)
        if row is None:
            return jsonify({"error": "unknown session"}), 404
        history = list(
            db.execute(
                select(ObservationRecord)
                .where(col(ObservationRecord.session_pk) == row.id)
                .order_by(col(ObservationRecord.occurred_at), col(ObservationRecord.id))
            ).scalars()
        )
    return jsonify(SessionDetail.from_row(row, history=history).answer())


def _bad(message: str, status: int = 400) -> ViewResult:
    return jsonify({"error": message}), status


@bp.post("/sessions")
@require_role("backend")
@spec.validate(
    json=NewSession,
    resp=answers(
        guarded=True,
        HTTP_200=(Session, "Already registered to this user"),
        HTTP_201=(SessionMade, "Created at the provider, or registered"),
        HTTP_404=(Error, "Provider not configured"),
        HTTP_409=(Error, "Registered to another user"),
        HTTP_502=(Error, "The provider did not create the session"),
        HTTP_503=(
            Error,
            "The database is unavailable: retry after `Retry-After` seconds (checked before"
            " the provider is called)",
        ),
    ),
    tags=["sessions"],
    security=bearer("backend"),
)
def post_session(json: NewSession) -> ViewResult:
    """Create a session at a provider, or register one created elsewhere

    `{provider, user_ref, options?}` creates the session at the provider;
    `{provider, session_id, user_ref}` registers one created elsewhere.
    """
    if "session_id" in json.model_fields_set:
        return _register(json.provider, json.session_id, json.user_ref)
    return _create(json.provider, json.user_ref, json.options)


def _create(provider: str, user_ref: str, options: dict[str, Any]) -> ViewResult:
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


def _register(provider: str, session_id: str, user_ref: str) -> ViewResult:
    with transaction(get_services().engine) as db:
        row = session_row(db, provider, session_id)
        if row is not None and row.user_ref not in (None, user_ref):
            return _bad("session is registered to another user", 409)
        created = row is None
        row = row or VerificationSession(provider=provider, session_id=session_id)
        row.user_ref, row.updated_at = user_ref, utcnow()
        db.add(row)
        db.flush()
        fill_user_refs(db, {(provider, session_id): user_ref})  # events that came first
        answer = session_json(row)
    return jsonify(answer), 201 if created else 200
