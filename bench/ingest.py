"""Ingest benchmark: signed 1.5 KB deliveries against verihook's receiver and a bare Flask app.

Method (issue 7, benchmark a): the same gunicorn settings (receiver/gunicorn_conf.py) serve, in
turn, verihook's receiver and `bench/bare_app.py` (reads the body, answers 200). wrk, on
127.0.0.1, POSTs pre-signed distinct Contiguity deliveries (~1.5 KB, each a new event) for a fixed
time; the ratio of the two request rates is the figure. Then a paced Python client offers half
the receiver's maximum rate and records each request's latency (p50/p99). Everything is bounded
in time and stops by itself.

    .venv/bin/python -m bench.ingest --backend postgresql --seconds 15
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import Stack, percentile, write_result
from tests.support import signing

ROOT = Path(__file__).resolve().parents[1]
FILLER = "x" * 1200


def delivery_lines(path: Path, count: int) -> None:
    """Write `count` pre-signed distinct deliveries (~1.5 KB each) for the wrk script."""
    now = int(time.time())
    with path.open("w") as out:
        for index in range(count):
            body = signing.contiguity_event(
                "processing",
                f"vs_bench{index}",
                user_ref=f"bench{index}",
                timestamp=now,
                event_id=f"evt_bench_{index}_{now}",
                metadata={"filler": FILLER},
            )
            out.write(signing.contiguity_header(body, timestamp=now) + "\t" + body.decode() + "\n")


def wrk(url: str, lines: Path, seconds: int, connections: int, threads: int) -> dict[str, float]:
    """Run wrk against `url`; return requests/s, p50/p99 latency (ms) and non-2xx count."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "post_lines.lua"),
            url,
            "--",
            str(lines),
            str(threads),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "requests_per_second": rate,
        "p50_ms": _latency(out, "50%"),
        "p99_ms": _latency(out, "99%"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def _latency(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def paced(url: str, rate: float, seconds: float, first: int, threads: int = 32) -> dict[str, float]:
    """Offer `rate` requests/s for `seconds` from `threads` threads; return latency p50/p99 (ms)
    and the rate actually achieved (lower than offered when the receiver cannot keep up)."""
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
                took = (time.perf_counter() - began) * 1000
                with lock:
                    latencies.append(took)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk; `make bench` does it)")
    tmp = Path(tempfile.mkdtemp(prefix="verihook-ingest-"))
    lines = tmp / "deliveries.txt"
    delivery_lines(lines, max(20_000, args.seconds * 4_000))
    with Stack(args.backend, tmp) as stack:
        ours = stack.gunicorn()
        receiver = wrk(ours, lines, args.seconds, args.connections, 2)
        half = paced(ours, receiver["requests_per_second"] / 2, 10, first=0)
        stack.stop_gunicorn()
        bare = wrk(stack.gunicorn("bench.bare_app:app"), lines, args.seconds, args.connections, 2)
        stack.stop_gunicorn()
        stored = stack.count_events()
    result = {
        "backend": args.backend,
        "gunicorn_workers": stack.web_workers,
        "seconds": args.seconds,
        "connections": args.connections,
        "receiver": receiver,
        "bare_flask": bare,
        "ratio": round(receiver["requests_per_second"] / bare["requests_per_second"], 3),
        "half_rate_latency": half,
        "events_stored": stored,
    }
    print(json.dumps(result, indent=2))
    write_result(args.json or f"bench/results/ingest_{args.backend}.json", result)
    shutil.rmtree(tmp, ignore_errors=True)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


if __name__ == "__main__":
    main()
