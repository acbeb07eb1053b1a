"""The ingest path's writer: one per process, storing deliveries in group commits.

It wraps `write_events` (receiver/store/event_batches.py) in a `GroupCommitter` and decides what a
failed batch means for each delivery in it:
- a connection error is retried once on a fresh connection (the ingest pool does not pre-ping:
  a connection dropped since its last use fails fast and is replaced), then every delivery of the
  batch gets `StoreUnavailableError` (503, the provider retries);
- any other database error may be caused by one row's content: the batch is written again row by
  row, each in its own transaction, so only the row the store refuses is answered `REFUSED` (the
  ingest path then keeps it raw and quarantined), never its neighbours.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import Pool

from receiver.exceptions import StoreUnavailableError
from receiver.group_commit import DEFAULT_MAX_BATCH, GroupCommitter
from receiver.metrics import INGEST_BATCH_ROWS
from receiver.store.db import is_sqlite, is_unavailable, sqlite_write_lock
from receiver.store.event_batches import EventRow, StoredEvent, write_events

log = logging.getLogger(__name__)

CONTENT_ERRORS = (DBAPIError, UnicodeError)
"""What a row's content can make the store raise (a value a column refuses, text the driver
cannot encode), once the errors that mean the database is unavailable (store/db.py
`is_unavailable`: answered 503, the provider retries) are set apart."""


@dataclass(frozen=True)
class Refused:
    """The store refused this row's content (the rest of its batch was stored)."""

    error: str
    """The database error's type name (never its message, which may quote the content)."""


