"""Data functions for inbound events and their outbox rows. The caller owns the transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from receiver.store.crypto import Keyring, Sealed
from receiver.store.models import EventState, InboundEvent, OutboxEntry, utcnow


@dataclass(frozen=True)
class NewEvent:
    """An authenticated delivery ready to be stored."""

    provider: str
    dedupe_key: str
    kind: str
    record: dict[str, Any]
    received_at: datetime
    notification: str | None = None
    session_id: str | None = None
    user_ref: str | None = None
    parse_error: str | None = None


def payload_aad(provider: str, dedupe_key: str) -> bytes:
    """Associated data binding an event's ciphertext to its row identity."""
    return f"inbound_event:{provider}:{dedupe_key}".encode()


def _insert_ignoring_duplicates(session: Session, values: dict[str, Any]) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id; None when the row already existed."""
    dialect = session.get_bind().dialect.name
    table = InboundEvent.__table__  # type: ignore[attr-defined]
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = (
        module.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "dedupe_key"])
        .returning(table.c.id)
    )
    return session.execute(stmt).scalar_one_or_none()


_EVENT_COLUMNS = (
    "provider",
    "dedupe_key",
    "kind",
    "notification",
    "state",
    "session_id",
    "user_ref",
    "received_at",
    "updated_at",
    "attempts",
    "parse_error",
    "key_id",
    "payload_blob",
)
_STORE_WITH_OUTBOX = text(f"""
WITH new_event AS (
    INSERT INTO inbound_events ({", ".join(_EVENT_COLUMNS)})
    VALUES ({", ".join(":" + c for c in _EVENT_COLUMNS)})
    ON CONFLICT (provider, dedupe_key) DO NOTHING
    RETURNING id
), new_outbox AS (
    INSERT INTO outbox (event_id, created_at, available_at, attempts)
    SELECT id, :updated_at, :updated_at, 0 FROM new_event WHERE :ready
    RETURNING event_id
)
SELECT id FROM new_event
""")
"""PostgreSQL: the event and its outbox row in one round trip (a data-modifying CTE)."""


def store_event(session: Session, event: NewEvent, *, keyring: Keyring) -> tuple[int, bool]:
    """Store an event (and its outbox row unless quarantined); return (id, created)."""
    sealed = keyring.seal(
        json.dumps(event.record).encode(), aad=payload_aad(event.provider, event.dedupe_key)
    )
    now = utcnow()
    state = EventState.QUARANTINED if event.parse_error else EventState.RECEIVED
    values = {
        "provider": event.provider,
        "dedupe_key": event.dedupe_key,
        "kind": event.kind,
        "notification": event.notification,
        "state": state.value,
        "session_id": event.session_id,
        "user_ref": event.user_ref,
        "received_at": event.received_at,
        "updated_at": now,
        "attempts": 0,
        "parse_error": event.parse_error,
        "key_id": sealed.key_id,
        "payload_blob": sealed.blob,
    }
    if session.get_bind().dialect.name == "postgresql":
        event_id = (
            session.connection()
            .execute(_STORE_WITH_OUTBOX, {**values, "ready": state is EventState.RECEIVED})
            .scalar_one_or_none()
        )
        if event_id is not None:
            return int(event_id), True
    else:
        event_id = _insert_ignoring_duplicates(session, values)
    if event_id is None:
        existing = session.execute(
            select(col(InboundEvent.id)).where(
                col(InboundEvent.provider) == event.provider,
                col(InboundEvent.dedupe_key) == event.dedupe_key,
            )
        ).scalar_one()
        return int(existing), False
    if state is EventState.RECEIVED:
        session.execute(
            insert(OutboxEntry).values(
                event_id=event_id, created_at=now, available_at=now, attempts=0
            )
        )
    return int(event_id), True


_EVENTS = InboundEvent.__table__  # type: ignore[attr-defined]
_FILL_USER_REF = (
    update(_EVENTS)
    .where(
        _EVENTS.c.provider == bindparam("p"),
        _EVENTS.c.session_id == bindparam("s"),
        _EVENTS.c.user_ref.is_(None),
    )
    .values(user_ref=bindparam("u"))
)


def fill_user_refs(session: Session, refs: dict[tuple[str, str], str]) -> None:
    """Give the stored events of these (provider, session id) pairs that carry no user ref the
    session's: a session's user ref can become known after its first events arrived (the backend
    registers it later), and every user filter must find them then."""
    if refs:
        session.connection().execute(
            _FILL_USER_REF, [{"p": p, "s": s, "u": u} for (p, s), u in sorted(refs.items())]
        )


def open_payload(event: InboundEvent, *, keyring: Keyring) -> dict[str, Any]:
    """Decrypt an event's stored delivery record."""
    if event.payload_blob is None or event.key_id is None:
        raise LookupError(f"event {event.id} has no stored payload (purged)")
    plaintext = keyring.open(
        Sealed(event.key_id, event.payload_blob), aad=payload_aad(event.provider, event.dedupe_key)
    )
    record: dict[str, Any] = json.loads(plaintext)
    return record
