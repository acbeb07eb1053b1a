"""Ingest benchmark: signed deliveries against verihook, the durable floor and a bare Flask app.

Method (issue 10, issue 19): for each server setting, `plain` (`gunicorn -w 2 app:app`:
gunicorn's defaults, sync workers) and `shipped` (deploy/gunicorn.conf.py), three apps are served
in turn the same way: verihook's receiver, `bench/floor_app.py` (the durable floor: verify the
HMAC, parse, one committed INSERT … ON CONFLICT DO NOTHING per delivery, nothing else) and
`bench/bare_app.py` (reads the body, answers 200). wrk, on 127.0.0.1, POSTs pre-signed iDenfy
result deliveries (~1.5 KB) for a fixed time with 32 connections; every run of an app that stores
gets deliveries of its own, never sent before, so each request is a new event. The figures are
the ratios verihook ÷ floor and floor ÷ bare, the median of `--repeat` rounds (each round runs
the three apps back to back). The receiver logs at INFO, as deployed. Each run also records its
costs per delivery (bench/costs.py): CPU of the gunicorn workers and of the PostgreSQL backends,
commits and rows inserted in the run's database, WAL. Then wrk offers about half the receiver's
median maximum rate at a fixed pace (post_paced.lua) and reports p50/p99. Memory: PSS (and RSS)
of each receiver worker after its saturation run. Everything is bounded in time and stops by
itself.

    .venv/bin/python -m bench.ingest --backend postgresql --seconds 10 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench import floor_app
from bench.common import Stack, children, percentile, pss_mb, rss_mb, write_result
from bench.costs import counters, cpu_spent, per_delivery, process_cpu
from tests.support import signing

ROOT = Path(__file__).resolve().parents[1]
FILLER = "x" * 1200
SERVERS = ("plain", "shipped")
APPS = {"receiver": None, "floor": "bench.floor_app:app", "bare_flask": "bench.bare_app:app"}
BASE: Path | None = None
"""Another checkout of verihook (`--base DIR`, e.g. `git archive main | tar -x -C DIR`), served
as the app `base` in every round beside this one: before/after side by side."""
PACED_CONNECTIONS = 16
DELIVERIES_PER_SECOND = 4_000
"""Distinct deliveries written per second of a run: above what any app stores here, so wrk
never wraps around to a delivery it sent before (each run checks)."""


def signed_deliveries(count: int, tag: str) -> list[tuple[bytes, str]]:
    """`count` distinct Contiguity deliveries (~1.5 KB each) and their signature headers."""
    now = int(time.time())
    made = []
    for index in range(count):
        body = signing.contiguity_event(
            "processing",
            f"vs_{tag}{index}",
            user_ref=f"{tag}{index}",
            timestamp=now,
            event_id=f"evt_{tag}_{index}_{time.time_ns()}",
            metadata={"filler": FILLER},
        )
        made.append((body, signing.contiguity_header(body, timestamp=now)))
    return made


def idenfy_deliveries(count: int, tag: str) -> list[tuple[bytes, str]]:
    """`count` distinct signed iDenfy result deliveries (~1.5 KB) and their signatures."""
    template = json.loads(signing.idenfy_result("APPROVED", "scan", client_id="user"))
    template["filler"] = FILLER[:500]
    made = []
    for index in range(count):
        template["scanRef"] = f"scan-{tag}-{index}"
        template["clientId"] = f"user-{tag}-{index}"
        body = json.dumps(template).encode()
        made.append((body, signing.idenfy_signature(body)))
    return made


def delivery_lines(path: Path, count: int, tag: str) -> None:
    """Write `count` pre-signed distinct iDenfy deliveries for the wrk scripts."""
    with path.open("w") as out:
        for body, signature in idenfy_deliveries(count, tag):
            out.write(f"/webhooks/idenfy\tIdenfy-Signature\t{signature}\t{body.decode()}\n")


def wrk(
    url: str, lines: Path, seconds: int, connections: int, pause_ms: float | None = None
) -> dict[str, float]:
    """Run wrk (2 threads) against `url`, at full speed or pausing `pause_ms` between a
    connection's requests; return requests/s, p50/p99 latency (ms) and the non-2xx count."""
    script = "post_paced.lua" if pause_ms is not None else "post_lines.lua"
    extra = [str(pause_ms)] if pause_ms is not None else []
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
        + ["-s", str(ROOT / "bench" / script), url, "--", str(lines), "2", *extra],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        env=os.environ | {"VERIHOOK_BENCH_DIR": str(ROOT / "bench")},
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "requests_per_second": rate,
        "requests": requests,
        "p50_ms": _latency(out, "50%"),
        "p99_ms": _latency(out, "99%"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def _latency(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def worker_memory(stack: Stack) -> list[dict[str, float]]:
    """PSS and RSS (MB) of each gunicorn worker of the running receiver."""
    pids = children(stack.web.pid) if stack.web else []
    return [{"pss_mb": pss_mb(pid), "rss_mb": rss_mb(pid)} for pid in pids]


def stored(stack: Stack, table: str) -> int:
    """Rows in `table` (inbound_events, floor_events) of the benchmark's database."""
    with stack.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def run_app(
    stack: Stack, app: str, server: str, seconds: int, tag: str, lines: Path | None = None
) -> dict[str, Any]:
    """Serve one app, load it with wrk for `seconds`, return the rate, latency and costs.

    An app that stores gets fresh deliveries (`lines` None); the bare app may reuse a file."""
    if lines is None:
        lines = stack.tmp / f"deliveries-{tag}.txt"
        delivery_lines(lines, max(20_000, seconds * DELIVERIES_PER_SECOND), tag)
    table = {"receiver": "inbound_events", "base": "inbound_events", "floor": "floor_events"}.get(
        app
    )
    rows_before = stored(stack, table) if table else 0
    if app == "base" and BASE is not None:
        url = stack.gunicorn(None, server=server, code=BASE)
    else:
        url = stack.gunicorn(APPS[app], server=server)
    web_pid = stack.web.pid if stack.web else None
    before, cpu_before = counters(stack.engine), process_cpu(web_pid, stack.engine)
    found = wrk(url, lines, seconds, 32)
    cpu = cpu_spent(cpu_before, process_cpu(web_pid, stack.engine))
    after = counters(stack.engine)
    if app == "receiver":
        found["workers"] = worker_memory(stack)
    stack.stop_gunicorn()
    found["costs"] = per_delivery(before, after, cpu, found["requests"])
    if table:
        found["new_rows"] = stored(stack, table) - rows_before
        found["all_new"] = found["new_rows"] >= found["requests"] - found["non_2xx"]
    if lines.name.startswith("deliveries-"):
        lines.unlink()
    return found


def measure_server(stack: Stack, server: str, seconds: int, repeat: int) -> dict[str, Any]:
    """`repeat` rounds of (verihook, floor, bare) under one server setting, then a paced run."""
    rounds = []
    bare_lines = stack.tmp / f"bare-{server}.txt"
    delivery_lines(bare_lines, 20_000, f"bare{server}{time.time_ns()}")
    apps = [*APPS, "base"] if BASE is not None else list(APPS)
    for n in range(repeat):
        tag = f"{server}{n}t{time.time_ns()}"
        found: dict[str, Any] = {}
        for app in apps:
            reuse = bare_lines if app == "bare_flask" else None
            found[app] = run_app(stack, app, server, seconds, f"{app}{tag}", reuse)
        rate = {app: found[app]["requests_per_second"] for app in apps}
        found["vs_floor"] = round(rate["receiver"] / rate["floor"], 3)
        if "base" in rate:
            found["base_vs_floor"] = round(rate["base"] / rate["floor"], 3)
        found["floor_vs_bare"] = round(rate["floor"] / rate["bare_flask"], 3)
        found["ratio"] = round(rate["receiver"] / rate["bare_flask"], 3)
        rounds.append(found)
    best = statistics.median(r["receiver"]["requests_per_second"] for r in rounds)
    pause_ms = round(PACED_CONNECTIONS * 1000 / (best / 2), 2)
    paced_lines = stack.tmp / f"deliveries-paced-{server}.txt"
    delivery_lines(paced_lines, 20_000, f"paced{server}{time.time_ns()}")
    paced = wrk(stack.gunicorn(server=server), paced_lines, 10, PACED_CONNECTIONS, pause_ms)
    stack.stop_gunicorn()

    def median(key: str, app: str | None = None) -> float:
        return statistics.median(r[app][key] if app else r[key] for r in rounds)

    return {
        "server": server,
        "rounds": rounds,
        **({"base_vs_floor_median": median("base_vs_floor")} if BASE is not None else {}),
        "vs_floor_median": median("vs_floor"),
        "floor_vs_bare_median": median("floor_vs_bare"),
        "ratio_median": median("ratio"),
        "receiver_rps_median": round(best, 1),
        "floor_rps_median": round(median("requests_per_second", "floor"), 1),
        "bare_rps_median": round(median("requests_per_second", "bare_flask"), 1),
        "p99_saturated_ms_median": median("p99_ms", "receiver"),
        "half_rate": {"offered_per_second": round(best / 2, 1), **paced},
        "workers": rounds[-1]["receiver"].get("workers", []),
        "costs_median": {
            app: {
                key: statistics.median(r[app]["costs"][key] for r in rounds)
                for key in rounds[0][app]["costs"]
            }
            for app in apps
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server", choices=[*SERVERS, "both"], default="both")
    parser.add_argument("--json", default=None)
    parser.add_argument("--base", type=Path, default=None, help="a checkout to compare with")
    args = parser.parse_args()
    global BASE
    BASE = args.base
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk; `make bench` does it)")
    tmp = Path(tempfile.mkdtemp(prefix="verihook-ingest-"))
    servers = SERVERS if args.server == "both" else (args.server,)
    results = []
    with Stack(args.backend, tmp) as stack:
        floor_app.create_table(stack.settings.database_url)
        for server in servers:
            results.append(measure_server(stack, server, args.seconds, args.repeat))
        events = stack.count_events()
    result = {
        "backend": args.backend,
        "seconds": args.seconds,
        "repeat": args.repeat,
        "machine_load_1min": os.getloadavg()[0],
        "servers": results,
        "events_stored": events,
    }
    print(json.dumps(result, indent=2))
    write_result(args.json or f"bench/results/ingest_{args.backend}.json", result)
    shutil.rmtree(tmp, ignore_errors=True)


def half_rate_of(path: str, server: str = "shipped") -> float:
    """Half the receiver's median maximum rate recorded by a previous run (for bench.e2e)."""
    recorded = json.loads(Path(path).read_text())
    found = next(s for s in recorded["servers"] if s["server"] == server)
    return float(found["receiver_rps_median"]) / 2


def paced(url: str, rate: float, seconds: float, first: int, threads: int = 32) -> dict[str, Any]:
    """Offer `rate` distinct signed deliveries per second from Python threads (bench.e2e's load:
    it needs each request's receipt time, not wrk's speed); return what was achieved."""
    import threading

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.perf_counter()

    def run(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            n = 0
            while True:
                due = start + (n * threads + worker) / rate
                if due - start > seconds:
                    return
                time.sleep(max(0.0, due - time.perf_counter()))
                index = first + n * threads + worker
                body = signing.contiguity_event(
                    "processing",
                    f"vs_paced{index}",
                    user_ref=f"p{index}",
                    metadata={"filler": FILLER},
                )
                began = time.perf_counter()
                answer = client.post(
                    "/webhooks/contiguity",
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "Contiguity-Signature": signing.contiguity_header(body),
                    },
                )
                with lock:
                    latencies.append((time.perf_counter() - began) * 1000)
                    errors[0] += answer.status_code >= 300
                n += 1

    pool = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    return {
        "offered_per_second": rate,
        "achieved_per_second": round(len(latencies) / elapsed, 1),
        "sent": len(latencies),
        "errors": errors[0],
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


if __name__ == "__main__":
    main()
