"""What can be wrong with the configured database, each said in one line: what failed, where,
which variable to fix and what to run. Used when an engine is made (`parse_database_url`) and by
the command line for the errors a database raises later (`explain`)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from receiver.exceptions import ConfigurationError

VARIABLE = "VERIHOOK_DATABASE_URL"
DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg",)}
"""The databases verihook runs on, and the driver of each (the only ones installed)."""
EXAMPLES = "sqlite:///var/verihook.db or postgresql+psycopg://user@host/db"
UPGRADE = "run `verihook db upgrade`"


class DatabaseUrlError(ConfigurationError):
    """The configured database cannot be used as it is named; the message says why and what to
    do about it."""


def shown(url: URL | str) -> str:
    """`VERIHOOK_DATABASE_URL=<url>` with any password masked."""
    if isinstance(url, str):
        url = make_url(url)
    return f"{VARIABLE}={url.render_as_string(hide_password=True)}"


def sqlite_path(url: URL) -> Path | None:
    """The absolute path of a SQLite database file; None for an in-memory database."""
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return Path(os.path.abspath(url.database))


def where(url: URL) -> str:
    """Where the database is: a SQLite file's path, or PostgreSQL's host, port and database."""
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        return f"SQLite database {path}" if path else "in-memory SQLite database"
    host, port = url.host or "localhost", url.port or 5432
    return f"PostgreSQL database {url.database or ''} at {host}:{port}"


def parse_database_url(database_url: str, *, create: bool = True) -> URL:
    """The URL, when verihook can use it: SQLite or PostgreSQL with its installed driver, and,
    unless `create`, a SQLite file that exists (a mistyped path must not create a database).
    Raises DatabaseUrlError otherwise."""
    try:
        url = make_url(database_url)
    except ArgumentError as exc:  # the value is not echoed: it may hold a password
        raise DatabaseUrlError(f"{VARIABLE} is not a database URL: use {EXAMPLES}") from exc
    backend = url.get_backend_name()
    if backend not in DRIVERS:
        raise DatabaseUrlError(
            f"{shown(url)}: {backend!r} databases are not supported; verihook runs on SQLite "
            f"or PostgreSQL: use {EXAMPLES}"
        )
    try:
        driver = url.get_driver_name()
    except (NoSuchModuleError, ImportError):
        driver = url.drivername.partition("+")[2]
    if driver not in DRIVERS[backend]:
        wanted = f"{backend}+{DRIVERS[backend][0]}"
        raise DatabaseUrlError(
            f"{shown(url)}: the driver {driver!r} is not supported: use {wanted}://…"
        )
    path = sqlite_path(url) if backend == "sqlite" else None
    if path is not None and not create:
        if path.is_dir():
            raise DatabaseUrlError(f"{shown(url)}: {path} is a directory, not a SQLite database")
        if not path.exists():
            raise DatabaseUrlError(
                f"no SQLite database at {path} ({shown(url)}): check the path, or create the "
                f"database there with `verihook db upgrade`"
            )
    return url


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def _connection_reason(message: str) -> str:
    """psycopg's `connection failed: connection to server at …, port … failed: FATAL:  why`
    as `why`."""
    reason = message.rpartition("failed: ")[2] if "failed: " in message else message
    return reason.removeprefix("FATAL:").strip()


def explain(error: BaseException, database_url: str) -> str | None:
    """One line saying what a database error means and what to do; None when `error` is not
    about the database."""
    if isinstance(error, DatabaseUrlError):
        return str(error)
    if not isinstance(error, SQLAlchemyError):
        return None
    try:
        url = make_url(database_url)
    except ArgumentError:
        return f"{VARIABLE} is not a database URL: use {EXAMPLES}"
    place, named = where(url), shown(url)
    if isinstance(error, PoolTimeoutError):
        return f"no connection to the {place} came free in time ({named}): try again"
    if not isinstance(error, DBAPIError):
        return f"database error at the {place} ({named}): {_first_line(error)}"
    original = error.orig if error.orig is not None else error
    message, code = _first_line(original), getattr(original, "sqlstate", None)
    lowered = message.lower()
    if code == "42P01" or lowered.startswith("no such table"):
        return f"the {place} has no verihook schema ({message}; {named}): {UPGRADE}"
    if code == "42703" or "no such column" in lowered or "has no column named" in lowered:
        return f"the {place} has an older schema than this verihook ({message}; {named}): {UPGRADE}"
    if url.get_backend_name() == "sqlite":
        return _explain_sqlite(lowered, message, place, named)
    if error.statement is None:  # connecting failed
        reason = _connection_reason(message)
        if "database" in reason and "does not exist" in reason:
            return (
                f"cannot connect to the {place}: {reason} ({named}): create it "
                f"(`createdb {url.database}`), then {UPGRADE}"
            )
        if "password" in reason or "role" in reason or "authentication" in reason:
            return f"the {place} refused the login: {reason} ({named}): fix the user or password"
        return (
            f"cannot connect to the {place}: {reason} ({named}): start PostgreSQL there, or "
            f"fix the host and port in {VARIABLE}"
        )
    return f"database error at the {place} ({named}): {message}"


def _explain_sqlite(lowered: str, message: str, place: str, named: str) -> str:
    if "unable to open database file" in lowered:
        return (
            f"cannot open the {place} ({named}): check the path, and that its directory "
            "exists and is writable"
        )
    if "file is not a database" in lowered:
        return f"the file is not a SQLite database ({place}; {named}): check the path"
    if "readonly database" in lowered:
        return f"cannot write the {place} ({named}): the file or its directory is read-only"
    if "database is locked" in lowered:
        return f"the {place} stayed locked by another writer ({named}): try again"
    return f"database error at the {place} ({named}): {message}"
