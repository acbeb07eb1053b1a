"""Data functions for verification sessions: get-or-create and lock them in a fixed order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, or_, select, update
from sqlmodel import Session

from receiver.store import dialects
from receiver.store.events import fill_user_refs
from receiver.store.models import VerificationSession, table_of, utcnow

SessionKey = tuple[str, str]
_TABLE = table_of(VerificationSession)


@dataclass(slots=True)
class SessionRow:
    """A locked session as plain data; the apply path changes it, `write_sessions` saves it.

    The columns of the table model that the apply path reads, by the same names (a field that
    is not a column fails at import); all but the identity (`_IDENTITY`) are written back."""

    id: int
    provider: str
    session_id: str
    user_ref: str | None
    status: str
    decided_by: str
    status_observed_at: datetime | None
    current_observation_key: str | None
    last_event_id: int | None
    last_source: str | None
    last_reason: str | None
    created_at: datetime
    updated_at: datetime
    next_check_at: datetime | None
    poll_attempts: int
    overdue: bool
    settled: bool


_SELECTED = [_TABLE.c[f.name] for f in fields(SessionRow)]
_IDENTITY = ("id", "provider", "session_id", "created_at")
"""What names a session: never changed by the apply path."""
_WRITABLE = tuple(c.name for c in _SELECTED if c.name not in _IDENTITY)
_WRITE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("_id"))
    .values({name: bindparam(name) for name in _WRITABLE})
)


def write_sessions(db: Session, rows: list[SessionRow]) -> None:
    """Save the apply path's changes to locked sessions (one executemany)."""
    if rows:
        db.connection().execute(
            _WRITE,
            [{"_id": row.id, **{name: getattr(row, name) for name in _WRITABLE}} for row in rows],
        )


def lock_sessions(db: Session, refs: dict[SessionKey, str | None]) -> dict[SessionKey, SessionRow]:
    """Create missing sessions (provider, session id, user ref) and lock the ones that are free.

    On PostgreSQL a session locked by another worker's batch is skipped (SKIP LOCKED), not waited
    for: the caller leaves its events for the next batch. Rows are locked in (provider,
    session_id) order. A new session's other columns take the table model's defaults.
    """
    if not refs:
        return {}
    now = utcnow()
    rows = [
        {"provider": p, "session_id": s, "user_ref": u, "created_at": now, "updated_at": now}
        for (p, s), u in sorted(refs.items())
    ]
    db.connection().execute(
        dialects.insert(db, _TABLE).on_conflict_do_nothing(
            index_elements=["provider", "session_id"]
        ),
        rows,
    )
    found = {}
    for values in db.connection().execute(lock_query(refs, db)):
        row = SessionRow(*values)
        found[(row.provider, row.session_id)] = row
    learned = {}
    for key, user_ref in refs.items():
        locked = found.get(key)
        if locked is not None and locked.user_ref is None and user_ref:
            locked.user_ref = learned[key] = user_ref
    fill_user_refs(db, learned)  # the session's earlier events carry its user ref too
    return found


_KEY = ("provider", "session_id")


def lock_query(refs: Iterable[SessionKey], bind: dialects.Bind) -> Select[Any]:
    """The select that locks these sessions (free ones only), in key order."""
    source, condition = dialects.pairs_match(bind, _TABLE, _KEY, refs)
    return (
        select(*_SELECTED)
        .select_from(source)
        .where(condition)
        .order_by(_TABLE.c.provider, _TABLE.c.session_id)
        .with_for_update(skip_locked=True, of=_TABLE)
    )


def existing_sessions(db: Session, keys: Iterable[SessionKey]) -> set[SessionKey]:
    """Which of these (provider, session id) pairs are known sessions (no lock taken)."""
    wanted = set(keys)
    if not wanted:
        return set()
    source, condition = dialects.pairs_match(db, _TABLE, _KEY, wanted)
    query = select(_TABLE.c.provider, _TABLE.c.session_id).select_from(source).where(condition)
    return {(p, s) for p, s in db.connection().execute(query)}


RECENT_WINDOW = timedelta(minutes=30)
RECENT_LIMIT = 10
"""A redirect that names no session polls at most this many of the provider's sessions started
within the window (the newest first), so a stranger's redirects cannot make polls without end."""


def hurry_recent_sessions(db: Session, provider: str) -> set[int]:
    """Make the provider's recently started, unsettled sessions due now; return their ids
    (the caller's own locked rows among them must be made due too, or saving them undoes it).

    Sessions another worker holds are skipped (never waited for: this runs while the caller
    holds its own batch's sessions)."""
    now = utcnow()
    query = (
        select(_TABLE.c.id)
        .where(
            _TABLE.c.provider == provider,
            _TABLE.c.settled.is_(False),
            _TABLE.c.created_at >= now - RECENT_WINDOW,
            or_(_TABLE.c.next_check_at.is_(None), _TABLE.c.next_check_at > now),
        )
        .order_by(_TABLE.c.created_at.desc())
        .limit(RECENT_LIMIT)
        .with_for_update(skip_locked=True)
    )
    ids = list(db.connection().execute(query).scalars())
    if ids:
        db.connection().execute(
            update(_TABLE).where(_TABLE.c.id.in_(ids)).values(next_check_at=now)
        )
    return set(ids)
