"""What every benchmark needs: a private database and Redis, settings, gunicorn, figures."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlmodel import Session

from receiver.providers import build_providers
from receiver.services import Services
from receiver.store.crypto import Keyring
from receiver.store.db import make_engine
from receiver.store.migrate import upgrade
from receiver.store.models import InboundEvent
from tests.conftest import TEST_KEYS, create_private_database, drop_private_database, make_settings
from tests.support.processes import ROOT, settings_env
from tests.support.redis_server import RedisServer, free_port


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of `values`, 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)], 3)


def write_result(path: str, result: dict[str, Any]) -> None:
    """Write a benchmark's JSON result."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2) + "\n")


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size in MB: private pages plus this process's share of shared ones
    (what `smem` reports; from /proc/<pid>/smaps_rollup)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def children(pid: int) -> list[int]:
    """Direct children of a process."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


class Stack:
    """A private database (SQLite file or a fresh PostgreSQL database), Redis and settings."""

    def __init__(self, backend: str, tmp: Path, **overrides: Any) -> None:
        self.backend, self.tmp, self.overrides = backend, tmp, overrides
        self.web_workers = 2 if backend == "sqlite" else multiprocessing.cpu_count()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.web: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Stack:
        self.database = create_private_database() if self.backend == "postgresql" else None
        self.engine = make_engine(self.database or f"sqlite:///{self.tmp / 'bench.db'}")
        upgrade(self.engine)
        self.redis = RedisServer().start()
        self.settings = make_settings(
            self.engine, self.redis.url, self.tmp, log_level="WARNING", **self.overrides
        )
        self.services = Services(
            settings=self.settings,
            engine=self.engine,
            keyring=Keyring.parse(TEST_KEYS),
            providers=build_providers(self.settings),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_gunicorn()
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.engine.dispose()
        self.redis.kill()
        if self.database:
            drop_private_database(self.database)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a child process configured like this stack."""
        env = settings_env(self.settings)
        env.update({"PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "prometheus"), **extra})
        for sizing in ("VERIHOOK_WEB_WORKERS", "VERIHOOK_WEB_THREADS"):  # to try other sizes
            if sizing in os.environ:
                env[sizing] = os.environ[sizing]
        return env

    def gunicorn(self, app: str | None = None, server: str = "shipped", code: Path = ROOT) -> str:
        """Start gunicorn serving verihook (or `app`) from the checkout `code`; return its URL.

        `server` is "shipped" (deploy/gunicorn.conf.py) or "plain" (`gunicorn -w 2 app:app`:
        gunicorn's defaults, sync workers, as a new user would first try it).
        """
        port = free_port()
        env = self.env(VERIHOOK_LOG_LEVEL="INFO", PYTHONPATH=str(code))
        if server == "shipped":
            config = ["-c", str(code / "deploy" / "gunicorn.conf.py")]
            target = [app] if app else []
        else:
            config, target = ["-w", "2"], [app or "app:app"]
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        args = [sys.executable, "-m", "gunicorn", *config, "--bind", f"127.0.0.1:{port}", *target]
        self.web = subprocess.Popen(
            args, env=env, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 404):
                    time.sleep(1.0)  # let every worker finish booting
                    return url
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def stop_gunicorn(self) -> None:
        """Stop the gunicorn started last."""
        if self.web is not None and self.web.poll() is None:
            self.web.terminate()
            self.web.wait(timeout=20)
        self.web = None

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start `verihook ARGS` in the background."""
        proc = subprocess.Popen(
            [sys.executable, "-c", "from app import main; main()", *args],
            env=self.env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(proc)
        return proc

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` RQ workers listen on our queue (they take seconds to boot)."""
        key = f"rq:workers:{self.settings.queue_name}"
        deadline = time.monotonic() + timeout
        while self.services.redis.scard(key) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers did not register within {timeout} s")
            time.sleep(0.2)

    def count_events(self) -> int:
        """Stored inbound events."""
        with Session(self.engine) as db:
            return db.execute(select(func.count()).select_from(InboundEvent)).scalar_one()
