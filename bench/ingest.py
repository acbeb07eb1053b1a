"""Ingest benchmark: signed 1.5 KB deliveries against verihook's receiver and a bare Flask app.

Method (issue 10): for each server setting, `plain` (`gunicorn -w 2 app:app`: gunicorn's
defaults, sync workers) and `shipped` (deploy/gunicorn.conf.py), verihook's receiver and
`bench/bare_app.py` (reads the body, answers 200) are served in turn the same way. wrk, on
127.0.0.1, POSTs pre-signed distinct Contiguity deliveries (~1.5 KB, each a new event) for a fixed
time with 32 connections; the ratio of the two request rates is the figure, the median of
`--repeat` repetitions (each repetition runs both apps). The receiver logs at INFO, as deployed.
Then wrk offers about half the receiver's median maximum rate at a fixed pace (post_paced.lua)
and reports p50/p99. Memory: PSS (and RSS) of each receiver worker after its saturation run.
Everything is bounded in time and stops by itself.

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

from bench.common import Stack, children, percentile, pss_mb, rss_mb, write_result
from tests.support import signing

ROOT = Path(__file__).resolve().parents[1]
FILLER = "x" * 1200
SERVERS = ("plain", "shipped")
PACED_CONNECTIONS = 16


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


def delivery_lines(path: Path, count: int, tag: str) -> None:
    """Write `count` pre-signed distinct deliveries for the wrk scripts."""
    with path.open("w") as out:
        for body, header in signed_deliveries(count, tag):
            out.write(header + "\t" + body.decode() + "\n")


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
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "requests_per_second": rate,
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


def measure_server(
    stack: Stack, server: str, lines: Path, seconds: int, repeat: int
) -> dict[str, Any]:
    """`repeat` rounds of (verihook, bare) under one server setting, then a paced run."""
    rounds = []
    memory: list[dict[str, float]] = []
    for _ in range(repeat):
        ours = wrk(stack.gunicorn(server=server), lines, seconds, 32)
        memory = worker_memory(stack)
        stack.stop_gunicorn()
        bare = wrk(stack.gunicorn("bench.bare_app:app", server=server), lines, seconds, 32)
        stack.stop_gunicorn()
        ratio = ours["requests_per_second"] / bare["requests_per_second"]
        rounds.append({"receiver": ours, "bare_flask": bare, "ratio": round(ratio, 3)})
    best = statistics.median(r["receiver"]["requests_per_second"] for r in rounds)
    pause_ms = round(PACED_CONNECTIONS * 1000 / (best / 2), 2)
    paced = wrk(stack.gunicorn(server=server), lines, 10, PACED_CONNECTIONS, pause_ms)
    stack.stop_gunicorn()
    return {
        "server": server,
        "rounds": rounds,
        "ratio_median": round(statistics.median(r["ratio"] for r in rounds), 3),
        "receiver_rps_median": round(best, 1),
        "bare_rps_median": round(
            statistics.median(r["bare_flask"]["requests_per_second"] for r in rounds), 1
        ),
        "p99_saturated_ms_median": statistics.median(r["receiver"]["p99_ms"] for r in rounds),
        "half_rate": {"offered_per_second": round(best / 2, 1), **paced},
        "workers": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server", choices=[*SERVERS, "both"], default="both")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk; `make bench` does it)")
    tmp = Path(tempfile.mkdtemp(prefix="verihook-ingest-"))
    servers = SERVERS if args.server == "both" else (args.server,)
    results = []
    with Stack(args.backend, tmp) as stack:
        for server in servers:
            lines = tmp / f"deliveries-{server}.txt"
            delivery_lines(lines, max(40_000, args.seconds * 6_000), f"{server}{time.time_ns()}")
            results.append(measure_server(stack, server, lines, args.seconds, args.repeat))
        stored = stack.count_events()
    result = {
        "backend": args.backend,
        "seconds": args.seconds,
        "repeat": args.repeat,
        "servers": results,
        "events_stored": stored,
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
