"""Data functions for verification sessions: get-or-create and lock them in a fixed order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, String, and_, bindparam, func, or_, select, true, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session

from receiver.store.events import fill_user_refs
from receiver.store.models import VerificationSession, utcnow

SessionKey = tuple[str, str]
_TABLE = VerificationSession.__table__  # type: ignore[attr-defined]


@dataclass(slots=True)
class SessionRow:
    """A locked session as plain data; the apply path changes it, `write_sessions` saves it."""

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


_COLUMNS = [f.name for f in fields(SessionRow)]
_WRITABLE = (
    "user_ref",
    "status",
    "decided_by",
    "status_observed_at",
    "current_observation_key",
    "last_event_id",
    "last_source",
    "last_reason",
    "updated_at",
    "next_check_at",
    "overdue",
    "settled",
)
_WRITE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("_id"))
    .values({name: bindparam(name) for name in _WRITABLE})
)


def write_sessions(session: Session, rows: list[SessionRow]) -> None:
    """Save the apply path's changes to locked sessions (one executemany)."""
    if rows:
        session.connection().execute(
            _WRITE,
            [{"_id": row.id, **{name: getattr(row, name) for name in _WRITABLE}} for row in rows],
        )


def lock_sessions(
    session: Session, refs: dict[SessionKey, str | None]
) -> dict[SessionKey, SessionRow]:
    """Create missing sessions (provider, session id, user ref) and lock the ones that are free.

    On PostgreSQL a session locked by another worker's batch is skipped (SKIP LOCKED), not waited
    for: the caller leaves its events for the next batch. Rows are locked in (provider,
    session_id) order.
    """
    if not refs:
        return {}
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    now = utcnow()
    table = VerificationSession.__table__  # type: ignore[attr-defined]
    rows = [
        {
            "provider": p,
            "session_id": s,
            "user_ref": u,
            "status": "pending",
            "decided_by": "auto",
            "created_at": now,
            "updated_at": now,
            "poll_attempts": 0,
            "overdue": False,
            "settled": False,
        }
        for (p, s), u in sorted(refs.items())
    ]
    session.connection().execute(
        module.insert(table).on_conflict_do_nothing(index_elements=["provider", "session_id"]), rows
    )
    query = lock_query(refs, dialect)
    found = {}
    for values in session.connection().execute(query):
        row = SessionRow(*values)
        found[(row.provider, row.session_id)] = row
    learned = {}
    for key, user_ref in refs.items():
        locked = found.get(key)
        if locked is not None and locked.user_ref is None and user_ref:
            locked.user_ref = learned[key] = user_ref
    fill_user_refs(session, learned)  # the session's earlier events carry its user ref too
    return found


def _keys_match(refs: Iterable[SessionKey], dialect: str) -> tuple[Any, Any]:
    """(FROM clause, WHERE clause) selecting the sessions with these keys, in a shape whose plan
    does not depend on column statistics (a new table has none until it is analyzed, and a
    filter on the provider alone would then read every session of the provider).

    PostgreSQL: a join with the keys unnested from two arrays: one statement text whatever the
    count, probed through the unique index (nested loop) or hashed against a table small enough
    to scan, by the table's size, which the planner knows without statistics. (`(provider,
    session_id) IN ((…), …)` plans as an OR of one index probe per key: 40 ms of planning for
    200 keys.) SQLite: `(provider, session_id) IN (VALUES …)`, one probe of the unique index per
    key."""
    pairs = sorted(set(refs))
    if dialect != "postgresql":
        return _TABLE, tuple_(_TABLE.c.provider, _TABLE.c.session_id).in_(pairs)
    keys = (
        func.unnest(
            bindparam("key_providers", [p for p, _ in pairs], type_=ARRAY(String)),
            bindparam("key_sessions", [s for _, s in pairs], type_=ARRAY(String)),
        )
        .table_valued("provider", "session_id")
        .render_derived(name="wanted")
    )
    joined = _TABLE.join(
        keys,
        and_(_TABLE.c.provider == keys.c.provider, _TABLE.c.session_id == keys.c.session_id),
    )
    return joined, true()


def lock_query(refs: Iterable[SessionKey], dialect: str) -> Select:  # type: ignore[type-arg]
    """The select that locks these sessions (free ones only on PostgreSQL), in key order."""
    source, condition = _keys_match(refs, dialect)
    query = (
        select(*[_TABLE.c[name] for name in _COLUMNS])
        .select_from(source)
        .where(condition)
        .order_by(_TABLE.c.provider, _TABLE.c.session_id)
    )
    if dialect == "postgresql":
        query = query.with_for_update(skip_locked=True, of=_TABLE)
    return query


def existing_sessions(session: Session, keys: Iterable[SessionKey]) -> set[SessionKey]:
    """Which of these (provider, session id) pairs are known sessions (no lock taken)."""
    wanted = set(keys)
    if not wanted:
        return set()
    source, condition = _keys_match(wanted, session.get_bind().dialect.name)
    query = select(_TABLE.c.provider, _TABLE.c.session_id).select_from(source).where(condition)
    return {(p, s) for p, s in session.connection().execute(query)}


RECENT_WINDOW = timedelta(minutes=30)
RECENT_LIMIT = 10
"""A redirect that names no session polls at most this many of the provider's sessions started
within the window (the newest first), so a stranger's redirects cannot make polls without end."""


def hurry_recent_sessions(session: Session, provider: str) -> int:
    """Make the provider's recently started, unsettled sessions due now; return how many.

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
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.connection().execute(query).scalars())
    if ids:
        session.connection().execute(
            update(_TABLE).where(_TABLE.c.id.in_(ids)).values(next_check_at=now)
        )
    return len(ids)
