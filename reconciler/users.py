"""Data functions for user records: recompute them from their sessions by the user rule."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, bindparam, insert, select, update
from sqlmodel import Session

from receiver.canonical import DecidedBy, Status, utc
from receiver.store import dialects
from receiver.store.models import UserRecord, VerificationSession, table_of, utcnow
from receiver.store.notification_models import Notification
from reconciler.audit.chain import AuditDraft
from reconciler.ordering import SessionStatus, UserStatus, user_status

NOTIFICATION_TYPE = "verification.user_status.changed"


def session_statuses(rows: Iterable[VerificationSession]) -> list[SessionStatus]:
    """The current status of each session that has heard anything."""
    return [
        SessionStatus(
            provider=r.provider,
            session_id=r.session_id,
            status=Status(r.status),
            decided_by=DecidedBy(r.decided_by),
            observed_at=utc(r.status_observed_at),
            observation_key=r.current_observation_key,
        )
        for r in rows
        if r.current_observation_key and r.status_observed_at
    ]


def refresh_users(
    db: Session,
    user_refs: Iterable[str],
    *,
    actor: str,
    replay: bool = False,
    notify: bool = True,
) -> list[AuditDraft]:
    """Recompute each user's record; return audit drafts and queue notifications for changes."""
    refs = sorted(set(user_refs))
    if not refs:
        return []
    conn = db.connection()
    by_user: dict[str, list[Any]] = {}  # table rows, read like VerificationSession
    for row in conn.execute(sessions_of_users(refs)):
        by_user.setdefault(row.user_ref or "", []).append(row)
    records, created = _lock_users(db, refs)
    drafts, changed, notifications = [], [], []
    now = utcnow()
    for user_ref in refs:
        rows = by_user.get(user_ref, [])
        derived = user_status(session_statuses(rows))
        if derived is None:
            continue
        record = records[user_ref]
        before = (None, None) if user_ref in created else (record["status"], record["decided_by"])
        after = (derived.status.value, derived.decided_by.value)
        record.update(
            status=after[0],
            decided_by=after[1],
            provider=derived.provider,
            session_id=derived.session_id,
            verified_at=derived.verified_at,
        )
        if before == after:
            changed.append(record)  # provider/session/verified_at may still move
            continue
        record["updated_at"] = now
        changed.append(record)
        drafts.append(_user_change(rows, derived, user_ref, before[0], actor=actor, replay=replay))
        if notify:
            notifications.append(_notification(record, before[0]))
    if changed:
        conn.execute(
            _WRITE_USER,
            [{"_ref": r["user_ref"], **{k: r[k] for k in _USER_FIELDS}} for r in changed],
        )
    if notifications:
        conn.execute(insert(_NOTIFICATIONS), notifications)
    return drafts


_SESSIONS = table_of(VerificationSession)
_USERS = table_of(UserRecord)
_NOTIFICATIONS = table_of(Notification)
_USER_FIELDS = ("status", "decided_by", "provider", "session_id", "verified_at", "updated_at")
_WRITE_USER = (
    update(_USERS)
    .where(_USERS.c.user_ref == bindparam("_ref"))
    .values({k: bindparam(k) for k in _USER_FIELDS})
)


def sessions_of_users(refs: list[str]) -> Select[Any]:
    """Every session of these users."""
    return select(_SESSIONS).where(_SESSIONS.c.user_ref.in_(refs))


def _lock_users(db: Session, refs: list[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Insert missing user rows, then lock all of them in order; also return the new ones."""
    conn = db.connection()
    now = utcnow()
    existing = set(
        conn.execute(select(_USERS.c.user_ref).where(_USERS.c.user_ref.in_(refs))).scalars()
    )
    created = set(refs) - existing
    if created:
        conn.execute(
            dialects.insert(conn, _USERS).on_conflict_do_nothing(index_elements=["user_ref"]),
            [{"user_ref": ref, "updated_at": now} for ref in sorted(created)],  # model defaults
        )
    query = (
        select(_USERS)
        .where(_USERS.c.user_ref.in_(refs))
        .order_by(_USERS.c.user_ref)
        .with_for_update()
    )
    return {r.user_ref: dict(r._mapping) for r in conn.execute(query)}, created


def _notification(record: dict[str, Any], previous: str | None) -> dict[str, object]:
    """A notification row for a user's status change (Standard Webhooks payload)."""
    verified_at = record["verified_at"]
    payload = {
        "type": NOTIFICATION_TYPE,
        "timestamp": utcnow().isoformat(),
        "data": {
            "user_ref": record["user_ref"],
            "status": record["status"],
            "previous_status": previous,
            "decided_by": record["decided_by"],
            "provider": record["provider"],
            "session_id": record["session_id"],
            "verified_at": verified_at.isoformat() if verified_at else None,
        },
    }
    now = utcnow()
    return {
        "webhook_id": f"msg_{uuid.uuid4().hex}",
        "user_ref": record["user_ref"],
        "payload": json.dumps(payload, separators=(",", ":")),
        "state": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


def _user_change(
    rows: list[Any],
    derived: UserStatus,
    user_ref: str,
    previous: str | None,
    *,
    actor: str,
    replay: bool,
) -> AuditDraft:
    """The audit draft of a user's new status, naming the session (among `rows`) that decided
    it and the source of that session's last event."""
    deciding = next(
        r for r in rows if (r.provider, r.session_id) == (derived.provider, derived.session_id)
    )
    return AuditDraft(
        actor=actor,
        source="replay" if replay else (deciding.last_source or "webhook"),
        subject="user",
        provider=derived.provider,
        session_id=derived.session_id,
        user_ref=user_ref,
        previous_status=previous,
        new_status=derived.status.value,
        decided_by=derived.decided_by.value,
        event_id=deciding.last_event_id,
        reason="user rule",
    )
