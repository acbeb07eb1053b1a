"""How long a `verihook` command takes to start, over the interpreter's own start (issue 13).

Each command runs as a fresh process, `--runs` times; the figure is the median wall time minus
the median of `python -c pass` (the same interpreter, site-packages and all). `events list` reads
a freshly migrated, empty SQLite store in a temporary directory (or `--database-url`), so the
time is start-up plus one query. Also counts the modules a receiver (gunicorn) worker imports
when it builds the app, and whether any CLI-only module (simulators, demo, replay CLI) is among
them. Target: each command at most 0.5 s over the interpreter.

    .venv/bin/python -m bench.cli_startup            # writes bench/results/cli_startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_OVER_INTERPRETER_S = 0.5
COMMANDS = {
    "verihook --help": ["--help"],
    "verihook events list": ["events", "list"],
    "verihook events list --help": ["events", "list", "--help"],
    "verihook sessions list": ["sessions", "list"],
}
CLI_ONLY = ("reconciler.simulators", "reconciler.demo", "reconciler.cli")
WEB_IMPORTS = """
import sys
from app import create_app
create_app()
cli_only = sorted(m for m in sys.modules if m.startswith({cli_only!r}))
print(len(sys.modules), ",".join(cli_only))
"""


def verihook() -> list[str]:
    """The installed console script, else the same entry point through `-c`."""
    script = Path(sys.executable).parent / "verihook"
    fallback = [sys.executable, "-c", "from app import main; main()"]
    return [str(script)] if script.exists() else fallback


def timed(argv: list[str], env: dict[str, str], runs: int) -> float:
    """The median wall time of `runs` runs of argv (each must exit 0)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def web_imports(env: dict[str, str]) -> dict[str, object]:
    """How many modules a receiver worker holds after building the app, and CLI-only ones."""
    code = WEB_IMPORTS.format(cli_only=CLI_ONLY)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    return {"modules": int(out[0]), "cli_only_modules": out[1].split(",") if len(out) > 1 else []}


def main() -> None:
    """Measure, print a table, write bench/results/cli_startup.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--database-url", default=None, help="Default: a fresh SQLite store.")
    parser.add_argument("--json", default="bench/results/cli_startup.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="verihook-cli-bench-") as var_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VERIHOOK_")}
        env["PYTHONPATH"] = str(ROOT)
        env["VERIHOOK_VAR_DIR"] = var_dir
        env["VERIHOOK_DATABASE_URL"] = args.database_url or f"sqlite:///{var_dir}/verihook.db"
        env["VERIHOOK_REDIS_URL"] = "redis://127.0.0.1:1/0"  # never reached by these commands
        subprocess.run([*verihook(), "db", "upgrade"], env=env, cwd=ROOT, check=True)
        interpreter = timed([sys.executable, "-c", "pass"], env, args.runs)
        commands = {}
        for name, argv in COMMANDS.items():
            median = timed([*verihook(), *argv], env, args.runs)
            commands[name] = {
                "median_s": round(median, 3),
                "over_interpreter_s": round(median - interpreter, 3),
                "met": median - interpreter <= TARGET_OVER_INTERPRETER_S,
            }
        web = web_imports(env)
    print(f"interpreter start (python -c pass): {interpreter:.3f} s; median of {args.runs} runs")
    print(f"{'command':<30} {'median':>8} {'over python':>12}  target ≤ 0.5 s")
    for name, row in commands.items():
        verdict = "met" if row["met"] else "MISSED"
        print(f"{name:<30} {row['median_s']:>7.3f}s {row['over_interpreter_s']:>11.3f}s  {verdict}")
    print(
        f"receiver worker after create_app(): {web['modules']} modules; CLI-only: "
        f"{', '.join(web['cli_only_modules']) or 'none'}"
    )  # type: ignore[arg-type]
    result = {
        "python": sys.version.split()[0],
        "runs": args.runs,
        "backend": "postgresql" if args.database_url else "sqlite",
        "interpreter_s": round(interpreter, 3),
        "target_over_interpreter_s": TARGET_OVER_INTERPRETER_S,
        "commands": commands,
        "web_worker": web,
    }
    out = ROOT / args.json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
