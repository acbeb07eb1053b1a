"""The ingest writer on real SQLite and PostgreSQL: batches store each event once, a refused row
fails alone, a dropped connection is retried once, a dead database is StoreUnavailableError."""

from __future__ import annotations

import gc
import os
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlmodel import Session

from receiver.event_writer import EventWriter, Refused
from receiver.exceptions import StoreUnavailableError
from receiver.store.crypto import Keyring
from receiver.store.db import make_ingest_engine
from receiver.store.event_batches import NewEvent, StoredEvent, prepare_event, write_events
from receiver.store.events import open_payload
from receiver.store.models import InboundEvent, OutboxEntry
from tests.conftest import TEST_KEYS

KEYRING = Keyring.parse(TEST_KEYS)


def row(key: str, *, session_id: str = "vs_1", quarantined: bool = False):  # type: ignore[no-untyped-def]
    return prepare_event(
        NewEvent(
            provider="contiguity",
            dedupe_key=key,
            kind="webhook",
            record={"body": f"body of {key}"},
            received_at=datetime.now(UTC),
            session_id=session_id,
            parse_error="not understood" if quarantined else None,
        ),
        keyring=KEYRING,
    )


def counts(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        events = db.execute(select(func.count()).select_from(InboundEvent)).scalar_one()
        outbox = db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()
    return events, outbox


def test_a_batch_stores_new_rows_once_and_answers_repeats_with_the_stored_id(  # type: ignore[no-untyped-def]
    engine, ingest_engines, backend
):
    ingest = ingest_engines[backend]
    with ingest.begin() as conn:
        (first,) = write_events(
            conn.connection.driver_connection, [row("a")], dialect=ingest.dialect
        )
    batch = [row("b"), row("a"), row("b"), row("q", quarantined=True), row("c")]
    with ingest.begin() as conn:
        results = write_events(conn.connection.driver_connection, batch, dialect=ingest.dialect)
    assert first.created
    b, a, b_again, q, c = results
    assert (b.created, a, b_again, q.created, c.created) == (
        True,
        StoredEvent(first.event_id, False),
        StoredEvent(b.event_id, False),
        True,
        True,
    )
    assert counts(engine) == (4, 3)  # the quarantined event waits for no worker
    with Session(engine) as db:
        stored = db.get(InboundEvent, c.event_id)
        assert stored is not None and stored.dedupe_key == "c"
        assert open_payload(stored, keyring=KEYRING) == {"body": "body of c"}
        assert db.get(InboundEvent, q.event_id).state == "quarantined"  # type: ignore[union-attr]


def submit_together(writer: EventWriter, rows: list) -> list:  # type: ignore[type-arg]
    """Store each row from its own thread, released together (so batches form)."""
    results: list = [None] * len(rows)
    barrier = threading.Barrier(len(rows))

    def store(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[index] = writer.store(rows[index])
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=store, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_stores_share_commits_and_agree_on_ids(engine, ingest_engines, backend):  # type: ignore[no-untyped-def]
    writer = EventWriter(ingest_engines[backend], max_batch=16)
    rows = [row(f"k{i % 20}") for i in range(60)]  # every key three times
    results = submit_together(writer, rows)
    writer.close()
    assert all(isinstance(r, StoredEvent) for r in results), results
    by_key: dict[str, set[int]] = {}
    for stored_row, result in zip(rows, results, strict=True):
        by_key.setdefault(stored_row.dedupe_key, set()).add(result.event_id)
    assert all(len(ids) == 1 for ids in by_key.values())  # one id per key, whoever asked
    assert sum(r.created for r in results) == 20
    assert counts(engine) == (20, 20)


def test_a_row_the_store_refuses_fails_alone(engine, ingest_engines, backend):  # type: ignore[no-untyped-def]
    """A lone surrogate cannot be encoded by either driver: that row is Refused, its neighbours in
    the same batch are stored."""
    writer = EventWriter(ingest_engines[backend], max_batch=16)
    rows = [row(f"ok{i}") for i in range(11)] + [row("bad", session_id="vs_\ud800")]
    results = submit_together(writer, rows)
    writer.close()
    assert isinstance(results[-1], Refused) and "Error" in results[-1].error
    assert all(isinstance(r, StoredEvent) and r.created for r in results[:-1]), results
    assert counts(engine) == (11, 11)


def test_a_dropped_connection_is_retried_once_on_a_fresh_one(engine, ingest_engines, backend):  # type: ignore[no-untyped-def]
    if backend != "postgresql":
        pytest.skip("a server-side disconnection is a PostgreSQL matter")
    ingest = ingest_engines[backend]
    writer = EventWriter(ingest)
    assert writer.store(row("before")).created  # type: ignore[union-attr]
    with engine.begin() as conn:  # end every idle ingest connection, as a server restart would
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'"
            )
        ).scalar_one()
    assert ended >= 1
    assert writer.store(row("after")).created  # type: ignore[union-attr]
    assert counts(engine) == (2, 2)


