"""The append-only, hash-chained audit history: append entries, verify the chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import insert, select, update
from sqlmodel import Session, col

from receiver.canonical import utc
from receiver.store import dialects
from receiver.store.audit_models import AuditEntry, AuditHead
from receiver.store.models import table_of, utcnow

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first entry."""


@dataclass(frozen=True)
class AuditDraft:
    """An audit entry before it takes its place in the chain."""

    actor: str
    source: str
    subject: str
    provider: str | None
    session_id: str | None
    user_ref: str | None
    previous_status: str | None
    new_status: str | None
    decided_by: str | None
    event_id: int | None
    reason: str = ""


def user_digest(user_ref: str | None) -> str | None:
    """What the chain covers instead of a user ref (or a session id)."""
    return hashlib.sha256(user_ref.encode()).hexdigest() if user_ref else None


def hashed_fields(entry: AuditEntry | SimpleNamespace) -> dict[str, object]:
    """The fields an entry's hash covers (all but id, user_ref, session_id and the hash)."""
    return {
        "seq": entry.seq,
        "at": utc(entry.at).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "source": entry.source,
        "subject": entry.subject,
        "provider": entry.provider,
        "session_digest": entry.session_digest,
        "user_digest": entry.user_digest,
        "previous_status": entry.previous_status,
        "new_status": entry.new_status,
        "decided_by": entry.decided_by,
        "event_id": entry.event_id,
        "reason": entry.reason,
    }


def entry_hash(prev_hash: str, fields: dict[str, object]) -> str:
    """sha256 over the previous hash and the canonical JSON of the fields."""
    material = prev_hash + json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


_HEAD = table_of(AuditHead)
_ENTRIES = table_of(AuditEntry)
_ENTRY_COLUMNS = [c for c in AuditEntry.model_fields if c != "id"]


def _lock_head(db: Session) -> tuple[int, str]:
    """Lock the chain head (creating it on first use); return its seq and hash."""
    conn = db.connection()
    conn.execute(
        dialects.insert(conn, _HEAD)
        .values(id=1, seq=0, entry_hash=GENESIS_HASH)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    query = select(_HEAD.c.seq, _HEAD.c.entry_hash).where(_HEAD.c.id == 1).with_for_update()
    seq, head_hash = conn.execute(query).one()
    return seq, head_hash


def append_audit(
    db: Session, drafts: Iterable[AuditDraft], at: datetime | None = None
) -> list[SimpleNamespace]:
    """Append drafts to the chain inside the caller's transaction (locks the chain head).

    Call it last in a transaction: the head lock is held until commit. Returns the new entries
    (attribute access, like AuditEntry rows).
    """
    drafts = list(drafts)
    if not drafts:
        return []
    seq, head_hash = _lock_head(db)
    at = at or utcnow()
    entries = []
    for draft in drafts:
        seq += 1
        entry = SimpleNamespace(
            seq=seq,
            at=at,
            prev_hash=head_hash,
            entry_hash="",
            user_digest=user_digest(draft.user_ref),
            session_digest=user_digest(draft.session_id),
            **vars(draft),
        )
        entry.entry_hash = head_hash = entry_hash(entry.prev_hash, hashed_fields(entry))
        entries.append(entry)
    conn = db.connection()
    conn.execute(insert(_ENTRIES), [{c: getattr(e, c) for c in _ENTRY_COLUMNS} for e in entries])
    conn.execute(update(_HEAD).where(_HEAD.c.id == 1).values(seq=seq, entry_hash=head_hash))
    return entries


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain."""

    ok: bool
    entries: int
    head: str
    first_bad: int | None = None
    problem: str | None = None


def verify_entries(
    entries: Iterator[AuditEntry],
    head: AuditHead | None,
    *,
    after: tuple[int, str] = (0, GENESIS_HASH),
) -> ChainReport:
    """Walk entries in seq order; report the first one that does not chain (pure).

    `after` is (seq, hash) of the entry the walk continues from (the genesis by default); the
    report's `entries` counts the chain up to the last entry walked.
    """
    last_seq, prev = after
    expected_seq, count = last_seq + 1, last_seq
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(False, count, prev, entry.seq, f"expected seq {expected_seq}")
        if entry.prev_hash != prev:
            return ChainReport(False, count, prev, entry.seq, "prev_hash does not match")
        if entry_hash(prev, hashed_fields(entry)) != entry.entry_hash:
            return ChainReport(False, count, prev, entry.seq, "content does not match its hash")
        if entry.user_ref is not None and user_digest(entry.user_ref) != entry.user_digest:
            return ChainReport(False, count, prev, entry.seq, "user_ref does not match its digest")
        if entry.session_id is not None and user_digest(entry.session_id) != entry.session_digest:
            return ChainReport(
                False, count, prev, entry.seq, "session_id does not match its digest"
            )
        prev, expected_seq = entry.entry_hash, expected_seq + 1
    if head is not None and (head.seq != count or head.entry_hash != prev):
        return ChainReport(
            False,
            count,
            prev,
            count + 1 if head.seq > count else head.seq,
            "entries missing after the last one (head is further on)",
        )
    return ChainReport(True, count, prev)


def verify_chain(
    db: Session, batch: int = 1000, *, after: tuple[int, str] | None = None
) -> ChainReport:
    """Verify the stored chain, streaming it in seq order, against its head row.

    With `after` = (seq, hash) of an entry an earlier verification passed, only that entry (its
    hash unchanged, its content matching it) and the entries after it are checked (an
    incremental verification).
    """
    head = db.get(AuditHead, 1)
    start = after or (0, GENESIS_HASH)
    if start[0] > 0:  # walk again from the anchor itself: its hash and its content
        anchor = db.execute(select(AuditEntry).where(col(AuditEntry.seq) == start[0])).scalar()
        if anchor is None or anchor.entry_hash != start[1]:
            return ChainReport(False, start[0], start[1], start[0], "a verified entry changed")
        start = (start[0] - 1, anchor.prev_hash)
    result = db.execute(
        select(AuditEntry)
        .where(col(AuditEntry.seq) > start[0])
        .order_by(col(AuditEntry.seq))
        .execution_options(yield_per=batch)
    )
    try:
        report = verify_entries(iter(result.scalars()), head, after=start)
    finally:
        result.close()  # an early verdict leaves PostgreSQL's server-side cursor open
    if report.ok and head is None and report.entries:
        return ChainReport(
            False, report.entries, report.head, None, "the audit head row is missing"
        )
    return report
