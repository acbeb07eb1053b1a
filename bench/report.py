"""Print the ingest targets table from the JSON the benchmarks wrote (`make bench` ends with it).

.venv/bin/python -m bench.report
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RATIO_TARGET, P99_TARGET_MS, PSS_TARGET_MB, APPLIED_P99_TARGET_S = 0.5, 15.0, 80.0, 1.0


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
            ratio, half = server["ratio_median"], server["half_rate"]
            ratio_note = _mark(ratio >= RATIO_TARGET)
            pss = max((w["pss_mb"] for w in server["workers"]), default=0.0)
            rss = max((w["rss_mb"] for w in server["workers"]), default=0.0)
            rows.append(
                f"| {backend} | {server['server']} | {server['receiver_rps_median']:,.0f} | "
                f"{server['bare_rps_median']:,.0f} | {ratio:.2f} ({ratio_note}) | "
                f"{half['p99_ms']:.1f} at {half['requests_per_second']:,.0f}/s "
                f"({_mark(half['p99_ms'] <= P99_TARGET_MS)}) | "
                f"{server['p99_saturated_ms_median']:.1f} | {pss:.1f} / {rss:.1f}"
                + (f" ({_mark(pss <= PSS_TARGET_MB)})" if server["server"] == "shipped" else "")
                + " |"
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


def main() -> None:
    print(
        "| backend | server | verihook req/s | bare Flask req/s | ratio, median of 3 (≥ 0.50) "
        "| p99 ms at half rate (≤ 15) | p99 ms saturated | PSS / RSS MB per worker (≤ 80) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in ingest_rows():
        print(row)
    line = e2e_row()
    if line:
        print(line)


if __name__ == "__main__":
    main()
