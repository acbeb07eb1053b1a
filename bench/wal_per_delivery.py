"""Where PostgreSQL's share of a delivery goes: the store statement alone, per delivery.

Method (issue 19 item 2): on a fresh database, store DELIVERIES prepared iDenfy events through
`write_events` (verihook's one insert path, on an autocommit psycopg connection, as the ingest
writer does) in batches of 1 (what a sync worker always sends) and of 8 (a gthread process under
load), and the same bodies through the durable floor's one-row insert (bench/floor_app.py). For
each: WAL bytes per delivery (this database's records between the loop's two WAL positions,
read with pg_walinspect, so others' writes on a shared server do not count; by relation), CPU of
the serving backend (/proc of `pg_backend_pid()`), CPU of this client process (the driver's
work: building parameters, parsing answers), wall time, statements (= round trips = commits),
and the rows and index entries the schema makes each delivery write. Sealing and parsing happen
before the clock starts: this is the store's share only.

    .venv/bin/python -m bench.wal_per_delivery --deliveries 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import text

from bench import floor_app
from bench.common import write_result
from bench.costs import cpu_seconds
from bench.ingest import idenfy_deliveries
from receiver.canonical import Source
from receiver.ingest import _new_event
from receiver.providers import build_providers
from receiver.providers.base import Delivery
from receiver.store.crypto import Keyring
from receiver.store.db import make_engine
from receiver.store.event_batches import EventRow, prepare_event, write_events
from receiver.store.migrate import upgrade
from tests.conftest import TEST_KEYS, create_private_database, drop_private_database, make_settings

INDEXES = """
SELECT c.relname, count(i.indexrelid) FROM pg_class c LEFT JOIN pg_index i ON i.indrelid = c.oid
WHERE c.relname IN ('inbound_events', 'outbox', 'floor_events') AND c.relkind = 'r'
GROUP BY c.relname
"""


def rows_for(url: str, count: int, tag: str) -> tuple[list[EventRow], list[tuple[str, str, bytes]]]:
    """Prepared verihook rows and the floor's (provider, key, body) for `count` deliveries."""
    engine = make_engine(url)
    from pathlib import Path

    settings = make_settings(engine, "redis://127.0.0.1:1", Path("/tmp"))
    provider = build_providers(settings)["idenfy"]
    keyring = Keyring.parse(TEST_KEYS)
    events, floor = [], []
    for body, signature in idenfy_deliveries(count, tag):
        delivery = Delivery(
            provider="idenfy",
            source=Source.WEBHOOK,
            body=body,
            headers=(("Content-Type", "application/json"), ("Idenfy-Signature", signature)),
        )
        event = _new_event(delivery, provider, provider.parse(delivery), None)
        events.append(prepare_event(event, keyring=keyring))
        floor.append(("idenfy", event.dedupe_key, body))
    engine.dispose()
    return events, floor


WAL_RECORDS = """
WITH ours AS (
    SELECT * FROM pg_get_wal_records_info(%(start)s::pg_lsn, %(end)s::pg_lsn)
), xids AS (
    SELECT DISTINCT xid FROM ours WHERE block_ref LIKE %(db)s AND xid <> 0
)
SELECT coalesce(c.relname, o.resource_manager), sum(o.record_length), sum(o.fpi_length), count(*)
FROM ours o
LEFT JOIN pg_class c ON c.relfilenode = nullif(
    substring(o.block_ref from 'rel [0-9]+/[0-9]+/([0-9]+)'), '')::oid
WHERE o.xid IN (SELECT xid FROM xids) OR o.block_ref LIKE %(db)s
GROUP BY 1 ORDER BY 2 DESC
"""
"""This database's WAL records between two positions (pg_walinspect), by relation (a record is
counted under the first block it touches; commit records under Transaction)."""


