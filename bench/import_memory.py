"""Where a receiver worker's memory goes: resident memory added by each import, in order.

A gunicorn worker imports the libraries below and then verihook's app; this prints the RSS each
step adds (from /proc/self/status), so a memory target can be weighed against what the required
libraries alone cost. Runs in a fresh interpreter; takes a second.

    .venv/bin/python -m bench.import_memory
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

STEPS = [
    "flask",
    "sqlalchemy",
    "sqlmodel",
    "pydantic_settings",
    "cryptography.hazmat.primitives.ciphers.aead",
    "psycopg",
    "redis",
    "rq",
    "prometheus_client",
    "httpx",
    "app",
]


APP_PARTS = [
    "receiver.webhooks",
    "receiver.request_rules",
    "receiver.health",
    "reconciler.console",
    "receiver.services",
    "receiver.logs",
    "reconciler.api.views",
    "reconciler.api.audit",
    "reconciler.api.events",
    "reconciler.api.erasure",
    "reconciler.api.openapi",
]
"""What `create_app()` imports (app.py imports nothing heavy at module level since issue 13)."""


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    rows = [("python", round(rss_mb(), 1))]
    for module in STEPS:
        before = rss_mb()
        importlib.import_module(module)
        if module == "app":  # app.py imports its parts inside create_app(), as a worker runs it
            for part in APP_PARTS:
                importlib.import_module(part)
        rows.append((module, round(rss_mb() - before, 1)))
    total = round(rss_mb(), 1)
    width = max(len(name) for name, _ in rows)
    for index, (name, added) in enumerate(rows):
        sign = " " if index == 0 else "+"  # the first row is the bare interpreter's own RSS
        print(f"{name:<{width}}  {sign}{added:6.1f} MB")
    print(f"{'total':<{width}}   {total:6.1f} MB")
    result = {"steps_mb": dict(rows), "total_mb": total, "python": sys.version.split()[0]}
    out = Path("bench/results/import_memory.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
