"""Print the ingest targets table from the JSON the benchmarks wrote (`make bench` ends with it).

.venv/bin/python -m bench.report
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
FLOOR_TARGET = {"postgresql": 0.8, "sqlite": 1.0}
"""verihook ÷ the durable floor (issue 19)."""
P99_TARGET_MS, PSS_TARGET_MB, APPLIED_P99_TARGET_S = 10.0, 80.0, 1.0
DRAIN_FLATNESS = 0.2
"""The drain rate of the largest backlog within ±20 % of the smallest's."""


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def ingest_rows() -> list[str]:
    """One row per backend and server setting."""
    rows = []
    for backend in ("postgresql", "sqlite"):
        path = RESULTS / f"ingest_{backend}.json"
        if not path.exists():
            continue
        for server in json.loads(path.read_text())["servers"]:
            vs_floor, half = server["vs_floor_median"], server["half_rate"]
            ratios = ", ".join(f"{r['vs_floor']:.2f}" for r in server["rounds"])
            pss = max((w["pss_mb"] for w in server["workers"]), default=0.0)
            rss = max((w["rss_mb"] for w in server["workers"]), default=0.0)
            rows.append(
                f"| {backend} | {server['server']} | {server['receiver_rps_median']:,.0f} | "
                f"{server['floor_rps_median']:,.0f} | {server['bare_rps_median']:,.0f} | "
                f"**{vs_floor:.2f}** ({ratios}; {_mark(vs_floor >= FLOOR_TARGET[backend])}) | "
                f"{server['floor_vs_bare_median']:.2f} | "
                f"{half['p99_ms']:.1f} at {half['requests_per_second']:,.0f}/s "
                f"({_mark(half['p99_ms'] <= P99_TARGET_MS)}) | "
                f"{server['p99_saturated_ms_median']:.1f} | {pss:.1f} / {rss:.1f}"
                + (f" ({_mark(pss <= PSS_TARGET_MB)})" if server["server"] == "shipped" else "")
                + " |"
            )
    return rows


def cost_rows() -> list[str]:
    """Per delivery, medians of the rounds: CPU of the workers and of PostgreSQL, commits, rows
    inserted and WAL (server-wide) in the run's database."""
    rows = []
    for backend in ("postgresql", "sqlite"):
        path = RESULTS / f"ingest_{backend}.json"
        if not path.exists():
            continue
        for server in json.loads(path.read_text())["servers"]:
            for app, costs in server["costs_median"].items():
                if app == "bare_flask" and backend == "sqlite":
                    continue
                cells = [
                    f"{costs.get(key, 0):,.0f}" if key in costs else "–"
                    for key in ("client_cpu_us", "server_cpu_us")
                ] + [
                    f"{costs[key]:.2f}" if key in costs else "–"
                    for key in ("commits", "rows_inserted")
                ]
                rows.append(
                    f"| {backend} | {server['server']} | {app} | " + " | ".join(cells) + " |"
                )
    return rows


def drain_rows() -> list[str]:
    """Drain rate by backlog size (bench.drain_backlog)."""
    rows = []
    for backend in ("postgresql", "sqlite"):
        path = RESULTS / f"drain_backlog_{backend}.json"
        if not path.exists():
            continue
        runs = json.loads(path.read_text())["runs"]
        smallest = min(runs, key=lambda r: r["backlog"])["events_per_second"]
        for run in sorted(runs, key=lambda r: r["backlog"]):
            share = run["events_per_second"] / smallest
            rows.append(
                f"| {backend} | {run['backlog']:,} | {run['events_per_second']:,} | "
                f"{run['first_fifth_per_second']:,} → {run['last_fifth_per_second']:,} | "
                f"{share:.2f} ({_mark(abs(share - 1) <= DRAIN_FLATNESS)}) |"
            )
    return rows


def e2e_row() -> str | None:
    """receipt→applied at half the maximum ingest rate."""
    path = RESULTS / "e2e_postgresql_half.json"
    if not path.exists():
        return None
    found = json.loads(path.read_text())
    p99 = found["receipt_to_applied_p99_s"]
    return (
        f"receipt→applied p99 at {found['ingest']['achieved_per_second']:,.0f}/s (half the "
        f"maximum, PostgreSQL): {p99:.2f} s ({_mark(p99 <= APPLIED_P99_TARGET_S)}); "
        f"outbox depth max {found['outbox_depth_max']}"
    )


def tail_row() -> str | None:
    """wrk's p99 against the handler's own time at half the rate (bench.ingest_tail)."""
    path = RESULTS / "ingest_tail_sqlite.json"
    if not path.exists():
        return None
    found = json.loads(path.read_text())
    runs = found["runs"]
    p99s = ", ".join(f"{run['p99_ms']:.1f}" for run in runs)
    under = [run["handler_under_10ms"] for run in runs if run["handler_under_10ms"] is not None]
    return (
        f"SQLite shipped at {found['rate_offered']:,.0f}/s offered: p99 {p99s} ms "
        f"({_mark(max(run['p99_ms'] for run in runs) <= 10)}, ≤ 10 ms in every run); "
        f"in the handler under 10 ms: {min(under, default=0):.1%} to {max(under, default=0):.1%}"
    )


def main() -> None:
    print(
        "| backend | server | verihook req/s | floor req/s | bare Flask req/s | verihook ÷ floor, "
        "median (rounds; ≥ 0.8 PostgreSQL, ≥ 1.0 SQLite) | floor ÷ bare | p99 ms at half rate "
        "(≤ 10) | p99 ms saturated | PSS / RSS MB per worker (≤ 80) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in ingest_rows():
        print(row)
    print("\n| backend | server | app | client CPU µs | server CPU µs | commits | rows inserted |")
    print("|---|---|---|---|---|---|---|")
    for row in cost_rows():
        print(row)
    print("\n| backend | backlog | events/s, 1 worker | first fifth → last fifth | ÷ smallest |")
    print("|---|---|---|---|---|")
    for row in drain_rows():
        print(row)
    for line in (e2e_row(), tail_row()):
        if line:
            print(line)


if __name__ == "__main__":
    main()
