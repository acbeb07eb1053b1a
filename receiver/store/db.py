"""Engine and transactions, the same code on SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel import Session

from receiver.store.problems import DatabaseUrlError, parse_database_url, shown, sqlite_path

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for the single write lock before failing."""

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeoutError,
)
"""What a database that cannot be used right now raises (unreachable, restarting, shutting down,
locked, its connection pool exhausted): worth a retry later (503 with Retry-After, the drain's
pause), unlike a bad statement, a constraint violation or a value a column refuses, which a retry
would only repeat. The one definition: the receiver, the writer, the drain and the API use it
(`is_unavailable` adds a statement whose connection was lost)."""


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database is unusable rather than the statement wrong: one of
    UNAVAILABLE_ERRORS, or any driver error that invalidated its connection."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded SQLite store."""
    return engine.dialect.name == "sqlite"


def make_engine(database_url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and IMMEDIATE transactions. A SQLite
    file (and its directory) is created on first use unless `create` is False; then a missing
    one raises DatabaseUrlError, as does a URL naming a database verihook does not run on."""
    url = parse_database_url(database_url, create=create)
    if url.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 10)
        kwargs.setdefault("pool_timeout", 5)
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("connect_timeout", 3)
        return create_engine(url, **kwargs)
    path = sqlite_path(url)
    if path is not None and create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise DatabaseUrlError(
                f"cannot create the SQLite database {path} ({shown(url)}): a part of "
                f"{path.parent} is a file, not a directory; check the path"
            ) from exc
        except OSError as exc:
            raise DatabaseUrlError(
                f"cannot create the directory of the SQLite database {path} ({shown(url)}): "
                f"{exc.strerror or exc}; check the path"
            ) from exc
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
    _use_sqlite_immediate_transactions(engine)
    return engine


def _use_sqlite_immediate_transactions(engine: Engine) -> None:
    """Let SQLite take its write lock when a transaction begins (no upgrade deadlocks)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: each commit waits for the WAL on disk, so a delivery answered 2xx survives a power
        # loss too (NORMAL keeps it only across a crash of the process); group commit shares the
        # flush between the deliveries that arrive together
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA secure_delete=ON")  # deleted or overwritten content is zeroed
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        deferred = conn.get_execution_options().get(READ_ONLY_OPTION)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


READ_ONLY_OPTION = "verihook_read_only"
"""An execution option: on SQLite, begin a deferred transaction, which takes no write lock."""


def check_store(engine: Engine, *, tables: bool = True) -> None:
    """Reach the database and (with `tables`) read one of verihook's tables, none of its rows,
    without taking a write lock: raises the driver's error when the database is unreachable or
    not migrated."""
    probe = "SELECT 1 FROM inbound_events WHERE 1 = 0" if tables else "SELECT 1"
    with engine.execution_options(**{READ_ONLY_OPTION: True}).connect() as connection:
        connection.execute(text(probe)).all()


def make_ingest_engine(database_url: str) -> Engine:
    """The engine of the ingest hot path: no pre-ping round trip per checkout (the writer retries
    once on a dropped connection instead) and, on PostgreSQL, autocommit: the writer sends one
    statement per batch, which is its own transaction."""
    if make_url(database_url).get_backend_name() == "sqlite":
        return make_engine(database_url, pool_pre_ping=False)
    return make_engine(
        database_url,
        pool_pre_ping=False,
        pool_size=2,
        max_overflow=2,
        isolation_level="AUTOCOMMIT",
    )


SQLITE_WRITER = threading.Lock()
"""SQLite has one writer: threads of a process queue here instead of in SQLite's busy handler,
which sleeps in growing steps and would add tens of milliseconds under contention."""

_lock_files: dict[tuple[int, str], int] = {}
_lock_files_guard = threading.Lock()


def _lock_file(database: str) -> int:
    """This process's descriptor of the database's writer lock file (opened once per process)."""
    key = (os.getpid(), database)
    with _lock_files_guard:
        if key not in _lock_files:
            _lock_files[key] = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        return _lock_files[key]


@contextmanager
def sqlite_write_lock(engine: Engine) -> Iterator[None]:
    """Hold SQLite's one write slot for a transaction: threads queue on SQLITE_WRITER, processes
    on an flock of `<database>-writer.lock`, both woken the moment the slot frees (SQLite's own
    busy handler polls with sleeps of up to 100 ms). Writers that do not take it (migrations)
    still meet the busy timeout."""
    database = engine.url.database
    with SQLITE_WRITER:
        if not database or database == ":memory:":
            yield
            return
        descriptor = _lock_file(database)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)


def checkpoint_wal(engine: Engine) -> bool:
    """On SQLite, copy the write-ahead log into the database file and truncate it to zero bytes
    (`PRAGMA wal_checkpoint(TRUNCATE)`), so that values just erased are left in neither file
    (with `secure_delete`, the database's freed space is zeroed). True when done or not SQLite;
    False when another connection's read kept the log busy past the busy timeout (the values
    stay in the log until a later checkpoint reaches them)."""
    if not is_sqlite(engine):
        return True
    with sqlite_write_lock(engine):
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            busy: int = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            cursor.close()
        finally:
            connection.close()
    return busy == 0


def writer_lock(engine: Engine) -> AbstractContextManager[object]:
    """What a writing transaction holds around its work: SQLite's writer lock (one writer at a
    time across processes); nothing on PostgreSQL, whose row locks are enough."""
    return sqlite_write_lock(engine) if is_sqlite(engine) else nullcontext()


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    with writer_lock(engine):
        with Session(engine, expire_on_commit=False) as db:
            try:
                yield db
                db.commit()
            except BaseException:
                db.rollback()
                raise
