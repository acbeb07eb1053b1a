"""Stored inbound events: the associated data that binds a payload to its row, decrypting it,
and giving a session's events its user ref once known. Events are inserted by
receiver/store/event_batches.py only."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import Session

from receiver.store.crypto import Keyring, Sealed
from receiver.store.models import InboundEvent, table_of


def payload_aad(provider: str, dedupe_key: str) -> bytes:
    """Associated data binding an event's ciphertext to its row identity."""
    return f"inbound_event:{provider}:{dedupe_key}".encode()


def open_payload(event: InboundEvent, *, keyring: Keyring) -> dict[str, Any]:
    """Decrypt an event's stored delivery record."""
    if event.payload_blob is None or event.key_id is None:
        raise LookupError(f"event {event.id} has no stored payload (purged)")
    plaintext = keyring.open(
        Sealed(event.key_id, event.payload_blob), aad=payload_aad(event.provider, event.dedupe_key)
    )
    record: dict[str, Any] = json.loads(plaintext)
    return record


_EVENTS = table_of(InboundEvent)
_FILL_USER_REF = (
    update(_EVENTS)
    .where(
        _EVENTS.c.provider == bindparam("p"),
        _EVENTS.c.session_id == bindparam("s"),
        _EVENTS.c.user_ref.is_(None),
    )
    .values(user_ref=bindparam("u"))
)


def fill_user_refs(db: Session, refs: dict[tuple[str, str], str]) -> None:
    """Give the stored events of these (provider, session id) pairs that carry no user ref the
    session's: a session's user ref can become known after its first events arrived (the backend
    registers it later), and every user filter must find them then."""
    if refs:
        db.connection().execute(
            _FILL_USER_REF, [{"p": p, "s": s, "u": u} for (p, s), u in sorted(refs.items())]
        )
