"""Where a serving worker's CPU goes, per delivery: verihook against the durable floor, sampled.

`bench.ingest` says how fast; this says where the time goes, in the processes that serve. For each
of verihook and the floor (`bench/floor_app.py`), served the way `bench.ingest` serves them
(`--server plain`: `gunicorn -w 2`, sync workers; `shipped`: deploy/gunicorn.conf.py), wrk sends
fresh signed iDenfy deliveries for `--seconds` while py-spy samples every worker (`--rate` per
second) with `--gil`: only the thread holding the interpreter lock counts, which is the Python
CPU a delivery costs (waits without the lock, such as for the database's answer, or a thread
asleep, do not count; C code run under the lock, hashing or the driver's packing, does). Each
sample is charged to the innermost Python frame and summed by where that frame's code lives: one
of verihook's modules, a library, the standard library. The figure is CPU µs per delivery
(samples ÷ rate ÷ deliveries made while sampling). Bounded in time; needs py-spy (`pip install
py-spy`; not a verihook dependency) and wrk.

    .venv/bin/python -m bench.spy_ingest --backend postgresql --server plain --seconds 15
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import floor_app
from bench.common import Stack, write_result
from bench.ingest import APPS, delivery_lines, wrk

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
LIBRARIES = (
    "psycopg",
    "sqlalchemy",
    "werkzeug",
    "flask",
    "prometheus_client",
    "gunicorn",
    "cryptography",
    "pydantic",
    "redis",
    "rq",
)


def component(filename: str) -> str:
    """Where a frame's code lives: a verihook module, a library or the standard library."""
    for root in ("receiver/", "reconciler/", "bench/"):
        at = filename.rfind("/" + root)
        if at >= 0 and "site-packages" not in filename:
            return filename[at + 1 :]
    if "site-packages/" in filename:
        package = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        return package if package in LIBRARIES else f"{package} (library)"
    if filename.startswith("<"):
        return "interpreter"
    return "stdlib: " + Path(filename).stem


def leaf_samples(raw: Path) -> Counter[str]:
    """Samples by the component of each stack's innermost Python frame (py-spy's raw format:
    `frame;frame;… count`, outermost first)."""
    found: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        for frame in reversed(frames):
            match = FRAME.match(frame.strip())
            if match:
                found[component(match["file"])] += int(count)
                break
        else:
            found["(no Python frame)"] += int(count)
    return found


def py_spy() -> str | None:
    """py-spy on PATH, or beside this interpreter (`pip install py-spy` into the venv)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def sample(stack: Stack, app: str, server: str, seconds: int, rate: int) -> dict[str, Any]:
    """Serve `app`, load it with wrk while py-spy samples its workers; µs per delivery."""
    lines = stack.tmp / f"deliveries-{app}.txt"
    delivery_lines(lines, max(20_000, seconds * 4_000), f"spy{app}{time.time_ns()}")
    url = stack.gunicorn(APPS[app], server=server)
    raw = stack.tmp / f"{app}.raw"
    assert stack.web is not None
    spy = subprocess.Popen(
        [
            py_spy() or "py-spy",
            "record",
            "--pid",
            str(stack.web.pid),
            "--subprocesses",
            "--rate",
            str(rate),
        ]
        + ["--duration", str(seconds), "--format", "raw", "--output", str(raw), "--nonblocking"]
        + ["--full-filenames", "--gil"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches to every worker
    found = wrk(url, lines, seconds - 2, 32)
    spy.wait(timeout=seconds + 30)
    stack.stop_gunicorn()
    lines.unlink()
    samples = leaf_samples(raw)
    # the sampling window is `seconds`, wrk's `seconds - 2` inside it: charge the samples to the
    # requests wrk made, at wrk's rate over the whole window
    deliveries = found["requests_per_second"] * seconds
    per_delivery = {name: count / rate / deliveries * 1e6 for name, count in samples.items()}
    return {
        "requests_per_second": found["requests_per_second"],
        "cpu_us_per_delivery": round(sum(per_delivery.values()), 1),
        "by_component_us": {k: round(v, 1) for k, v in sorted(per_delivery.items(), key=_largest)},
    }


def _largest(item: tuple[str, float]) -> float:
    return -item[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--server", choices=["plain", "shipped"], default="plain")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", type=Path, default=None, help="copy py-spy's raw stacks here")
    args = parser.parse_args()
    if not py_spy() or not shutil.which("wrk"):
        sys.exit("needs py-spy and wrk (pip install py-spy; apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="verihook-spy-"))
    with Stack(args.backend, tmp) as stack:
        floor_app.create_table(stack.settings.database_url)
        found = {
            app: sample(stack, app, args.server, args.seconds, args.rate)
            for app in ("receiver", "floor")
        }
    names = list(found["receiver"]["by_component_us"])
    names += [n for n in found["floor"]["by_component_us"] if n not in names]
    print(f"CPU per delivery in the serving workers, {args.backend}, {args.server} (py-spy):")
    print(f"  {'where':44} {'verihook':>9} {'floor':>9}")
    for name in names:
        ours = found["receiver"]["by_component_us"].get(name, 0.0)
        floor = found["floor"]["by_component_us"].get(name, 0.0)
        if max(ours, floor) >= 3:
            print(f"  {name:44} {ours:9.0f} {floor:9.0f}")
    print(f"  {'all':44} {found['receiver']['cpu_us_per_delivery']:9.0f}", end=" ")
    print(f"{found['floor']['cpu_us_per_delivery']:9.0f}")
    rates = {app: found[app]["requests_per_second"] for app in found}
    print(f"  requests/s while sampled: verihook {rates['receiver']:.0f},", end=" ")
    print(f"floor {rates['floor']:.0f}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for raw in tmp.glob("*.raw"):
            shutil.copy(raw, args.keep / raw.name)
    result = {"backend": args.backend, "server": args.server, "seconds": args.seconds, **found}
    write_result(args.json or f"bench/results/spy_ingest_{args.backend}_{args.server}.json", result)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
