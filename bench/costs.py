"""What one benchmark run cost, per delivery: client and server CPU, transactions, rows, WAL.

Read around a gunicorn run (bench.ingest): CPU of the gunicorn workers and of the PostgreSQL
backends serving the run's database (from /proc, before the server stops, as the backends end with
their connections); from `pg_stat_database` of the run's own database (so other users of the
shared server do not count): committed transactions (= statements that round-trip to the
server on the receiver's autocommit connections), rows inserted; and the WAL written, from
`pg_current_wal_lsn()` (server-wide: others' writes on a shared server count too, so the per
statement figure of bench.wal_per_delivery is the clean one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.common import children

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def backend_pids(engine: Engine) -> list[int]:
    """PostgreSQL backends connected to this engine's database, but this one."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            ).scalars()
        )


def counters(engine: Engine) -> dict[str, int]:
    """The database's commits and inserted rows, and the server's WAL position (bytes)."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = conn.execute(
            text(
                "SELECT xact_commit, tup_inserted, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint "
                "FROM pg_stat_database WHERE datname = current_database()"
            )
        ).one()
    return {"commits": int(row[0]), "rows_inserted": int(row[1]), "wal_bytes": int(row[2])}


def process_cpu(web_pid: int | None, engine: Engine) -> dict[str, dict[int, float]]:
    """CPU seconds so far of each gunicorn worker and of each of the database's backends."""
    found = {"client": {pid: cpu_seconds(pid) for pid in (children(web_pid) if web_pid else [])}}
    if engine.dialect.name == "postgresql":
        found["server"] = {pid: cpu_seconds(pid) for pid in backend_pids(engine)}
    return found


def cpu_spent(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds spent between two `process_cpu` readings (a process that started in between
    counts from zero; its connection set-up is a few milliseconds)."""
    return {
        f"{side}_cpu_s": round(
            sum(spent - before.get(side, {}).get(pid, 0.0) for pid, spent in now.items()), 3
        )
        for side, now in after.items()
    }


def per_delivery(
    before: dict[str, int], after: dict[str, int], cpu: dict[str, float], requests: int
) -> dict[str, Any]:
    """The run's costs divided by its deliveries (µs of CPU, counts, WAL bytes)."""
    if requests <= 0:
        return {}
    found: dict[str, Any] = {
        "client_cpu_us": round(cpu["client_cpu_s"] * 1e6 / requests, 1),
    }
    if "server_cpu_s" in cpu:
        found["server_cpu_us"] = round(cpu["server_cpu_s"] * 1e6 / requests, 1)
    for key in ("commits", "rows_inserted", "wal_bytes"):
        if key in before:
            found[key] = round((after[key] - before[key]) / requests, 3)
    return found
