"""Apply throughput: how many stored events/s N worker processes apply (issue 3 target ≥ 1,000/s).

Method: store EVENTS signed Contiguity deliveries through the real ingest path (authenticate,
parse, encrypt, insert event + outbox) into a fresh database, each session getting
EVENTS_PER_SESSION status changes in shuffled order; then start WORKERS `verihook worker --burst`
processes at once and time from their start until the outbox is empty (`events_per_second`), and
the rate while they were applying, without their start-up (`events_per_second_applying`). Prints
a table and writes JSON. Bounded: a fixed number of events, a 600 s cap.

    .venv/bin/python -m bench.apply_throughput --backend postgresql --events 20000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from receiver.canonical import Source
from receiver.ingest import ingest
from receiver.providers import build_providers
from receiver.providers.base import Delivery
from receiver.services import Services
from receiver.store.crypto import Keyring
from receiver.store.db import make_engine
from receiver.store.migrate import upgrade
from receiver.store.models import InboundEvent, OutboxEntry
from tests.conftest import TEST_KEYS, create_private_database, drop_private_database, make_settings
from tests.support import signing
from tests.support.processes import settings_env, verihook
from tests.support.redis_server import RedisServer

KINDS = ["started", "processing", "requires_input", "processing", "verified"]


def store_events(services: Services, count: int, per_session: int) -> float:
    """Ingest `count` signed deliveries; return the ingest rate (events/s, single thread)."""
    bodies = [
        signing.contiguity_event(
            KINDS[i % per_session % len(KINDS)],
            f"vs_b{i // per_session}",
            user_ref=f"b{i // per_session}",
            timestamp=1000 + i % per_session,
        )
        for i in range(count)
    ]
    random.Random(1).shuffle(bodies)
    provider = services.providers["contiguity"]
    started = time.perf_counter()
    for body in bodies:
        now = time.time()
        delivery = Delivery(
            provider="contiguity",
            source=Source.WEBHOOK,
            body=body,
            headers=(
                ("Content-Type", "application/json"),
                ("Contiguity-Signature", signing.contiguity_header(body, timestamp=int(now))),
            ),
        )
        ingest(
            delivery,
            provider,
            engine=services.engine,
            keyring=services.keyring,
            writer=services.event_writer,
            now=now,
        )
    return count / (time.perf_counter() - started)


def outbox_size(services: Services) -> int:
    with Session(services.engine) as db:
        return db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()


def applying_rate(db: Session) -> int | None:
    """Events/s while the workers were applying, without their start-up (about 1 s per process:
    the interpreter, imports, connections): the events marked after the first batch, over the
    time from the first batch's mark to the last one's (a batch marks its events with one time)."""
    marks = db.execute(
        select(InboundEvent.applied_at, func.count())
        .where(InboundEvent.applied_at.is_not(None))  # type: ignore[union-attr]
        .group_by(InboundEvent.applied_at)
        .order_by(InboundEvent.applied_at)
    ).all()
    if len(marks) < 2:
        return None
    span = (marks[-1][0] - marks[0][0]).total_seconds()
    after_first = sum(count for _, count in marks[1:])
    return round(after_first / span) if span > 0 else None


def run(backend: str, events: int, workers: int, batch: int, per_session: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="verihook-bench-"))
    database = create_private_database() if backend == "postgresql" else None
    engine = make_engine(database or f"sqlite:///{tmp / 'bench.db'}")
    redis = RedisServer().start()
    try:
        upgrade(engine)
        settings = make_settings(engine, redis.url, tmp, apply_batch_size=batch)
        services = Services(
            settings=settings,
            engine=engine,
            keyring=Keyring.parse(TEST_KEYS),
            providers=build_providers(settings),
        )
        ingest_rate = store_events(services, events, per_session)
        env = settings_env(settings)
        started = time.perf_counter()
        procs = [verihook("worker", "--burst", env=env) for _ in range(workers)]
        for proc in procs:
            proc.communicate(timeout=600)
        elapsed = time.perf_counter() - started
        with Session(engine) as db:
            done = db.execute(
                select(func.count())
                .select_from(InboundEvent)
                .where(InboundEvent.state.in_(["applied", "superseded"]))
            ).scalar_one()
            applying = applying_rate(db)
        return {
            "backend": backend,
            "events": events,
            "workers": workers,
            "batch": batch,
            "applied": done,
            "left_in_outbox": outbox_size(services),
            "seconds": round(elapsed, 2),
            "events_per_second": round(done / elapsed),
            "events_per_second_applying": applying,
            "single_thread_ingest_per_second": round(ingest_rate),
        }
    finally:
        engine.dispose()
        redis.kill()
        if database:
            drop_private_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--per-session", type=int, default=5)
    parser.add_argument("--json", default="bench/results/apply_throughput.json")
    args = parser.parse_args()
    result = run(args.backend, args.events, args.workers, args.batch, args.per_session)
    print(" | ".join(f"{k}={v}" for k, v in result.items()))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if result["left_in_outbox"] == 0 else 1)


if __name__ == "__main__":
    main()
