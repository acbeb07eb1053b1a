"""Storing inbound events (and their outbox rows): the one insert path, for the ingest hot path's
batches (on the driver's own connection: no ORM session; one statement per batch on PostgreSQL)
and for the poller's answers (`store_event`, in the caller's transaction).

`prepare_event` does the per-delivery work (encryption) in the request's own thread;
`write_events` stores prepared rows together; a delivery already stored (a duplicate) is looked
up and counted in `delivery_counts` by one statement (receiver/store/trace_models.py). The schema
is the models' (receiver/store/models.py and the migrations); these statements name its columns.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Dialect
from sqlmodel import Session

from receiver.store.crypto import Keyring
from receiver.store.dialects import is_postgresql
from receiver.store.events import payload_aad
from receiver.store.models import EventState, InboundEvent, table_of, utcnow


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


@dataclass(frozen=True)
class EventRow:
    """An event sealed and ready to insert."""

    provider: str
    dedupe_key: str
    values: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        """The event's identity: one row per (provider, dedupe key)."""
        return self.provider, self.dedupe_key

    @property
    def ready(self) -> bool:
        """True when the event waits for a worker (it gets an outbox row)."""
        state: str = self.values["state"]
        return state == EventState.RECEIVED.value


@dataclass(frozen=True)
class StoredEvent:
    """A row's id and whether this batch created it (False: it was already stored)."""

    event_id: int
    created: bool


def prepare_event(event: NewEvent, *, keyring: Keyring) -> EventRow:
    """Seal an event's delivery record and lay out its column values."""
    sealed = keyring.seal(
        json.dumps(event.record).encode(), aad=payload_aad(event.provider, event.dedupe_key)
    )
    state = EventState.QUARANTINED if event.parse_error else EventState.RECEIVED
    return EventRow(
        provider=event.provider,
        dedupe_key=event.dedupe_key,
        values={
            "provider": event.provider,
            "dedupe_key": event.dedupe_key,
            "kind": event.kind,
            "notification": event.notification,
            "state": state.value,
            "session_id": event.session_id,
            "user_ref": event.user_ref,
            "received_at": event.received_at,
            "parse_error": event.parse_error,
            "key_id": sealed.key_id,
            "payload_blob": sealed.blob,
        },
    )


_TYPES = {
    "provider": "text",
    "dedupe_key": "text",
    "kind": "text",
    "notification": "text",
    "state": "text",
    "session_id": "text",
    "user_ref": "text",
    "received_at": "timestamptz",
    "parse_error": "text",
    "key_id": "text",
    "payload_blob": "bytea",
}
_COLUMNS = ", ".join(_TYPES)
_ROW = "(" + ", ".join(f"%s::{t}" for t in _TYPES.values()) + ")"


@functools.cache
def _postgres_store(count: int) -> str:
    """PostgreSQL: `count` events and their outbox rows in one statement (one round trip, one
    transaction on the autocommit connection), one plain parameter per value.

    A statement text per batch size (at most DEFAULT_MAX_BATCH of them; the driver prepares
    each once it recurs): the parameters are scalars, which the driver converts in C, where one
    array per column (a single text for every size) cost 10 % of a gthread worker's CPU in
    psycopg's Python array dumper (py-spy under bench.ingest), and half the driver's CPU for a
    batch of one (bench.wal_per_delivery)."""
    return f"""
WITH clock AS (SELECT %s::timestamptz AS now), new_event AS (
    INSERT INTO inbound_events ({_COLUMNS}, updated_at, attempts)
    SELECT incoming.*, clock.now, 0
    FROM (VALUES {", ".join([_ROW] * count)}) AS incoming ({_COLUMNS}), clock
    ON CONFLICT (provider, dedupe_key) DO NOTHING
    RETURNING id, provider, dedupe_key, state
), new_outbox AS (
    INSERT INTO outbox (event_id, created_at, available_at, attempts)
    SELECT id, clock.now, clock.now, 0 FROM new_event, clock
    WHERE state = '{EventState.RECEIVED.value}'
)
SELECT id, provider, dedupe_key FROM new_event
"""


_POSTGRES_REPEATED = """
WITH repeated AS (
    SELECT * FROM unnest(%(provider)s::text[], %(key)s::text[], %(n)s::int[])
        AS r(provider, dedupe_key, n)
), found AS (
    SELECT e.id, e.provider, e.dedupe_key, r.n
    FROM inbound_events e JOIN repeated r USING (provider, dedupe_key)
), counted AS (
    INSERT INTO delivery_counts (event_id, duplicates, last_at)
    SELECT id, n, %(now)s FROM found
    ON CONFLICT (event_id) DO UPDATE
    SET duplicates = delivery_counts.duplicates + excluded.duplicates, last_at = excluded.last_at
)
SELECT id, provider, dedupe_key FROM found
"""
"""PostgreSQL: the ids of events delivered again, and their repeats counted, in one statement."""

