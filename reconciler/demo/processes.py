"""The verihook processes a demo starts: each logged to its own file, stopped by its own PID."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import click
import httpx
from redis import Redis
from rq import Worker

ROOT = Path(__file__).resolve().parents[2]
"""Where app.py lives (reconciler/demo/processes.py → the project root): the working directory
and PYTHONPATH of every verihook process the demo starts, so they run this tree's code (not
whatever an editable install points at)."""
WORKERS = 2
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class Processes:
    """The verihook processes the demo started, each stopped by its own PID."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.children: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `verihook ARGS…` with its output in `<log_dir>/<name>.log`."""
        log = (self.log_dir / f"{name}.log").open("wb")
        command = [sys.executable, "-c", "from app import main; main()", *args]
        child = subprocess.Popen(
            command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        self.children.append((name, child, log))
        return child

    def run(self, name: str, *args: str) -> None:
        """Run `verihook ARGS…` to completion (ClickException when it fails)."""
        child = self.start(name, *args)
        if child.wait(timeout=60) != 0:
            raise click.ClickException(f"`verihook {' '.join(args)}` failed: see {self.log_dir}")

    def check_alive(self) -> None:
        """ClickException naming any long-running process that died."""
        for name, child, _ in self.children:
            if child.poll() not in (None, 0):
                raise click.ClickException(f"verihook {name} exited: see {self.log_dir}")

    def stop(self) -> None:
        """Terminate every child by PID, then kill those that do not stop in time."""
        for _, child, _ in self.children:
            if child.poll() is None:
                child.terminate()
        for _, child, log in self.children:
            try:
                child.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=STOP_TIMEOUT_SECONDS)
            log.close()


def wait_until_up(url: str, redis_url: str, processes: Processes) -> None:
    """Block until `GET /healthz` answers 200 and every worker has registered with RQ."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with Redis.from_url(redis_url) as redis:
        while time.monotonic() < deadline:
            processes.check_alive()
            if _answers(f"{url}/healthz") and Worker.count(connection=redis) >= WORKERS:
                return
            time.sleep(0.2)
    raise click.ClickException(f"verihook did not come up at {url} (see {processes.log_dir})")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
