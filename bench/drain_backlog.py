"""Drain rate by backlog size: does one worker's cost per event stay flat as the tables grow?

Method (issue 19 item 5): store BACKLOG signed Contiguity deliveries (PER_SESSION status changes
per session, shuffled, one user per session) through the real parse → seal → batch insert path
into a fresh database, never analyzed (as after a burst of traffic on a new deployment), then
start one worker process that drains the whole backlog (what `verihook worker --burst` runs,
without its 60 s cap per job) and sample the outbox every second. The figures: events/s over the
whole drain, over its first and its last fifth (the tables are small, then large), and their
ratio; `--explain` also prints EXPLAIN ANALYZE of the batch's session and user look-ups half way
through. Bounded: a fixed backlog, a time cap.

    .venv/bin/python -m bench.drain_backlog --backend postgresql --backlog 10000 100000
    .venv/bin/python -m bench.drain_backlog --backend postgresql --backlog 1000000  # ~20 min
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from bench.common import write_result
from receiver.canonical import Source
from receiver.event_writer import EventWriter
from receiver.ingest import _new_event
from receiver.providers import build_providers
from receiver.providers.base import Delivery
from receiver.services import Services
from receiver.store.crypto import Keyring
from receiver.store.db import make_engine, make_ingest_engine
from receiver.store.event_batches import prepare_event
from receiver.store.migrate import upgrade
from receiver.store.models import InboundEvent, OutboxEntry
from tests.conftest import TEST_KEYS, create_private_database, drop_private_database, make_settings
from tests.support import signing
from tests.support.processes import ROOT, settings_env
from tests.support.redis_server import RedisServer

KINDS = ["started", "processing", "requires_input", "processing", "verified"]
FILL_BATCH = 500
DRAIN_CHILD = """
import json, sys, time
from sqlalchemy import event
from receiver.services import Services
from receiver.settings import Settings
from reconciler.drain import drain_ready_events
services = Services.build(Settings())
spent = {}
@event.listens_for(services.engine, "before_cursor_execute")
def _before(conn, cursor, statement, parameters, context, executemany):
    conn.info["started"] = time.perf_counter()
@event.listens_for(services.engine, "after_cursor_execute")
def _after(conn, cursor, statement, parameters, context, executemany):
    key = " ".join(statement.split())[:70]
    total, count = spent.get(key, (0.0, 0))
    spent[key] = (total + time.perf_counter() - conn.info["started"], count + 1)
stats = drain_ready_events(services, max_seconds=float(sys.argv[1]))
top = sorted(spent.items(), key=lambda item: -item[1][0])[:12]
print(json.dumps({"applied": stats.applied, "superseded": stats.superseded,
    "failed": stats.failed, "batches": stats.batches,
    "sql_seconds": {k: [round(t, 2), n] for k, (t, n) in top}}))
