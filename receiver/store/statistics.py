"""Planner statistics kept fresh by the processes that grow the tables (issue 19 item 5).

A new deployment's tables grow from empty faster than autovacuum analyzes them (it wakes once a
minute per database, and a burst of traffic or a drained backlog adds tens of thousands of rows
in that time). Until a table is analyzed PostgreSQL's planner has no column statistics, guesses
that an equality matches 0.5 % of the rows and that a range matches a third, and picks sequential
scans that read the whole table on every batch: measured on a backlog of 100,000 events, the drain
slowed from 300 to 130 events/s as the sessions, observations, users and outbox tables grew
(bench/drain_backlog.py). `StatisticsKeeper.refresh` runs PostgreSQL's own autovacuum rule, but
at the caller's pace: a table is analyzed when the rows changed since its last ANALYZE (by
anyone: `pg_stat_user_tables.n_mod_since_analyze`) exceed `MIN_CHANGES + GROWTH × its rows then`,
so statistics are never off by more than that factor and a table growing from 0 to N rows is
analyzed about log(N) times. It looks at most every CHECK_SECONDS (one catalog query), never
waits for a table's lock (another process analyzing it is just as good) and never fails its
caller. SQLite's planner assumes an index is selective without statistics, so it does nothing
there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from receiver.store.dialects import is_postgresql

log = logging.getLogger(__name__)

MIN_CHANGES = 1_000
"""Changed rows below which a table is never analyzed (a small table plans well anyway)."""
GROWTH = 0.5
"""Analyze once the rows changed since the last ANALYZE pass this share of the rows then."""
CHECK_SECONDS = 2.0
"""How often a process looks at the counters (one catalog query)."""
LOCK_TIMEOUT = "50ms"
"""An ANALYZE that would wait longer for its table (another one running) is skipped."""

DRAIN_TABLES = (
    "outbox",
    "verification_sessions",
    "observations",
    "user_records",
    "notifications",
)
"""The tables whose plans the drain depends on and which it grows. inbound_events is read by
primary key only (ids claimed from the outbox), and audit_entries only appended to (its head is a
one-row table), so neither needs statistics (analyzing the audit took 0.5 s at 80,000 entries)."""

_STALE = text(
    """
    SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = current_schema() AND s.relname = ANY(:tables)
      AND s.n_mod_since_analyze > :floor + :growth * greatest(c.reltuples, 0)
    ORDER BY s.relname
    """
)


class StatisticsKeeper:
    """Analyzes the given tables of one engine's database when they have changed enough."""

    def __init__(
        self,
        engine: Engine,
        tables: Sequence[str] = DRAIN_TABLES,
        *,
        check_seconds: float = CHECK_SECONDS,
        min_changes: int = MIN_CHANGES,
        growth: float = GROWTH,
    ) -> None:
        self.engine, self.tables = engine, list(tables)
        self.check_seconds, self.min_changes, self.growth = check_seconds, min_changes, growth
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.analyzed = 0
        """How many ANALYZE statements this keeper ran (for tests and benchmarks)."""

    def refresh(self, *, force_check: bool = False) -> list[str]:
        """Analyze the tables that changed enough since their last ANALYZE; return their names.

        Cheap when it is not time to look yet; any database error is logged and swallowed (the
        caller's work goes on with the statistics it has)."""
        if not is_postgresql(self.engine):
            return []
        now = time.monotonic()
        if (not force_check and now < self._next_check) or not self._lock.acquire(blocking=False):
            return []
        try:
            self._next_check = now + self.check_seconds
            return self._analyze_stale()
        except SQLAlchemyError as exc:  # unreachable, pool exhausted, …: the drain finds out itself
            log.warning("refreshing planner statistics failed: %s", type(exc).__name__)
            return []
        finally:
            self._lock.release()

    def _analyze_stale(self) -> list[str]:
        done = []
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            stale = conn.execute(
                _STALE, {"tables": self.tables, "floor": self.min_changes, "growth": self.growth}
            ).scalars()
            conn.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
            for table in list(stale):
                try:
                    conn.execute(text(f'ANALYZE "{table}"'))
                except DBAPIError as exc:  # its lock is taken: someone else is analyzing it
                    log.debug("ANALYZE %s skipped: %s", table, type(exc.orig).__name__)
                    continue
                done.append(table)
                self.analyzed += 1
            conn.execute(text("RESET lock_timeout"))
        if done:
            log.info("analyzed tables that grew", extra={"count": len(done)})
        return done
