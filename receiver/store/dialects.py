"""What differs between SQLite and PostgreSQL, in one place, by name.

Everything else is written once for both: row locks in particular (`with_for_update`, with or
without SKIP LOCKED) need no guard, because SQLAlchemy leaves the clause out on SQLite, whose
transactions take the database's one write lock instead (receiver/store/db.py). Building the
engine (connection arguments, SQLite's immediate transactions and write lock) stays in db.py, and
the ingest hot path's driver-level statements, one text per database, in event_batches.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, String, and_, bindparam, func, true, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import ColumnElement, FromClause
from sqlmodel import Session

Bind = Session | Connection | Engine | Dialect
"""Anything that knows which database it talks to."""


def _dialect(bind: Bind) -> Dialect:
    if isinstance(bind, Session):
        return bind.get_bind().dialect
    if isinstance(bind, Connection | Engine):
        return bind.dialect
    return bind


def is_postgresql(bind: Bind) -> bool:
    """True on PostgreSQL (False on SQLite, the other database verihook runs on)."""
    return _dialect(bind).name == "postgresql"


def insert(bind: Bind, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` that can take `ON CONFLICT` clauses (`on_conflict_do_nothing`,
    `on_conflict_do_update` with `excluded`): both databases have them, with the same API,
    but each in its own dialect module."""
    if is_postgresql(bind):
        return postgresql.insert(table)
    return sqlite.insert(table)


def snapshot(engine: Engine) -> Engine:
    """`engine` with transactions that read one snapshot throughout (PostgreSQL: REPEATABLE
    READ; SQLite's transactions are snapshots already)."""
    if is_postgresql(engine):
        return engine.execution_options(isolation_level="REPEATABLE READ")
    return engine


def pairs_match(
    bind: Bind, table: Any, names: tuple[str, str], pairs: Iterable[tuple[str, str]]
) -> tuple[FromClause, ColumnElement[bool]]:
    """(FROM clause, WHERE clause) selecting the rows of `table` whose two columns `names` hold
    one of `pairs`, in a shape whose plan does not depend on column statistics (a new table has
    none until it is analyzed, and a filter on the first column alone would then read all its
    rows).

    PostgreSQL: a join with the pairs unnested from two arrays: one statement text whatever the
    count, probed through the unique index (nested loop) or hashed against a table small enough
    to scan, by the table's size, which the planner knows without statistics. (`(a, b) IN ((…),
    …)` plans as an OR of one index probe per pair: 40 ms of planning for 200 pairs.) SQLite:
    `(a, b) IN (VALUES …)`, one probe of the unique index per pair."""
    first, second = (table.c[name] for name in names)
    wanted: Sequence[tuple[str, str]] = sorted(set(pairs))
    if not is_postgresql(bind):
        return table, tuple_(first, second).in_(wanted)
    keys = (
        func.unnest(
            bindparam("key_firsts", [a for a, _ in wanted], type_=postgresql.ARRAY(String)),
            bindparam("key_seconds", [b for _, b in wanted], type_=postgresql.ARRAY(String)),
        )
        .table_valued(*names)
        .render_derived(name="wanted")
    )
    joined = table.join(keys, and_(first == keys.c[names[0]], second == keys.c[names[1]]))
    return joined, true()
