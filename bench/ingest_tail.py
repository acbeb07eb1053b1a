"""Where the ingest tail lives: wrk's p99 at a fixed pace against verihook's own handler time.

Serves verihook under the shipped config (deploy/gunicorn.conf.py; `--threads` sets
VERIHOOK_WEB_THREADS), offers `--rate` fresh signed deliveries per second for `--seconds` with
wrk's paced script (the connections and script of `bench.ingest`'s half-rate run), then reads the
`verihook_ingest_seconds` histogram from `/metrics` (the time inside the handler: authenticate,
seal, group commit, answer) and reports which share of the deliveries took under 5 and 10 ms
there, beside wrk's p50/p99 (the time seen by the client: the handler plus gunicorn's accept
loop, the network and waiting for a core). `--runs` runs, each on a fresh server. Bounded in
time; stops by itself.

    .venv/bin/python -m bench.ingest_tail --backend sqlite --rate 875 --runs 3
    .venv/bin/python -m bench.ingest_tail --rate-from bench/results/ingest_sqlite.json
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench import ingest
from bench.common import Stack, write_result


def handler_shares(metrics: str) -> dict[str, float]:
    """Share of the deliveries whose handler time was under each bucket bound (all providers)."""
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("verihook_ingest_seconds_bucket"):
            bound = re.search(r'le="([^"]+)"', line).group(1)  # type: ignore[union-attr]
            counts[bound] = counts.get(bound, 0.0) + float(line.split()[-1])
    total = counts.get("+Inf", 0.0)
    return {bound: round(n / total, 4) for bound, n in counts.items()} if total else {}


def one_run(stack: Stack, rate: float, seconds: int, tag: str) -> dict[str, Any]:
    lines = stack.tmp / f"tail-{tag}.txt"
    ingest.delivery_lines(lines, max(20_000, int(rate * seconds * 2)), tag)
    url = stack.gunicorn(server="shipped")
    try:
        pause_ms = round(ingest.PACED_CONNECTIONS * 1000 / rate, 2)
        found = ingest.wrk(url, lines, seconds, ingest.PACED_CONNECTIONS, pause_ms)
        shares = handler_shares(httpx.get(f"{url}/metrics", timeout=10).text)
    finally:
        stack.stop_gunicorn()
        lines.unlink(missing_ok=True)
    return {
        "requests_per_second": found["requests_per_second"],
        "p50_ms": found["p50_ms"],
        "p99_ms": found["p99_ms"],
        "non_2xx": found["non_2xx"],
        "handler_under_5ms": shares.get("0.005"),
        "handler_under_10ms": shares.get("0.01"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rate", type=float, default=875.0, help="deliveries/s offered")
    parser.add_argument(
        "--rate-from", default=None, help="offer half the shipped rate of this bench.ingest JSON"
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="VERIHOOK_WEB_THREADS")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.rate_from:
        args.rate = round(ingest.half_rate_of(args.rate_from), 1)
    if args.threads is not None:
        os.environ["VERIHOOK_WEB_THREADS"] = str(args.threads)  # read by Stack.env
    tmp = Path(tempfile.mkdtemp(prefix="verihook-tail-"))
    runs = []
    with Stack(args.backend, tmp) as stack:
        for n in range(args.runs):
            found = one_run(stack, args.rate, args.seconds, f"tail{n}t{os.getpid()}")
            print(" | ".join(f"{k}={v}" for k, v in found.items()), flush=True)
            runs.append(found)
    shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "backend": args.backend,
        "rate_offered": args.rate,
        "seconds": args.seconds,
        "threads": args.threads or "shipped default",
        "machine_load_1min": os.getloadavg()[0],
        "runs": runs,
    }
    write_result(args.json or f"bench/results/ingest_tail_{args.backend}.json", result)


if __name__ == "__main__":
    main()