class EventWriter:
    """Stores prepared event rows, batching the ones that arrive together (thread-safe).

    Batches are written on one driver connection of the ingest engine's pool, kept between
    batches (only the committer's leader writes, one batch at a time), so a batch costs no pool
    check-out and check-in. After any error that connection is discarded and the next batch
    takes a new one. `close()` gives it back to the pool; so does the garbage collector when a
    writer is dropped without `close()` (a finalizer, not `__del__`), so none is left checked out.
    """

    def __init__(self, engine: Engine, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.engine = engine
        self._kept: list[tuple[Any, Pool]] = []
        """The pooled connection kept between batches (none or one), with the pool it is from."""
        weakref.finalize(self, _give_back, self._kept, engine)
        self._committer: GroupCommitter[EventRow, StoredEvent | Refused] = GroupCommitter(
            self._write_batch, max_batch=max_batch
        )

    def store(self, row: EventRow) -> StoredEvent | Refused:
        """Block until `row` is committed (or refused); StoreUnavailableError when the database
        cannot be used."""
        result, _ = self._committer.submit(row)
        return result

    def _write_batch(self, rows: Sequence[EventRow]) -> list[StoredEvent | Refused]:
        INGEST_BATCH_ROWS.observe(len(rows))
        try:
            return list(self._with_one_retry(rows))
        except CONTENT_ERRORS as exc:
            if len(rows) == 1:
                return [Refused(type(exc).__name__)]
            log.info(
                "a batch of %d rows was refused; writing them one by one",
                len(rows),
                extra={"reason": type(exc).__name__},
            )
            return [self._write_alone(row) for row in rows]

    def _write_alone(self, row: EventRow) -> StoredEvent | Refused:
        try:
            return self._with_one_retry([row])[0]
        except CONTENT_ERRORS as exc:
            return Refused(type(exc).__name__)

    def _with_one_retry(self, rows: Sequence[EventRow]) -> list[StoredEvent]:
        """Write once; after a connection error, once more on a fresh connection."""
        for attempt in (1, 2):
            try:
                return self._write(rows)
            except Exception as exc:
                error = _as_sqlalchemy_error(exc, self.engine)
                if not is_unavailable(error):
                    if error is exc:
                        raise
                    raise error from exc
                if attempt == 2:
                    raise StoreUnavailableError("the event store is unavailable") from exc
        raise AssertionError("unreachable")

    def _write(self, rows: Sequence[EventRow]) -> list[StoredEvent]:
        """One transaction: BEGIN IMMEDIATE … COMMIT on SQLite (under the process-wide writer
        lock); on PostgreSQL the autocommit connection makes the one statement its own.

        The connection kept from the last batch, or a new one from the ingest pool (also when
        the engine was disposed since: the kept one belongs to a pool nobody uses any more)."""
        pool = self.engine.pool
        pooled = _take(self._kept, pool, self.engine) or self.engine.raw_connection()
        try:
            stored = self._write_on(pooled.driver_connection, rows)
        except BaseException:
            # A fresh connection after any error: a server-side prepared statement may be what
            # failed (a migration changed the table), and reconnecting is cheap next to how
            # rarely the store refuses anything.
            _discard(pooled)
            raise
        self._kept.append((pooled, pool))
        return stored

    def close(self) -> None:
        """Give the kept connection back to the pool (the process is stopping); a later batch
        takes one again."""
        _give_back(self._kept, self.engine)

    def abandon_after_fork(self) -> None:
        """In a forked child: let go of the kept connection without a word to the server (the
        parent still uses that socket; closing it here would end the parent's session too)."""
        _ABANDONED.extend(pooled for pooled, _ in self._kept)  # never closed nor collected here
        self._kept.clear()

    def _write_on(self, connection: Any, rows: Sequence[EventRow]) -> list[StoredEvent]:
        if not is_sqlite(self.engine):
            return write_events(connection, rows, dialect=self.engine.dialect)
        with sqlite_write_lock(self.engine):
            connection.execute("BEGIN IMMEDIATE")
            try:
                stored = write_events(connection, rows, dialect=self.engine.dialect)
                connection.execute("COMMIT")
            except BaseException:
                _roll_back(connection)
                raise
        return stored


_ABANDONED: list[Any] = []
"""Connections a forked child inherited from its parent's writer: kept, never used or closed."""


def _take(kept: list[tuple[Any, Pool]], pool: Pool, engine: Engine) -> Any:
    """The kept connection if it is still from `pool`, the engine's current one (else it is
    closed); None when none is kept. Safe against a `close()` from another thread."""
    try:
        pooled, source = kept.pop()
    except IndexError:
        return None
    if source is pool:
        return pooled
    _give_back([(pooled, source)], engine)
    return None


def _give_back(kept: list[tuple[Any, Pool]], engine: Engine) -> None:
    """Return a writer's kept connection to its pool (at `close()` or once the writer is gone),
    or close it when that pool was disposed since (the engine has a new one): checked in there,
    it would stay open and unused."""
    while True:
        try:
            pooled, pool = kept.pop()
        except IndexError:  # none kept, or the writer took it meanwhile
            return
        try:
            if pool is engine.pool:
                pooled.close()
            else:
                pooled.invalidate()
        except Exception:  # the connection broke meanwhile: nothing to give back
            log.debug("giving back an ingest connection failed", exc_info=True)


def _discard(pooled: Any) -> None:
    """Close a pooled connection for good (the pool opens a new one when needed)."""
    try:
        pooled.invalidate()
    except Exception:  # already gone: nothing to give back
        log.debug("invalidating an ingest connection failed", exc_info=True)


def _roll_back(connection: Any) -> None:
    """End a failed SQLite transaction; a connection that cannot is discarded by the caller."""
    try:
        connection.execute("ROLLBACK")
    except Exception:
        log.debug("rollback after a failed ingest batch failed", exc_info=True)


def _as_sqlalchemy_error(exc: Exception, engine: Engine) -> Exception:
    """A driver error seen through SQLAlchemy's classes (OperationalError, DataError…), which the
    rest of verihook reasons with; anything else as it is."""
    if isinstance(exc, SQLAlchemyError):
        return exc
    dbapi = engine.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        return DBAPIError.instance(
            None,
            None,
            exc,
            dbapi.Error,
            connection_invalidated=engine.dialect.is_disconnect(exc, None, None),
            dialect=engine.dialect,
        )
    return exc
