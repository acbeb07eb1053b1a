"""The drain under a database outage (reconciler/drain.py, issue 18 item 6).

The database failing while the drain opens a transaction, claims a batch or commits it is no
event's fault: no event is marked failed, the outbox keeps the events, and the drain tries again
shortly, then stops. A failure inside applying a batch still falls back to one event at a time.
The counts (DrainStats, `verihook_events_applied_total`) hold only what was committed.

The faults are real: an engine on a closed port (connection refused); the worker's PostgreSQL
backend terminated with `pg_terminate_backend` from another connection at a chosen statement
(SQLAlchemy's engine events say when; nothing of verihook is replaced); and a private
PostgreSQL cluster crashed (`pg_ctl stop -m immediate`) before a batch's COMMIT, then restarted.

Every scenario delivers the same events: one `verified` per user (a status change, an audit
entry for the session and one for the user, one notification), then a `processing` for half
of the sessions (superseded whatever the batch boundaries, so no audit entry, no notification).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from app import create_app
from receiver.providers import build_providers
from receiver.services import Services
from receiver.store.audit_models import AuditEntry
from receiver.store.crypto import Keyring
from receiver.store.db import make_engine
from receiver.store.migrate import upgrade
from receiver.store.models import EventState, InboundEvent, ObservationRecord, OutboxEntry
from receiver.store.notification_models import Notification
from reconciler.audit.chain import verify_chain
from reconciler.drain import DrainStats, drain_ready_events
from tests.conftest import TEST_KEYS, make_settings
from tests.support.flow import count, send_contiguity
from tests.support.pg_cluster import PgCluster
from tests.support.redis_server import RedisServer, free_port
from tests.support.signing import contiguity_event

USERS = 8
SUPERSEDED = 4
EVENTS = USERS + SUPERSEDED
BATCH = 3
NOTIFY_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
ONE_AT_A_TIME = "applying its events one at a time"


def deliver(client) -> None:  # type: ignore[no-untyped-def]
    """The scenario's events, in this order (the drain claims them in id order)."""
    for user in range(USERS):
        body = contiguity_event("verified", f"vs_out{user}", user_ref=f"u-out{user}")
        assert send_contiguity(client, body).status_code == 200
    for user in range(SUPERSEDED):
        body = contiguity_event("processing", f"vs_out{user}", user_ref=f"u-out{user}")
        assert send_contiguity(client, body).status_code == 200


def applied_counter() -> tuple[float, float]:
    """verihook_events_applied_total{outcome=applied|superseded} in this process."""
    name = "verihook_events_applied_total"
    return tuple(  # type: ignore[return-value]
        REGISTRY.get_sample_value(name, {"outcome": outcome}) or 0.0
        for outcome in ("applied", "superseded")
    )


def apply_failures() -> float:
    """verihook_apply_failures_total in this process."""
    return REGISTRY.get_sample_value("verihook_apply_failures_total") or 0.0


def event_rows(engine: Engine) -> list[tuple[int, str, int]]:
    """(id, state, attempts) of every stored event."""
    with Session(engine) as db:
        rows = db.execute(
            select(InboundEvent.id, InboundEvent.state, InboundEvent.attempts).order_by(
                InboundEvent.id
            )
        ).all()
    return [(event_id, state, attempts) for event_id, state, attempts in rows]


def assert_applied_exactly_once(engine: Engine, runs: list[DrainStats]) -> None:
    """Every event applied once, nothing duplicated, and the runs' counts equal to it."""
    states = [state for _, state, _ in event_rows(engine)]
    assert states == ["applied"] * USERS + ["superseded"] * SUPERSEDED
    assert [attempts for _, _, attempts in event_rows(engine)] == [0] * EVENTS
    assert count(engine, OutboxEntry) == 0
    with Session(engine) as db:
        observations = db.execute(
            select(func.count(), func.count(func.distinct(ObservationRecord.event_id)))
        ).one()
        audit = dict(
            db.execute(select(AuditEntry.subject, func.count()).group_by(AuditEntry.subject)).all()
        )
        session_events = db.execute(
            select(func.count(func.distinct(AuditEntry.event_id))).where(
                AuditEntry.subject == "session"
            )
        ).scalar_one()
        notifications = db.execute(
            select(func.count(), func.count(func.distinct(Notification.user_ref)))
        ).one()
        assert verify_chain(db).ok
    assert tuple(observations) == (EVENTS, EVENTS)
    assert audit == {"session": USERS, "user": USERS} and session_events == USERS
    assert tuple(notifications) == (USERS, USERS)
    totals = (sum(r.applied for r in runs), sum(r.superseded for r in runs))
    assert totals == (USERS, SUPERSEDED)  # what was committed, each event once
    assert sum(r.failed for r in runs) == 0 and sum(r.quarantined for r in runs) == 0


