"""Where an ingest request's time goes: CPU per request of verihook's WSGI app against the durable
floor and the bare Flask app, in-process (no gunicorn, no load generator), then a cProfile of one
thread, its own time summed by component.

The three apps get the same kind of delivery as `bench.ingest` (signed iDenfy results, ~1 KB,
each new) and are called as gunicorn would call them (a WSGI environ per request), from
`--threads` threads at once so that group commit forms batches as it does under gthread. The
figure is this process's CPU time per request (the database server's CPU is not in it), the
median of `--rounds` rounds that run the three apps back to back, so a busy machine moves the
three alike. The cProfile part runs single-threaded (cProfile sees one thread), so each delivery
there is a batch of one. Fresh database and private Redis; bounded by `--requests`.

    .venv/bin/python -m bench.profile_ingest --backend postgresql --requests 4000
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import create_app
from bench import bare_app, floor_app
from bench.common import Stack
from bench.ingest import idenfy_deliveries
from receiver.metrics import INGEST_BATCH_ROWS


def environ(body: bytes, signature: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhooks/idenfy",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "HTTP_IDENFY_SIGNATURE": signature,
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


COMPONENTS = (
    ("/receiver/", "verihook (receiver/)"),
    ("/psycopg/", "psycopg (driver)"),
    ("sqlite3.", "sqlite3 (driver)"),
    ("/sqlalchemy/pool/", "SQLAlchemy pool"),
    ("/sqlalchemy/", "SQLAlchemy (other)"),
    ("/werkzeug/", "werkzeug (request, headers)"),
    ("/flask/", "flask"),
    ("/prometheus_client/", "prometheus_client"),
    ("/logging/", "logging"),
    ("/json/", "json"),
    ("json.", "json"),
    ("cryptography", "cryptography (AES-GCM)"),
    ("hmac", "hmac, hashlib"),
    ("_hashlib", "hmac, hashlib"),
    ("re.Pattern", "re"),
    ("/re/", "re"),
    ("/uuid.py", "uuid, os.urandom"),
    ("urandom", "uuid, os.urandom"),
    ("/threading.py", "threading, queue"),
    ("/queue.py", "threading, queue"),
    ("lock", "threading, queue"),
)


def by_component(profile: cProfile.Profile, deliveries: int) -> list[tuple[str, float]]:
    """The profile's own time (tottime) summed by component, µs per delivery, largest first."""
    totals: dict[str, float] = {}
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in stats.items():
        where = f"{filename} {function}"
        name = next((label for key, label in COMPONENTS if key in where), None)
        if name is None:
            name = "python (other stdlib, builtins)"
        if "/bench/" in filename:
            name = "benchmark harness"
        totals[name] = totals.get(name, 0.0) + own
    return sorted(((k, v / deliveries * 1e6) for k, v in totals.items()), key=lambda kv: -kv[1])


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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with Stack(args.backend, Path(tempfile.mkdtemp(prefix="verihook-profile-"))) as stack:
        os.environ.update(stack.env())
        floor_app.create_table(stack.settings.database_url)
        app = create_app(services=stack.services)
        for handler in logging.getLogger().handlers:
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
        logging.getLogger().setLevel("INFO")
        n = args.requests
        apps = {"bare Flask": bare_app.app.wsgi_app, "floor": floor_app.app.wsgi_app}
        apps["verihook"] = app.wsgi_app
        for name, wsgi in apps.items():
            call_all(wsgi, idenfy_deliveries(200, f"warm{name[0]}"), args.threads)
        rounds: dict[str, list[float]] = {name: [] for name in apps}
        for round_ in range(args.rounds):
            for name, wsgi in apps.items():
                tag = f"{name[0]}{round_}"
                rounds[name].append(call_all(wsgi, idenfy_deliveries(n, tag), args.threads))
        cpu = {name: statistics.median(values) for name, values in rounds.items()}
        print(f"CPU per request in this process, {args.threads} threads ({args.backend}), ", end="")
        print(f"median of {args.rounds} rounds of {n}:")
        for name, value in cpu.items():
            shown = ", ".join(f"{v:.0f}" for v in rounds[name])
            print(f"  {name:10} {value:6.0f} µs   ({shown})")
        ratio = cpu["floor"] / cpu["verihook"]
        print(f"  verihook ÷ floor by CPU: {ratio:.2f}   ({batch_sizes()})")
        profiled = idenfy_deliveries(n // 2, "profiled")
        profile = cProfile.Profile()
        profile.enable()
        call_all(app.wsgi_app, profiled, 1)
        profile.disable()
        print(f"\ncProfile of {len(profiled)} deliveries on one thread (batches of one), own time")
        print("by component (cProfile's own overhead inflates the many small calls):")
        for name, micros in by_component(profile, len(profiled)):
            print(f"  {name:32} {micros:6.0f} µs")
        print(f"\nThe same profile, top {args.top} by {args.sort}:")
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