_SQLITE_COLUMNS = (*_TYPES, "updated_at", "attempts")
_SQLITE_INSERT = (
    f"INSERT INTO inbound_events ({', '.join(_SQLITE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _SQLITE_COLUMNS)}) "
    "ON CONFLICT (provider, dedupe_key) DO NOTHING RETURNING id"
)
_SQLITE_OUTBOX = (
    "INSERT INTO outbox (event_id, created_at, available_at, attempts) VALUES (?, ?, ?, 0)"
)
_RECEIVED_AT = list(_TYPES).index("received_at")
_SQLITE_STORED = "SELECT id FROM inbound_events WHERE provider = ? AND dedupe_key = ?"
_SQLITE_REPEATED = (
    "INSERT INTO delivery_counts (event_id, duplicates, last_at) VALUES (?, ?, ?) "
    "ON CONFLICT (event_id) DO UPDATE SET duplicates = duplicates + excluded.duplicates, "
    "last_at = excluded.last_at"
)


def write_events(
    connection: Any, rows: Sequence[EventRow], *, dialect: Dialect
) -> list[StoredEvent]:
    """Insert the rows not stored yet, with an outbox row for each ready one; one result per row.

    `connection` is a DBAPI connection (psycopg or sqlite3): the hot path skips SQLAlchemy's
    per-statement work. The caller owns the transaction (on PostgreSQL's autocommit connection
    each statement is its own). A (provider, dedupe key) already stored, or repeated within
    `rows`, answers the stored id with `created=False`, and each such repeat is counted.
    """
    unique = list({row.key: row for row in reversed(rows)}.values())[::-1]
    times = Counter(row.key for row in rows)
    cursor = connection.cursor()
    try:
        if is_postgresql(dialect):
            created = _insert_postgres(cursor, unique)
        else:
            created = _insert_sqlite(cursor, unique, _sqlite_datetime(dialect))
        known = dict(created)
        repeats = {key: n - (key in created) for key, n in times.items() if n - (key in created)}
        if repeats:
            known.update(_count_repeats(cursor, repeats, dialect))
    finally:
        cursor.close()
    first_of: dict[tuple[str, str], int] = {}
    results = []
    for index, row in enumerate(rows):
        first = first_of.setdefault(row.key, index)
        is_new = row.key in created and first == index
        results.append(StoredEvent(event_id=known[row.key], created=is_new))
    return results


def store_event(db: Session, event: NewEvent, *, keyring: Keyring) -> tuple[int, bool]:
    """Store one event (and its outbox row unless quarantined) in the caller's transaction,
    through the same statement as the ingest batches; return (id, created)."""
    driver = db.connection().connection.driver_connection
    stored = write_events(
        driver, [prepare_event(event, keyring=keyring)], dialect=db.get_bind().dialect
    )[0]
    return stored.event_id, stored.created


def _insert_postgres(cursor: Any, rows: list[EventRow]) -> dict[tuple[str, str], int]:
    params: list[Any] = [utcnow()]
    for row in rows:
        values = row.values
        params.extend(values[name] for name in _TYPES)
    cursor.execute(_postgres_store(len(rows)), params)
    return {(provider, key): int(event_id) for event_id, provider, key in cursor.fetchall()}


def _insert_sqlite(
    cursor: Any, rows: list[EventRow], as_text: Callable[[datetime], str]
) -> dict[tuple[str, str], int]:
    now = as_text(utcnow())
    created: dict[tuple[str, str], int] = {}
    ready: list[tuple[int, str, str]] = []
    for row in rows:
        values = row.values
        params = [values[name] for name in _TYPES]
        params[_RECEIVED_AT] = as_text(values["received_at"])
        cursor.execute(_SQLITE_INSERT, (*params, now, 0))
        found = cursor.fetchone()
        if found is not None:
            created[row.key] = int(found[0])
            if row.ready:
                ready.append((int(found[0]), now, now))
    if ready:
        cursor.executemany(_SQLITE_OUTBOX, ready)
    return created


def _count_repeats(
    cursor: Any, repeats: dict[tuple[str, str], int], dialect: Dialect
) -> dict[tuple[str, str], int]:
    """The ids of events delivered again, by (provider, dedupe key), their repeats counted."""
    if is_postgresql(dialect):
        keys = list(repeats)
        cursor.execute(
            _POSTGRES_REPEATED,
            {
                "provider": [p for p, _ in keys],
                "key": [k for _, k in keys],
                "n": [repeats[key] for key in keys],
                "now": utcnow(),
            },
        )
        return {(p, k): int(i) for i, p, k in cursor.fetchall()}
    now = _sqlite_datetime(dialect)(utcnow())
    found = {}
    for key, n in repeats.items():
        cursor.execute(_SQLITE_STORED, key)
        found[key] = int(cursor.fetchone()[0])
        cursor.execute(_SQLITE_REPEATED, (found[key], n, now))
    return found


@functools.cache
def _sqlite_datetime(dialect: Dialect) -> Callable[[datetime], str]:
    """How the models' UTC datetime columns store a value in SQLite (SQLAlchemy's own format):
    the column type's bind processor for this dialect, looked up once."""
    column_type = table_of(InboundEvent).c.received_at.type
    process: Callable[[datetime], str] | None = column_type.dialect_impl(dialect).bind_processor(
        dialect
    )
    if process is None:
        raise TypeError(f"{column_type!r} stores datetimes as they are on {dialect.name}")
    return process
