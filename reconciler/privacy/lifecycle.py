"""PII lifecycle: re-encrypt to the newest key, purge after retention, erase one person.

Every stored field that can hold PII is a sealed blob with its key id: an event's raw delivery
(`inbound_events.payload_blob`) and an observation's details (`observations.details_blob`).
Statuses, sessions and the audit chain hold no PII beyond user refs, so they are kept.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Table, delete, func, select, update
from sqlmodel import col

from receiver.services import Services
from receiver.store.audit_models import AuditEntry
from receiver.store.crypto import Sealed
from receiver.store.db import checkpoint_wal, transaction
from receiver.store.events import payload_aad
from receiver.store.models import (
    InboundEvent,
    ObservationRecord,
    UserRecord,
    VerificationSession,
    table_of,
    utcnow,
)
from receiver.store.notification_models import Notification
from reconciler.audit.chain import AuditDraft, append_audit

log = logging.getLogger(__name__)

Progress = Callable[[int], None]

_EVENTS: Table = table_of(InboundEvent)
_OBSERVATIONS: Table = table_of(ObservationRecord)


def _event_aad(row: Row[Any]) -> bytes:
    return payload_aad(row.provider, row.dedupe_key)


def _observation_aad(row: Row[Any]) -> bytes:
    return f"observation:{row.session_pk}:{row.observation_key}".encode()


SEALED_COLUMNS = (
    (_EVENTS, "payload_blob", ("provider", "dedupe_key"), _event_aad),
    (_OBSERVATIONS, "details_blob", ("session_pk", "observation_key"), _observation_aad),
)
"""Every sealed column: its table, the blob column, the AAD's columns, and how to build the AAD."""


@dataclass
class RotationStats:
    """Rows re-encrypted per table."""

    rotated: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All rows re-encrypted."""
        return sum(self.rotated.values())


def rows_to_rotate(services: Services) -> int:
    """How many sealed rows are not under the newest key yet."""
    current = services.keyring.current_key_id
    with transaction(services.engine) as db:
        return sum(
            db.execute(
                select(func.count())
                .select_from(table)
                .where(table.c[blob].is_not(None), table.c.key_id != current)
            ).scalar_one()
            for table, blob, _, _ in SEALED_COLUMNS
        )


def rotate_keys(
    services: Services, *, batch: int = 500, progress: Progress | None = None
) -> RotationStats:
    """Re-encrypt every sealed row to the newest key, a committed batch at a time.

    Resumable by construction: a rotated row carries the new key id and is not selected again.
    A row that cannot be decrypted stops the run with a DecryptionError naming its key id.
    """
    keyring, current = services.keyring, services.keyring.current_key_id
    stats = RotationStats()
    for table, blob, aad_columns, aad in SEALED_COLUMNS:
        stats.rotated[table.name] = 0
        while True:
            with transaction(services.engine) as db:
                conn = db.connection()
                rows = conn.execute(
                    select(
                        table.c.id,
                        table.c.key_id,
                        table.c[blob],
                        *[table.c[c] for c in aad_columns],
                    )
                    .where(table.c[blob].is_not(None), table.c.key_id != current)
                    .order_by(table.c.id)
                    .limit(batch)
                ).all()
                for row in rows:
                    plain = keyring.open(Sealed(row.key_id, row[2]), aad=aad(row))
                    sealed = keyring.seal(plain, aad=aad(row))
                    conn.execute(
                        update(table)
                        .where(table.c.id == row.id)
                        .values({blob: sealed.blob, "key_id": sealed.key_id})
                    )
            if not rows:
                break
            stats.rotated[table.name] += len(rows)
            if progress:
                progress(len(rows))
    return stats


@dataclass(frozen=True)
class PurgeStats:
    """What a purge removed (or would remove, in a dry run)."""

    cutoff: datetime
    event_payloads: int
    observation_details: int
    dry_run: bool


def purge_expired(
    services: Services, *, days: int, dry_run: bool = False, now: datetime | None = None
) -> PurgeStats:
    """Drop raw deliveries and PII details older than `days`; keep statuses and the audit."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    event_filter = (_EVENTS.c.received_at < cutoff, _EVENTS.c.payload_blob.is_not(None))
    obs_filter = (_OBSERVATIONS.c.recorded_at < cutoff, _OBSERVATIONS.c.details_blob.is_not(None))
    with transaction(services.engine) as db:
        conn = db.connection()
        if dry_run:
            events = conn.execute(
                select(func.count()).select_from(_EVENTS).where(*event_filter)
            ).scalar_one()
            details = conn.execute(
                select(func.count()).select_from(_OBSERVATIONS).where(*obs_filter)
            ).scalar_one()
        else:
            events = conn.execute(
                update(_EVENTS)
                .where(*event_filter)
                .values(payload_blob=None, key_id=None, purged_at=utcnow())
            ).rowcount
            details = conn.execute(
                update(_OBSERVATIONS).where(*obs_filter).values(details_blob=None, key_id=None)
            ).rowcount
    if not dry_run and (events or details):
        _leave_no_copy(services)
    return PurgeStats(
        cutoff=cutoff, event_payloads=events, observation_details=details, dry_run=dry_run
    )