"""


def fill(services: Services, count: int, per_session: int, tag: str) -> float:
    """Store `count` deliveries in batches of FILL_BATCH; return the seconds it took."""
    provider = services.providers["contiguity"]
    order = list(range(count))
    random.Random(1).shuffle(order)
    writer = EventWriter(make_ingest_engine(services.settings.database_url))
    started = time.perf_counter()
    for first in range(0, count, FILL_BATCH):
        rows = []
        for i in order[first : first + FILL_BATCH]:
            body = signing.contiguity_event(
                KINDS[i % per_session % len(KINDS)],
                f"vs_{tag}{i // per_session}",
                user_ref=f"u{tag}{i // per_session}",
                timestamp=1000 + i % per_session,
                event_id=f"evt_{tag}_{i}",
            )
            delivery = Delivery(
                provider="contiguity",
                source=Source.WEBHOOK,
                body=body,
                headers=(("Content-Type", "application/json"),),
            )
            event = _new_event(delivery, provider, provider.parse(delivery), None)
            rows.append(prepare_event(event, keyring=services.keyring))
        writer._write(rows)  # one transaction per FILL_BATCH rows
    writer.engine.dispose()
    return time.perf_counter() - started


def outbox_size(db: Session) -> int:
    return db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()


def drain(services: Services, backlog: int, explain: bool, cap: float) -> dict[str, Any]:
    """Run one draining worker process; sample the outbox each second."""
    env = settings_env(services.settings)
    samples: list[tuple[float, int]] = []
    plans: dict[str, str] = {}
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", DRAIN_CHILD, str(cap)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with Session(services.engine) as db:
        while child.poll() is None:
            left = outbox_size(db)
            db.rollback()
            samples.append((time.perf_counter() - started, left))
            if explain and not plans and left <= backlog // 2:
                plans = explain_plans(services)
            time.sleep(1.0)
    out, err = child.communicate()
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"the draining worker failed: {err.decode()[-2000:]}")
    with Session(services.engine) as db:
        left = outbox_size(db)
    samples.append((elapsed, left))
    done = backlog - left
    return {
        "drained": done,
        "left_in_outbox": left,
        "seconds": round(elapsed, 1),
        "events_per_second": round(done / elapsed),
        "first_fifth_per_second": _rate_between(samples, backlog, 0.0, 0.2),
        "last_fifth_per_second": _rate_between(samples, backlog, 0.8, 1.0),
        "worker": json.loads(out.decode().strip().splitlines()[-1]),
        "plans": plans,
    }


def _rate_between(samples: list[tuple[float, int]], backlog: int, lo: float, hi: float) -> float:
    """Events/s while the drained share of the backlog went from `lo` to `hi` (interpolated)."""

    def when(share: float) -> float:
        target = backlog * (1 - share)
        for (t0, n0), (t1, n1) in zip(samples, samples[1:], strict=False):
            if n1 <= target <= n0:
                return t0 if n0 == n1 else t0 + (t1 - t0) * (n0 - target) / (n0 - n1)
        return samples[-1][0]

    spent = when(hi) - when(lo)
    return round(backlog * (hi - lo) / spent) if spent > 0 else 0.0


def explain_plans(services: Services) -> dict[str, str]:
    """EXPLAIN ANALYZE of the session lock and the user look-up for a batch of ready events."""
    from reconciler.sessions import lock_query
    from reconciler.users import sessions_of_users

    with Session(services.engine) as db:
        rows = db.execute(
            select(InboundEvent.provider, InboundEvent.session_id, InboundEvent.user_ref)
            .join(OutboxEntry, OutboxEntry.event_id == InboundEvent.id)
            .order_by(OutboxEntry.event_id)
            .limit(services.settings.apply_batch_size)
        ).all()
        refs = {(p, s): u for p, s, u in rows}
        users = sorted({u for _, _, u in rows if u})
        found = {}
        dialect = db.get_bind().dialect
        for name, query in (
            ("lock_sessions", lock_query(refs, dialect)),
            ("sessions_of_users", sessions_of_users(users)),
        ):
            compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
            params: Any = compiled.params
            if compiled.positiontup:
                params = tuple(params[name] for name in compiled.positiontup)
            prefix = "EXPLAIN QUERY PLAN "
            if dialect.name == "postgresql":
                prefix = "EXPLAIN (ANALYZE, BUFFERS) "
            result = db.connection().exec_driver_sql(prefix + str(compiled), params)
            found[name] = "\n".join(" | ".join(str(c) for c in r) for r in result)
        db.rollback()
    return found


def run(backend: str, backlog: int, per_session: int, explain: bool, cap: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="verihook-drain-"))
    database = create_private_database() if backend == "postgresql" else None
    engine = make_engine(database or f"sqlite:///{tmp / 'bench.db'}")
    redis = RedisServer().start()
    try:
        upgrade(engine)
        settings = make_settings(engine, redis.url, tmp, log_level="WARNING")
        services = Services(
            settings=settings,
            engine=engine,
            keyring=Keyring.parse(TEST_KEYS),
            providers=build_providers(settings),
        )
        fill_seconds = fill(services, backlog, per_session, f"d{backlog}")
        result = drain(services, backlog, explain, cap)
        return {
            "backend": backend,
            "backlog": backlog,
            "per_session": per_session,
            "fill_seconds": round(fill_seconds, 1),
            **result,
            "flatness": round(result["last_fifth_per_second"] / result["first_fifth_per_second"], 2)
            if result["first_fifth_per_second"]
            else None,
        }
    finally:
        engine.dispose()
        redis.kill()
        if database:
            drop_private_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--backlog", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--per-session", type=int, default=3)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--cap-seconds", type=float, default=1800.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = []
    for backlog in args.backlog:
        found = run(args.backend, backlog, args.per_session, args.explain, args.cap_seconds)
        plans = found.pop("plans")
        print(" | ".join(f"{k}={v}" for k, v in found.items()), flush=True)
        for name, plan in plans.items():
            print(f"--- {name} (backlog {backlog}, half drained)\n{plan}", flush=True)
        results.append({**found, "plans": plans})
    write_result(args.json or f"bench/results/drain_backlog_{args.backend}.json", {"runs": results})


if __name__ == "__main__":
    main()
