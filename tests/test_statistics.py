"""Planner statistics follow the tables the drain grows (receiver/store/statistics.py).

On a fresh PostgreSQL database, a table that grew from empty has no statistics until someone
analyzes it, and the planner guesses that a look-up by user finds a share of the whole table.
The keeper analyzes a table once it changed enough since its last ANALYZE, and leaves it alone
otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from receiver.store.db import make_engine
from receiver.store.migrate import upgrade
from receiver.store.statistics import StatisticsKeeper
from reconciler.users import sessions_of_users
from tests.conftest import create_private_database, drop_private_database


@pytest.fixture
def fresh_postgres() -> Iterator[Engine]:
    """A new, migrated PostgreSQL database of its own (statistics start from nothing)."""
    try:
        url = create_private_database()
    except Exception:
        pytest.skip("PostgreSQL is not reachable")
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
    drop_private_database(url)


def _grow_sessions(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO verification_sessions (provider, session_id, user_ref, status,"
                " decided_by, created_at, updated_at, poll_attempts, overdue, settled)"
                " SELECT 'idenfy', 's' || n, 'u' || n, 'pending', 'auto', now(), now(), 0,"
                " false, false FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )


def _refresh_until(keeper: StatisticsKeeper, table: str) -> list[str]:
    """The counters reach the statistics system within a second or so of the commit."""
    deadline = time.monotonic() + 10
    while True:
        done = keeper.refresh(force_check=True)
        if table in done or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


def _estimate(engine: Engine, users: list[str]) -> int:
    """The planner's estimate of the rows of a look-up of these users' sessions."""
    query = sessions_of_users(users)
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = conn.execute(text("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()
    return int(plan[0]["Plan"]["Plan Rows"])


def test_a_table_that_grew_is_analyzed_once_and_then_estimated_right(fresh_postgres):
    keeper = StatisticsKeeper(fresh_postgres)
    _grow_sessions(fresh_postgres, 20_000)
    users = [f"u{n}" for n in range(1, 200)]
    assert _estimate(fresh_postgres, users) > 5 * len(users)  # no statistics: a guess

    assert "verification_sessions" in _refresh_until(keeper, "verification_sessions")
    assert _estimate(fresh_postgres, users) <= 2 * len(users)  # one session per user
    assert keeper.refresh(force_check=True) == []  # nothing changed since

    _grow_sessions_more = 2_000  # under MIN_CHANGES + GROWTH × 20,000 rows: not yet
    with fresh_postgres.begin() as conn:
        conn.execute(
            text("UPDATE verification_sessions SET overdue = true WHERE id <= :n"),
            {"n": _grow_sessions_more},
        )
    time.sleep(1.5)
    assert "verification_sessions" not in keeper.refresh(force_check=True)


def test_the_keeper_looks_at_most_every_few_seconds_and_never_on_sqlite(tmp_path, fresh_postgres):
    keeper = StatisticsKeeper(fresh_postgres, check_seconds=60)
    keeper.refresh()
    _grow_sessions(fresh_postgres, 5_000)
    time.sleep(1.5)
    assert keeper.refresh() == []  # not time to look yet
    sqlite = make_engine(f"sqlite:///{tmp_path / 'stats.db'}")
    assert StatisticsKeeper(sqlite).refresh(force_check=True) == []
    sqlite.dispose()
