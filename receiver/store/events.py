"""Reading stored inbound events: the associated data that binds a payload to its row, and
decrypting it. Events are written by receiver/store/event_batches.py only."""

from __future__ import annotations

import json
from typing import Any

from receiver.store.crypto import Keyring, Sealed
from receiver.store.models import InboundEvent


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
    return json.loads(plaintext)
