"""End-to-end benchmark: applied events/s and receipt→applied latency at a fixed offered load,
plus memory per process (issue 7, benchmarks b and d).

Method: verihook runs as real processes (`verihook web` under gunicorn, 2 `verihook worker`) on a
private database and Redis. A paced client on 127.0.0.1 offers RATE signed Contiguity deliveries
per second for SECONDS (each a new event; ~1.5 KB). While it runs, the outbox depth is sampled
("never behind ingest" means it stays bounded instead of growing). Afterwards the workers drain
what is left; applied events/s and receipt→applied p50/p99 come from the stored rows
(`applied_at - received_at`), and RSS from /proc for every process. Bounded in time.

    .venv/bin/python -m bench.e2e --backend postgresql --rate 500 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from bench.common import Stack, children, percentile, pss_mb, rss_mb, write_result
from bench.ingest import half_rate_of, paced
from receiver.store.models import InboundEvent, OutboxEntry


def outbox_depth(stack: Stack) -> int:
    with Session(stack.engine) as db:
        return db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()


def applied_latencies(stack: Stack) -> tuple[list[float], float]:
    """receipt→applied seconds of every applied event, and the span of applied_at."""
    with Session(stack.engine) as db:
        rows = db.execute(
            select(InboundEvent.received_at, InboundEvent.applied_at).where(
                InboundEvent.applied_at.is_not(None)
            )
        ).all()
    latencies = [(applied - received).total_seconds() for received, applied in rows]
    applied_times = sorted(applied for _, applied in rows)
    span = (applied_times[-1] - applied_times[0]).total_seconds() if applied_times else 0.0
    return latencies, span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument(
        "--rate-from",
        default=None,
        help="offer half the shipped receiver's maximum rate recorded in this bench.ingest JSON",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.rate_from:
        args.rate = round(half_rate_of(args.rate_from), 1)
    tmp = Path(tempfile.mkdtemp(prefix="verihook-e2e-"))
    with Stack(args.backend, tmp) as stack:
        url = stack.gunicorn()
        workers = [stack.start("worker") for _ in range(args.workers)]
        stack.wait_for_workers(args.workers)
        depths: list[int] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                depths.append(outbox_depth(stack))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        offered = paced(url, args.rate, args.seconds, first=10_000_000)
        sampling.set()
        sampler.join()
        deadline = time.monotonic() + 120
        while outbox_depth(stack) and time.monotonic() < deadline:
            time.sleep(0.5)
        latencies, span = applied_latencies(stack)
        web_pids = children(stack.web.pid) if stack.web else []
        memory = {
            "receiver_master_mb": rss_mb(stack.web.pid) if stack.web else 0,
            "receiver_workers_mb": [rss_mb(pid) for pid in web_pids],
            "receiver_workers_pss_mb": [pss_mb(pid) for pid in web_pids],
            "rq_workers_mb": [rss_mb(w.pid) for w in workers],
        }
        scheduler = stack.start("scheduler")
        time.sleep(3)
        memory["scheduler_mb"] = rss_mb(scheduler.pid)
        result = {
            "backend": args.backend,
            "offered_per_second": args.rate,
            "seconds": args.seconds,
            "workers": args.workers,
            "ingest": offered,
            "applied": len(latencies),
            "applied_per_second_while_loaded": round(len(latencies) / span, 1) if span else 0,
            "receipt_to_applied_p50_s": percentile(latencies, 50),
            "receipt_to_applied_p99_s": percentile(latencies, 99),
            "outbox_depth_max": max(depths or [0]),
            "outbox_depth_last": depths[-1] if depths else 0,
            "left_in_outbox": outbox_depth(stack),
            "memory": memory,
        }
    print(json.dumps(result, indent=2))
    write_result(args.json or f"bench/results/e2e_{args.backend}.json", result)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
