"""Where an ingest request's time goes: CPU per request of verihook's WSGI app against the bare
Flask app, in-process (no gunicorn, no load generator), then a cProfile of one thread.

Both apps are called as gunicorn would call them (a WSGI environ per request), from `--threads`
threads at once so that group commit forms batches as it does under gthread; the figure is process
CPU time per request. The cProfile part runs single-threaded (cProfile sees one thread), so each
delivery there is a batch of one. Fresh database and private Redis; bounded by `--requests`.

    .venv/bin/python -m bench.profile_ingest --backend postgresql --requests 4000
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import create_app
from bench import bare_app
from bench.common import Stack
from bench.ingest import signed_deliveries
from receiver.metrics import INGEST_BATCH_ROWS


def environ(body: bytes, signature: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhooks/contiguity",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "HTTP_CONTIGUITY_SIGNATURE": signature,
    }


def call_all(app: Callable[..., Any], items: list[tuple[bytes, str]], threads: int) -> float:
    """Call `app` for every item from `threads` threads; return CPU µs per request."""
    statuses: list[str] = []

    def run(chunk: list[tuple[bytes, str]]) -> None:
        for body, signature in chunk:
            b"".join(app(environ(body, signature), lambda s, h, e=None: statuses.append(s)))

    pool = [threading.Thread(target=run, args=(items[i::threads],)) for i in range(threads)]
    started = time.process_time()
    if threads == 1:
        run(items)  # in this thread, where cProfile looks
    for thread in pool if threads > 1 else ():
        thread.start()
    for thread in pool if threads > 1 else ():
        thread.join()
    assert all(s.startswith("200") for s in statuses), set(statuses)
    return (time.process_time() - started) / len(items) * 1e6


def batch_sizes() -> str:
    """Commits so far and deliveries per commit, from verihook_ingest_batch_rows."""
    samples = {s.name: s.value for s in INGEST_BATCH_ROWS.collect()[0].samples}
    count, total = (
        samples["verihook_ingest_batch_rows_count"],
        samples["verihook_ingest_batch_rows_sum"],
    )
    return f"{count:.0f} commits, {total / max(count, 1):.1f} deliveries per commit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with Stack(args.backend, Path(tempfile.mkdtemp(prefix="verihook-profile-"))) as stack:
        app = create_app(services=stack.services)
        for handler in logging.getLogger().handlers:
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
        logging.getLogger().setLevel("INFO")
        n = args.requests
        call_all(app.wsgi_app, signed_deliveries(200, "warm"), args.threads)
        bare = call_all(bare_app.app.wsgi_app, signed_deliveries(n, "bare"), args.threads)
        ours = call_all(app.wsgi_app, signed_deliveries(n, "ours"), args.threads)
        print(f"CPU per request, {args.threads} threads, in-process ({args.backend}):")
        print(f"  bare Flask {bare:6.0f} µs")
        print(f"  verihook   {ours:6.0f} µs   ({batch_sizes()})")
        profiled = signed_deliveries(n // 2, "profiled")
        profile = cProfile.Profile()
        profile.enable()
        call_all(app.wsgi_app, profiled, 1)
        profile.disable()
        print(f"\ncProfile of {len(profiled)} deliveries on one thread (batches of one):")
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