def test_the_writer_keeps_one_connection_and_gives_it_back(ingest_engines, backend):  # type: ignore[no-untyped-def]
    """Batches share one kept connection (no pool check-out each); close() returns it to the
    pool, and so does dropping a writer that was never closed, so no connection stays out."""
    pool = ingest_engines[backend].pool
    writer = EventWriter(ingest_engines[backend])
    assert writer.store(row("one")).created  # type: ignore[union-attr]
    assert pool.checkedout() == 1  # type: ignore[attr-defined]
    kept = writer._kept[0][0].driver_connection
    assert writer.store(row("two")).created  # type: ignore[union-attr]
    assert writer._kept[0][0].driver_connection is kept and pool.checkedout() == 1  # type: ignore[attr-defined]
    writer.close()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
    assert writer.store(row("three")).created  # type: ignore[union-attr]  # after close: a new one
    assert pool.checkedout() == 1  # type: ignore[attr-defined]
    del writer
    gc.collect()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_connection_kept_across_a_disposal_of_its_engine_is_closed(engine, backend):  # type: ignore[no-untyped-def]
    """Another part of the process disposed the engine (its pool is replaced): the writer's kept
    connection is closed, not checked in to the old pool where it would stay open, and the next
    batch takes one from the new pool."""
    ingest = make_ingest_engine(engine.url.render_as_string(hide_password=False))
    try:
        writer = EventWriter(ingest)
        assert writer.store(row("before")).created  # type: ignore[union-attr]
        old = writer._kept[0][0].driver_connection
        ingest.dispose()
        assert writer.store(row("after")).created  # type: ignore[union-attr]
        assert writer._kept[0][0].driver_connection is not old
        with pytest.raises(Exception, match="(?i)closed"):
            old.execute("SELECT 1")
        assert ingest.pool.checkedout() == 1  # type: ignore[attr-defined]
        writer.close()
        assert ingest.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        ingest.dispose()
    assert counts(engine) == (2, 2)


def test_a_forked_child_leaves_the_parents_kept_connection_alone(make_services, backend):  # type: ignore[no-untyped-def]
    """gunicorn's post_fork: the child drops the writer it inherited without closing its
    connection (closing would end the parent's session on the server) and writes on its own."""
    services = make_services()
    assert services.event_writer.store(row("parent-1")).created  # type: ignore[union-attr]
    kept = services.event_writer._kept[0][0].driver_connection
    pid = os.fork()
    if pid == 0:  # the child: nothing of pytest's, just an exit code
        code = 1
        try:
            services.after_fork()
            gc.collect()
            stored = services.event_writer.store(row("child"))
            code = 0 if isinstance(stored, StoredEvent) and stored.created else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    gc.collect()
    assert services.event_writer.store(row("parent-2")).created  # type: ignore[union-attr]
    # the same connection, so it was not ended under the parent and replaced by the retry
    assert services.event_writer._kept[0][0].driver_connection is kept
    assert counts(services.engine) == (3, 3)


def test_an_unreachable_database_is_store_unavailable(backend, tmp_path):  # type: ignore[no-untyped-def]
    if backend == "sqlite":
        directory = tmp_path / "a-directory.db"
        directory.mkdir()
        url = f"sqlite:///{directory}"
    else:
        url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    dead = make_ingest_engine(url)
    try:
        results = submit_together(EventWriter(dead), [row(f"x{i}") for i in range(5)])
    finally:
        dead.dispose()
    assert all(isinstance(r, StoreUnavailableError) for r in results), results


def test_sqlite_commits_reach_the_disk_before_the_answer(tmp_path):  # type: ignore[no-untyped-def]
    """A delivery is answered 2xx after its commit, and on SQLite a commit is on disk only with
    `synchronous=FULL` in WAL mode (NORMAL loses the last commits on a power loss): both the
    ingest engine and the others use it."""
    from receiver.store.db import make_engine

    url = f"sqlite:///{tmp_path / 'durable.db'}"
    for engine in (make_engine(url), make_ingest_engine(url)):
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert connection.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL
        engine.dispose()
