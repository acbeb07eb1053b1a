"""`verihook up`: receiver, worker and scheduler in one command, on the embedded defaults.

First run (development only): when no provider is configured and `VERIHOOK_ENV` is not
`production`, it starts the five provider simulators on 127.0.0.1 and points verihook's providers
at them (and them at verihook), so a session can be created, finished and seen settling at once.
At start it prints what runs where: providers, the URL to give each one, the console, a token.

Stopping: the children run in process groups of their own, so the terminal's Ctrl-C reaches
only this process. Ctrl-C or SIGTERM stops the receiver, the worker (it finishes or hands back
its batch) and the scheduler (it releases its lock) first, then the simulators and the private
Redis they all use, and exits 0; a second Ctrl-C kills everything at once and exits 130.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from receiver.exceptions import VerihookError
from receiver.settings import Settings
from reconciler.cli.bind import refuse_busy_bind
from reconciler.cli.common import database_errors, settings_or_exit
from reconciler.cli.first_run import first_run_block, start_simulators, wants_simulators
from reconciler.cli.web import gunicorn_command

if TYPE_CHECKING:
    from receiver.embedded_redis import EmbeddedRedis
    from reconciler.simulators import Simulator

STOP_TIMEOUT_SECONDS = 20.0
"""How long the receiver, worker and scheduler get to stop cleanly before they are killed."""
READY_TIMEOUT_SECONDS = 30.0


class ForcedStop(BaseException):
    """A second Ctrl-C: kill everything now."""


class StopSignals:
    """The first SIGINT or SIGTERM asks for a clean stop; a second SIGINT forces one."""

    def __init__(self) -> None:
        self.asked = self.forced = False

    def __call__(self, signum: int, _frame: object) -> None:
        """Signal handler (writes with os.write: a buffered stream may be mid-write)."""
        if not self.asked:
            self.asked = True
            os.write(2, "stopping (Ctrl-C again to force)…\n".encode())
        elif signum == signal.SIGINT and not self.forced:
            self.forced = True
            os.write(2, b"forcing the stop\n")
            raise ForcedStop()

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Handle SIGINT and SIGTERM while the block runs."""
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def local_url(bind: str) -> str:
    """The loopback URL of a bind address (`0.0.0.0:8000` → `http://127.0.0.1:8000`)."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    return f"http://{'127.0.0.1' if host in ('', '0.0.0.0', '::') else host}:{port}"


class Stack:
    """Everything `up` started, stopped in order: children, then simulators, then Redis."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.sims: dict[str, Simulator] = {}
        self.redis: EmbeddedRedis | None = None

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        """Start a child in a process group of its own (Ctrl-C is for `up` to hand on)."""
        self.children.append((name, subprocess.Popen(command, env=env, process_group=0)))

    def dead_child(self) -> str | None:
        """The name and status of a child that exited, if any."""
        for name, child in self.children:
            if child.poll() is not None:
                return f"verihook {name} exited with status {child.returncode}"
        return None

    def stop(self) -> None:
        """SIGTERM each child, wait (kill after STOP_TIMEOUT_SECONDS), then stop the rest."""
        for _, child in self.children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for _, child in self.children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _kill_group(child)
        self._stop_the_rest()

    def force(self) -> None:
        """Kill every child's process group at once, then stop the rest."""
        for _, child in self.children:
            _kill_group(child)
        self._stop_the_rest()

    def _stop_the_rest(self) -> None:
        for sim in self.sims.values():
            sim.stop()
        if self.redis is not None:
            self.redis.stop()


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def child_env(settings: Settings, stack: Stack, url: str, simulate: bool) -> dict[str, str]:
    """The environment of the receiver, worker and scheduler."""
    import shutil

    env = dict(os.environ)
    if not settings.redis_url:
        from receiver.embedded_redis import EmbeddedRedis

        stack.redis = EmbeddedRedis(Path(settings.var_dir))
        env["VERIHOOK_REDIS_URL"] = stack.redis.start()
    default_metrics = str(Path(settings.var_dir).resolve() / "prometheus")
    metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", default_metrics))
    shutil.rmtree(metrics_dir, ignore_errors=True)  # stale files would add old counts
    metrics_dir.mkdir(parents=True)
    env["VERIHOOK_KEEP_METRICS"] = "1"  # the worker and scheduler write there too
    env.setdefault("VERIHOOK_PUBLIC_URL", url)
    if simulate:
        env.update(start_simulators(stack.sims, url))
    if not settings.is_production and not settings.api_tokens:
        env["VERIHOOK_API_TOKENS"] = "backend:" + secrets.token_urlsafe(24)
    return env


def migrate(settings: Settings) -> None:
    """Bring the database to the newest schema (a clean CLI failure, in one line naming
    VERIHOOK_DATABASE_URL, if it cannot)."""
    from receiver.store.db import make_engine
    from receiver.store.migrate import upgrade

    with database_errors():
        engine = make_engine(settings.database_url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()


def wait_until_ready(url: str, stack: Stack, stop: StopSignals) -> None:
    """Until `GET /healthz` answers; ClickException if a child died or it takes too long."""
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not stop.asked and time.monotonic() < deadline:
        died = stack.dead_child()
        if died:
            raise click.ClickException(died)
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    if not stop.asked:
        raise click.ClickException(f"the receiver did not answer at {url} in time")


@click.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to serve on.")
@click.option("--no-simulators", is_flag=True, help="Never start the provider simulators.")
def up(bind: str, no_simulators: bool) -> None:
    """Run receiver, worker and scheduler together (embedded Redis and SQLite by default).

    In development with no provider configured, the five provider simulators are started and
    wired in too. Ctrl-C (or SIGTERM) stops everything cleanly; a second Ctrl-C forces.
    """
    from receiver.logs import configure_logging

    settings = settings_or_exit()
    refuse_busy_bind(bind, "up")
    configure_logging(settings.log_level)
    stack, url = Stack(), local_url(bind)
    with StopSignals().installed() as stop:
        try:
            failure = _run(settings, stack, stop, bind, url, not no_simulators)
        except ForcedStop:
            stack.force()
            sys.exit(130)
    if failure:
        raise click.ClickException(f"{failure}; stopped the rest")


def _run(
    settings: Settings, stack: Stack, stop: StopSignals, bind: str, url: str, simulate: bool
) -> str | None:
    """Start, wait for a stop or a dead child, stop; the failure to report, if any."""
    failure = None
    try:
        migrate(settings)
        env = child_env(settings, stack, url, simulate and wants_simulators(settings))
        if stop.asked:
            return None
        verihook = [sys.executable, "-c", "from app import main; main()"]
        stack.start("web", gunicorn_command(bind), env)
        stack.start("worker", [*verihook, "worker"], env)
        stack.start("scheduler", [*verihook, "scheduler"], env)
        wait_until_ready(url, stack, stop)
        if not stop.asked:
            click.echo(first_run_block(url, env, stack.sims, settings))
        while not stop.asked and failure is None:
            failure = stack.dead_child()
            time.sleep(0.2)
    except click.ClickException as exc:
        failure = exc.format_message()
    except VerihookError as exc:  # the private Redis did not start, …
        failure = str(exc)
    finally:
        stack.stop()
    return failure