def measure(conn: psycopg.Connection, chunks: list[Callable[[], int]]) -> dict[str, Any]:
    """Run each chunk of work (returns how many deliveries it stored), reading this database's
    WAL after each (a busy shared server recycles WAL segments within seconds), and divide the
    costs by the deliveries."""
    pid, db = conn.execute(
        "SELECT pg_backend_pid(), oid FROM pg_database WHERE datname = current_database()"
    ).fetchone()  # type: ignore[misc]
    count, client, wall, server = 0, 0.0, 0.0, 0.0
    by_relation: dict[str, list[int]] = {}
    for work in chunks:
        start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        server0, client0, wall0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        count += work()
        client += time.process_time() - client0
        wall += time.perf_counter() - wall0
        server += cpu_seconds(pid) - server0
        end = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        for name, size, fpi, records in conn.execute(
            WAL_RECORDS, {"start": str(start), "end": str(end), "db": f"%/{db}/%"}
        ):
            found = by_relation.setdefault(name, [0, 0, 0])
            found[0], found[1], found[2] = found[0] + size, found[1] + fpi, found[2] + records
    return {
        "wal_bytes": sum(r[0] for r in by_relation.values()) / count,
        "wal_fpi_bytes": sum(r[1] for r in by_relation.values()) / count,
        "wal_records": sum(r[2] for r in by_relation.values()) / count,
        "wal_by_relation": {
            name: round(r[0] / count)
            for name, r in sorted(by_relation.items(), key=lambda item: -item[1][0])
        },
        "server_cpu_us": server * 1e6 / count,
        "client_cpu_us": client * 1e6 / count,
        "wall_us": wall * 1e6 / count,
    }


CHUNK = 80
"""Deliveries between two WAL readings."""


SECONDARY_INDEXES = (
    "ix_inbound_events_state_received",
    "ix_inbound_events_session",
    "ix_inbound_events_user_ref",
    "ix_outbox_available",
)


def run(deliveries: int, repeat: int, what_if: bool = False) -> dict[str, Any]:
    url = create_private_database()
    try:
        engine = make_engine(url)
        upgrade(engine)
        floor_app.create_table(url)
        with engine.connect() as sa:
            indexes = dict(sa.execute(text(INDEXES)).all())
        engine.dispose()
        dialect = engine.dialect
        libpq_url = url.replace("postgresql+psycopg://", "postgresql://")
        conn = psycopg.connect(libpq_url, autocommit=True)
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        variants: dict[str, list[dict[str, Any]]] = {}
        for n in range(repeat):
            events, floor = rows_for(url, deliveries, f"w{n}t{time.time_ns()}")

            def verihook(batch: int, events: list[EventRow]) -> int:
                for first in range(0, len(events), batch):
                    write_events(conn, events[first : first + batch], dialect=dialect)
                return len(events)

            def floor_insert(floor: list[tuple[str, str, bytes]]) -> int:
                statement = floor_app._INSERT.format(p="%s")
                for row in floor:
                    conn.execute(statement, row)
                return len(floor)

            def chunked(work: Callable[..., int], *args: Any) -> list[Callable[[], int]]:
                items = args[-1]
                return [
                    functools.partial(work, *args[:-1], items[i : i + CHUNK])
                    for i in range(0, len(items), CHUNK)
                ]

            half = len(events) // 2
            first, second = events[:half], events[half:]
            variants.setdefault("floor", []).append(
                measure(conn, chunked(floor_insert, floor[:half]))
            )
            variants.setdefault("verihook, batch of 1", []).append(
                measure(conn, chunked(verihook, 1, first))
            )
            variants.setdefault("verihook, batch of 8", []).append(
                measure(conn, chunked(verihook, 8, second))
            )
        if what_if:  # the most that dropping secondary indexes could buy
            for index in SECONDARY_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {index}")
            for n in range(repeat):
                events, _ = rows_for(url, deliveries // 2, f"x{n}t{time.time_ns()}")
                variants.setdefault("verihook, batch of 1, no secondary index", []).append(
                    measure(conn, chunked(verihook, 1, events))
                )
        conn.close()
    finally:
        drop_private_database(url)
    return {
        "deliveries": deliveries,
        "repeat": repeat,
        "index_count": indexes,
        "variants": {
            name: {
                **{
                    key: round(statistics.median(r[key] for r in runs), 1)
                    for key in (
                        "wal_bytes",
                        "wal_fpi_bytes",
                        "wal_records",
                        "server_cpu_us",
                        "client_cpu_us",
                        "wall_us",
                    )
                },
                "wal_by_relation": runs[-1]["wal_by_relation"],
                "statements_per_delivery": 1 / 8 if "batch of 8" in name else 1.0,
            }
            for name, runs in variants.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--what-if", action="store_true", help="also without secondary indexes")
    parser.add_argument("--json", default="bench/results/wal_per_delivery.json")
    args = parser.parse_args()
    result = run(args.deliveries, args.repeat, args.what_if)
    print(json.dumps(result, indent=2))
    write_result(args.json, result)


if __name__ == "__main__":
    main()