def _leave_no_copy(services: Services) -> None:
    """After an erasure or a purge: on SQLite, no copy of the old values in the write-ahead
    log (the database's freed space is zeroed as it is freed: `secure_delete`)."""
    if not checkpoint_wal(services.engine):
        log.warning(
            "SQLite write-ahead log busy: erased values stay in it until the next checkpoint"
        )


def pseudonym(user_ref: str) -> str:
    """What replaces an erased user's ref: stable, not reversible without the ref."""
    return "erased:" + hashlib.sha256(user_ref.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ErasureStats:
    """What erasing one person touched."""

    user_ref_digest: str
    events: int
    observations: int
    sessions: int
    notifications: int
    audit_entries: int


def forget_user(services: Services, user_ref: str, *, actor: str) -> ErasureStats:
    """Erase one person: shred their raw deliveries and details, pseudonymise their refs,
    delete their notifications, blank their ref in the audit (the chain covers only its digest),
    and record the erasure in the audit history. Statuses stay, under the pseudonym. On SQLite
    the write-ahead log is then checkpointed and truncated: no old page keeps the ref."""
    alias = pseudonym(user_ref)
    with transaction(services.engine) as db:
        conn = db.connection()
        sessions, observations, session_ids = _erase_sessions(conn, user_ref, alias)
        events = _shred_events(conn, user_ref, alias, session_ids)
        _replace_ref_used_as_session_id(conn, user_ref, alias)
        notifications = conn.execute(
            delete(Notification).where(col(Notification.user_ref) == user_ref)
        ).rowcount
        audit = conn.execute(
            update(AuditEntry).where(col(AuditEntry.user_ref) == user_ref).values(user_ref=None)
        ).rowcount
        conn.execute(delete(UserRecord).where(col(UserRecord.user_ref) == user_ref))
        append_audit(db, [_erasure_entry(actor, alias)])
    _leave_no_copy(services)
    return ErasureStats(
        user_ref_digest=alias,
        events=events,
        observations=observations,
        sessions=sessions,
        notifications=notifications,
        audit_entries=audit,
    )


def _erase_sessions(
    conn: Connection, user_ref: str, alias: str
) -> tuple[int, int, Sequence[Row[str, str]]]:
    """Put `alias` for `user_ref` on their sessions and drop their observations' details: the
    counts of both, and the sessions' (provider, session id)."""
    session_pks = list(
        conn.execute(
            select(col(VerificationSession.id)).where(col(VerificationSession.user_ref) == user_ref)
        ).scalars()
    )
    sessions = conn.execute(
        update(VerificationSession)
        .where(col(VerificationSession.user_ref) == user_ref)
        .values(user_ref=alias)
    ).rowcount
    if not session_pks:
        return sessions, 0, []
    observations = conn.execute(
        update(_OBSERVATIONS)
        .where(_OBSERVATIONS.c.session_pk.in_(session_pks))
        .values(details_blob=None, key_id=None)
    ).rowcount
    session_ids = conn.execute(
        select(col(VerificationSession.provider), col(VerificationSession.session_id)).where(
            col(VerificationSession.id).in_(session_pks)
        )
    ).all()
    return sessions, observations, session_ids


def _replace_ref_used_as_session_id(conn: Connection, user_ref: str, alias: str) -> None:
    """Where the ref was a session id too: `alias` on sessions and events, none in the audit."""
    conn.execute(
        update(VerificationSession)
        .where(col(VerificationSession.session_id) == user_ref)
        .values(session_id=alias)
    )
    conn.execute(update(_EVENTS).where(_EVENTS.c.session_id == user_ref).values(session_id=alias))
    conn.execute(
        update(AuditEntry).where(col(AuditEntry.session_id) == user_ref).values(session_id=None)
    )


def _erasure_entry(actor: str, alias: str) -> AuditDraft:
    """The audit entry recording an erasure (naming only the pseudonym)."""
    return AuditDraft(
        actor=actor,
        source="operator",
        subject="user",
        provider=None,
        session_id=None,
        user_ref=None,
        previous_status=None,
        new_status=None,
        decided_by=None,
        event_id=None,
        reason=f"erased personal data of {alias}",
    )


def _shred_events(
    conn: Connection, user_ref: str, alias: str, session_ids: Sequence[Row[str, str]]
) -> int:
    """Shred the raw deliveries of the person's events (by user ref or by their sessions)."""
    touched: int = conn.execute(
        update(_EVENTS)
        .where(_EVENTS.c.user_ref == user_ref)
        .values(user_ref=alias, payload_blob=None, key_id=None, purged_at=utcnow())
    ).rowcount
    for provider, session_id in session_ids:
        touched += conn.execute(
            update(_EVENTS)
            .where(
                _EVENTS.c.provider == provider,
                _EVENTS.c.session_id == session_id,
                _EVENTS.c.payload_blob.is_not(None),
            )
            .values(payload_blob=None, key_id=None, purged_at=utcnow())
        ).rowcount
    return touched
