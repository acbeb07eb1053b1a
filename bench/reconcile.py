"""Reconcile benchmark: the cost of a scheduler tick with many open sessions (issue 7, bench c).

Method: a private database holds OPEN open sessions (Nevis, poll-only) whose next check is in the
future, plus DUE sessions that are due now and really exist at the Nevis simulator with a final
outcome. One `Reconciler.tick()` then selects the due ones through the `next_check_at` index,
polls each once over HTTP, stores what changed; the workers' drain applies it. Run with two
sizes of OPEN to show that the tick costs what the due sessions cost, not what all sessions
cost. Status calls per healed session under chaos come from `verihook demo` / tests/test_chaos.py.

    .venv/bin/python -m bench.reconcile --backend postgresql --open 100000 --due 200
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, text

from bench.common import Stack, write_result
from receiver.providers.http import new_client
from receiver.store.models import VerificationSession, utcnow
from reconciler import simulators
from reconciler.drain import drain_ready_events
from reconciler.scheduler import Reconciler

ACCESS_KEY = "bench-nevis-key"


def fill(stack: Stack, open_sessions: int) -> None:
    """Insert open sessions that are not due (next check in an hour)."""
    table = VerificationSession.__table__  # type: ignore[attr-defined]
    now = utcnow()
    later = now + timedelta(hours=1)
    rows = [
        {
            "provider": "nevis",
            "session_id": f"{100000000 + i}",
            "user_ref": f"open{i}",
            "status": "processing",
            "decided_by": "auto",
            "created_at": now,
            "updated_at": now,
            "next_check_at": later,
            "poll_attempts": 0,
            "overdue": False,
            "settled": False,
        }
        for i in range(open_sessions)
    ]
    with stack.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(table), rows[start : start + 5000])
        if stack.engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE verification_sessions"))


def due(stack: Stack, sim: simulators.Simulator, count: int) -> None:
    """Create `count` sessions at the simulator, finish them, and make them due now."""
    table = VerificationSession.__table__  # type: ignore[attr-defined]
    now = utcnow()
    rows = []
    with new_client() as http:
        client = stack.services.providers["nevis"].client(http)
        for i in range(count):
            created = client.create_session(f"due{i}", {}, callback_url=None)
            sim.script(created.session_id, "verified")
            rows.append(
                {
                    "provider": "nevis",
                    "session_id": created.session_id,
                    "user_ref": f"due{i}",
                    "status": "pending",
                    "decided_by": "auto",
                    "created_at": now,
                    "updated_at": now,
                    "next_check_at": now,
                    "poll_attempts": 0,
                    "overdue": False,
                    "settled": False,
                }
            )
    sim.wait_idle(10)
    with stack.engine.begin() as conn:
        conn.execute(insert(table), rows)


def query_plan(stack: Stack) -> str:
    """How the database finds due sessions."""
    if stack.engine.dialect.name != "postgresql":
        sql = (
            "EXPLAIN QUERY PLAN SELECT * FROM verification_sessions WHERE next_check_at <= "
            "CURRENT_TIMESTAMP ORDER BY next_check_at LIMIT 200"
        )
        with stack.engine.connect() as conn:
            return " | ".join(str(row[-1]) for row in conn.execute(text(sql)))
    sql = (
        "EXPLAIN SELECT * FROM verification_sessions WHERE next_check_at <= now() "
        "ORDER BY next_check_at LIMIT 200"
    )
    with stack.engine.connect() as conn:
        return " | ".join(row[0] for row in conn.execute(text(sql)))


def run(backend: str, open_sessions: int, due_sessions: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="verihook-reconcile-"))
    with simulators.start("nevis", access_key=ACCESS_KEY, callback_url=None) as sim:
        with Stack(
            backend,
            tmp,
            providers={
                "nevis": {
                    "access_key": ACCESS_KEY,
                    "base_url": sim.url,
                    "rate_limit_per_second": 10_000.0,
                }
            },
            poll_batch_size=max(200, due_sessions),
        ) as stack:
            fill(stack, open_sessions)
            due(stack, sim, due_sessions)
            reconciler = Reconciler(stack.services)
            before = sum(sim.stats()["status_calls"].values())
            started = time.perf_counter()
            stats = reconciler.tick()
            tick = time.perf_counter() - started
            empty_started = time.perf_counter()
            reconciler.tick()  # nothing due any more: the cost of looking
            empty_tick = time.perf_counter() - empty_started
            drain_ready_events(stack.services)
            calls = sum(sim.stats()["status_calls"].values()) - before
            plan = query_plan(stack)
            reconciler.http.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "backend": backend,
        "open_sessions": open_sessions,
        "due": due_sessions,
        "tick_seconds": round(tick, 3),
        "per_due_session_ms": round(tick / due_sessions * 1000, 2),
        "empty_tick_ms": round(empty_tick * 1000, 2),
        "status_calls": calls,
        "changed": stats.outcomes["changed"],
        "plan": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = [run(args.backend, size, args.due) for size in (args.open // 10, args.open)]
    print(json.dumps(results, indent=2))
    write_result(args.json or f"bench/results/reconcile_{args.backend}.json", {"runs": results})


if __name__ == "__main__":
    main()