@contextmanager
def listening(engine: Engine, name: str, hook: Callable[..., None]) -> Iterator[None]:
    """An engine event listener for the block (the engines are shared by the test session)."""
    event.listen(engine, name, hook)
    try:
        yield
    finally:
        event.remove(engine, name, hook)


@pytest.fixture
def dead_engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine whose database cannot be opened: a closed PostgreSQL port (connection
    refused), or for SQLite a path that is a directory ("unable to open database file")."""
    if backend == "postgresql":
        engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    else:
        (tmp_path / "not-a-database").mkdir()
        engine = make_engine(f"sqlite:///{tmp_path / 'not-a-database'}")
    yield engine
    engine.dispose()


@pytest.fixture
def batched(make_services, redis_server: RedisServer) -> Services:  # type: ignore[no-untyped-def]
    """Services applying BATCH events per transaction and notifying a backend (nobody listens:
    the notifications are only stored here)."""
    services = make_services(
        apply_batch_size=BATCH, notify_url="http://127.0.0.1:9/hook", notify_secret=NOTIFY_SECRET
    )
    services.redis.flushdb()
    return services


# ------------------------------------------------------------------ unit level, both backends


def test_a_database_refusing_on_the_first_claim_stops_the_drain_and_the_outbox_keeps_all(  # type: ignore[no-untyped-def]
    batched, dead_engine, caplog
):
    """Was: UnboundLocalError (`ids` used before the first claim set it), after a misleading
    "applying one at a time"."""
    deliver(create_app(services=batched).test_client())
    before, failures = applied_counter(), apply_failures()
    down = dataclasses.replace(batched, engine=dead_engine)
    with caplog.at_level(logging.WARNING, logger="reconciler.drain"):
        stats = drain_ready_events(down, max_seconds=10)
    assert stats.store_unavailable and stats.batches == 0
    assert (stats.applied, stats.superseded, stats.failed) == (0, 0, 0)
    assert applied_counter() == before and apply_failures() == failures
    assert ONE_AT_A_TIME not in caplog.text
    assert "database unavailable; the drain stops" in caplog.text
    assert count(batched.engine, OutboxEntry) == EVENTS  # nothing lost, nothing marked failed
    assert [(state, attempts) for _, state, attempts in event_rows(batched.engine)] == [
        ("received", 0)
    ] * EVENTS
    again = drain_ready_events(batched)
    assert not again.store_unavailable
    assert_applied_exactly_once(batched.engine, [stats, again])
    assert applied_counter() == (before[0] + USERS, before[1] + SUPERSEDED)


def test_a_database_lost_after_a_committed_batch_keeps_that_batch_counted_once(  # type: ignore[no-untyped-def]
    batched, dead_engine, caplog
):
    """The database goes away once the first batch commits, so the second loop cannot claim.
    Was: the first batch's events, already committed, were "applied one at a time" again, each
    counted as a failure, and recording the failure raised out of the drain."""
    deliver(create_app(services=batched).test_client())
    before, failures = applied_counter(), apply_failures()
    live = batched.engine

    def lose_the_database(conn: Any) -> None:  # the first batch commits on `live`; then down
        batched.engine = dead_engine

    with caplog.at_level(logging.WARNING, logger="reconciler.drain"):
        with listening(live, "commit", lose_the_database):
            stats = drain_ready_events(batched, max_seconds=10)
    batched.engine = live
    assert stats.store_unavailable
    assert (stats.batches, stats.applied, stats.superseded, stats.failed) == (1, BATCH, 0, 0)
    assert stats.notified_users == {f"u-out{user}" for user in range(BATCH)}
    assert applied_counter() == (before[0] + BATCH, before[1]) and apply_failures() == failures
    assert ONE_AT_A_TIME not in caplog.text
    rows = event_rows(live)
    assert [(state, attempts) for _, state, attempts in rows[:BATCH]] == [("applied", 0)] * BATCH
    assert [(s, a) for _, s, a in rows[BATCH:]] == [("received", 0)] * (EVENTS - BATCH)
    assert count(live, OutboxEntry) == EVENTS - BATCH
    again = drain_ready_events(batched)
    assert_applied_exactly_once(live, [stats, again])


# ------------------------------------------------------------------ PostgreSQL faults


@pytest.fixture
def terminator(engines: dict[str, Engine | None]) -> Iterator[Callable[[Any], None]]:
    """Terminate a connection's PostgreSQL backend from another connection, waiting until it
    has exited (so the statement that follows meets a closed connection)."""
    shared = engines["postgresql"]
    if shared is None:
        pytest.skip("PostgreSQL is not reachable")
    admin = create_engine(
        shared.url.render_as_string(hide_password=False),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
    )

    def terminate(conn: Any) -> None:
        pid = conn.connection.dbapi_connection.info.backend_pid
        with admin.connect() as connection:
            done = connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            assert done.scalar_one() is True

    yield terminate
    admin.dispose()


def is_claim(statement: str) -> bool:
    """The drain's batch claim (claim_ready), not claim_one: it orders and limits."""
    return all(part in statement for part in ("FROM outbox", "FOR UPDATE SKIP LOCKED", "LIMIT"))


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("moment", ["claim", "apply", "commit"])
def test_a_backend_terminated_during_the_second_batch_leaves_every_event_applied_once(  # type: ignore[no-untyped-def]
    batched, terminator, moment, caplog
):
    """`pg_terminate_backend` on the worker's backend while it drains: as the second batch is
    claimed, while it is applied (its observations inserted), or just before its COMMIT. One
    drain still applies every event exactly once and counts only what was committed: a lost
    claim or commit is tried again in a fresh transaction (was: the claim re-ran the previous,
    committed batch one at a time; the commit counted the batch twice, once before the commit
    failed and once more one at a time), a lost application goes one event at a time as before.
    """
    deliver(create_app(services=batched).test_client())
    before = applied_counter()
    seen = {"claim": 0, "apply": 0, "commit": 0}

    def on_statement(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        step = (
            "claim"
            if is_claim(statement)
            else "apply"
            if statement.startswith("INSERT INTO observations")
            else None
        )
        if step is not None:
            seen[step] += 1
            if step == moment and seen[step] == 2:
                terminator(conn)

    def on_commit(conn: Any) -> None:
        seen["commit"] += 1
        if moment == "commit" and seen["commit"] == 2:
            terminator(conn)

    with caplog.at_level(logging.WARNING, logger="reconciler.drain"):
        with (
            listening(batched.engine, "before_cursor_execute", on_statement),
            listening(batched.engine, "commit", on_commit),
        ):
            stats = drain_ready_events(batched, max_seconds=30)
    assert seen[moment] >= 2, seen  # the fault did happen
    assert_applied_exactly_once(batched.engine, [stats])
    assert applied_counter() == (before[0] + USERS, before[1] + SUPERSEDED)
    if moment == "apply":
        assert ONE_AT_A_TIME in caplog.text
    else:
        assert ONE_AT_A_TIME not in caplog.text
        assert "database unavailable; trying again shortly" in caplog.text
    assert not stats.store_unavailable


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster (it is crashed on purpose; never the machine's own)."""
    reason = PgCluster.available()
    if reason is not None:
        pytest.skip(f"no private PostgreSQL cluster: {reason}")
    with PgCluster() as made:
        yield made


def test_postgresql_crashing_before_a_commit_stops_the_drain_and_a_later_drain_finishes(  # type: ignore[no-untyped-def]
    cluster, redis_server, tmp_path
):
    """The whole server goes down (crash) just before the second batch's COMMIT and stays down
    while the drain tries again: the drain stops with the first batch counted, no event marked
    failed. Once PostgreSQL is back (crash recovery), the next drain applies the rest: every
    event applied once (was: each event of the batch "failed" one at a time, then recording
    the failure raised out of the drain)."""
    engine = make_engine(cluster.url)
    upgrade(engine)
    settings = make_settings(
        engine,
        redis_server.url,
        tmp_path,
        apply_batch_size=BATCH,
        notify_url="http://127.0.0.1:9/hook",
        notify_secret=NOTIFY_SECRET,
    )
    services = Services(
        settings=settings,
        engine=engine,
        keyring=Keyring.parse(TEST_KEYS),
        providers=build_providers(settings),
    )
    try:
        deliver(create_app(services=services).test_client())
        commits = 0

        def crash_before_the_second_commit(conn: Any) -> None:
            nonlocal commits
            commits += 1
            if commits == 2:
                cluster.crash()

        with listening(engine, "commit", crash_before_the_second_commit):
            first = drain_ready_events(services, max_seconds=30)
        assert first.store_unavailable
        assert (first.batches, first.applied, first.superseded, first.failed) == (1, BATCH, 0, 0)
        cluster.start()  # the same data directory: crash recovery
        second = drain_ready_events(services, max_seconds=30)
        assert not second.store_unavailable and second.failed == 0
        assert [state for _, state, _ in event_rows(engine)][:BATCH] == [EventState.APPLIED] * 3
        assert_applied_exactly_once(engine, [first, second])
    finally:
        services.close()
