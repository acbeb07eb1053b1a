"""The store step alone, a delivery per commit: verihook's ingest writer against the floor.

What a sync worker pays per delivery to make it durable, without HTTP, parsing or sealing: the
floor's one-row `INSERT … ON CONFLICT DO NOTHING` on its autocommit connection
(bench/floor_app.py), against `EventWriter.store` of one prepared row (group commit, SQLite's
writer lock, the event and outbox rows, COMMIT). `--what-if` also times the writer on a database
without the event's three secondary indexes (state, session, user). CPU of this process
(`time.process_time`, the driver's and SQLite's work included) and wall time per delivery, the
median of `--repeat` rounds, run in turn on fresh databases. Bounded: `--deliveries` per round.

    .venv/bin/python -m bench.store_step --backend sqlite --deliveries 3000 --repeat 3 --what-if
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import floor_app
from bench.common import write_result
from receiver.event_writer import EventWriter
from receiver.store.crypto import Keyring
from receiver.store.db import make_engine, make_ingest_engine
from receiver.store.event_batches import EventRow, NewEvent, prepare_event
from receiver.store.migrate import upgrade
from tests.conftest import TEST_KEYS, create_private_database, drop_private_database

SECONDARY_INDEXES = (
    "ix_inbound_events_session",
    "ix_inbound_events_state_received",
    "ix_inbound_events_user_ref",
)
BODY = os.urandom(512).hex()
"""About 1 KB, the size of bench.ingest's iDenfy deliveries."""


def prepared_rows(count: int, tag: str) -> list[EventRow]:
    keyring = Keyring.parse(TEST_KEYS)
    return [
        prepare_event(
            NewEvent(
                provider="idenfy",
                dedupe_key=f"{tag}-{i}",
                kind="webhook",
                record={"body": BODY, "headers": [["Content-Type", "application/json"]]},
                received_at=datetime.now(UTC),
                session_id=f"scan-{tag}-{i}",
                user_ref=f"user-{tag}-{i}",
            ),
            keyring=keyring,
        )
        for i in range(count)
    ]


def timed(step: Callable[[int], Any], count: int) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        step(i)
    return {
        "cpu_us": round((time.process_time() - cpu) / count * 1e6, 1),
        "wall_us": round((time.perf_counter() - wall) / count * 1e6, 1),
    }


def fresh_database(backend: str, tmp: Path, name: str) -> str:
    if backend == "postgresql":
        return create_private_database()
    return f"sqlite:///{tmp / name}.db"


def floor_round(url: str, count: int, tag: str) -> dict[str, float]:
    floor_app.create_table(url)
    conn = floor_app._connect(url)
    insert = floor_app._INSERT.format(p="?" if url.startswith("sqlite") else "%s")
    try:
        return timed(lambda i: conn.execute(insert, ("idenfy", f"{tag}-{i}", BODY.encode())), count)
    finally:
        conn.close()


def writer_round(url: str, count: int, tag: str, *, without_indexes: bool) -> dict[str, float]:
    engine = make_engine(url)
    upgrade(engine)
    if without_indexes:
        with engine.begin() as conn:
            for index in SECONDARY_INDEXES:
                conn.exec_driver_sql(f"DROP INDEX {index}")
    engine.dispose()
    ingest = make_ingest_engine(url)
    writer = EventWriter(ingest)
    rows = prepared_rows(count, tag)
    try:
        return timed(lambda i: writer.store(rows[i]), count)
    finally:
        writer.close()
        ingest.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--what-if", action="store_true", help="also without 3 event indexes")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    kinds = ["floor", "verihook", *(["verihook_without_indexes"] if args.what_if else [])]
    found: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    tmp = Path(tempfile.mkdtemp(prefix="verihook-store-step-"))
    try:
        for n in range(args.repeat):
            for kind in kinds:
                url = fresh_database(args.backend, tmp, f"{kind}{n}")
                try:
                    if kind == "floor":
                        result = floor_round(url, args.deliveries, f"f{n}")
                    else:
                        bare = kind == "verihook_without_indexes"
                        result = writer_round(url, args.deliveries, f"v{n}", without_indexes=bare)
                finally:
                    if args.backend == "postgresql":
                        drop_private_database(url)
                found[kind].append(result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {
        kind: {key: statistics.median(r[key] for r in rounds) for key in ("cpu_us", "wall_us")}
        for kind, rounds in found.items()
    }
    for kind, median in medians.items():
        print(f"{kind:26} CPU {median['cpu_us']:6.0f} µs   wall {median['wall_us']:6.0f} µs")
    result = {
        "backend": args.backend,
        "deliveries": args.deliveries,
        "repeat": args.repeat,
        "machine_load_1min": os.getloadavg()[0],
        "median_per_delivery": medians,
        "rounds": found,
    }
    write_result(args.json or f"bench/results/store_step_{args.backend}.json", result)


if __name__ == "__main__":
    main()
