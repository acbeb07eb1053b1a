"""Receiver-side commands: `db upgrade`, `outbox flush`, `web`, `up`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import click
from pydantic import ValidationError
from redis.exceptions import RedisError

from receiver.embedded_redis import EmbeddedRedis
from receiver.exceptions import VerihookError
from receiver.outbox import flush_outbox
from receiver.services import Services
from receiver.settings import Settings, load_settings
from receiver.store.migrate import upgrade

GUNICORN_CONFIG = "python:receiver.gunicorn_conf"
"""gunicorn settings, shipped inside the package so that an installed verihook finds them."""


def settings_or_exit() -> Settings:
    """Load the settings, turning any configuration problem into a clean CLI failure."""
    try:
        return load_settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"invalid configuration: {problems}") from exc
    except (VerihookError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from exc


def services_or_exit() -> Services:
    """Build the services, turning configuration errors into a clean CLI failure."""
    settings = settings_or_exit()
    try:
        return Services.build(settings)
    except VerihookError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("check")
def db_check() -> None:
    """Exit 0 when the database is at the newest schema, 1 otherwise (for init containers)."""
    from receiver.store.migrate import current_revision, head_revision

    services = services_or_exit()
    try:
        current, head = current_revision(services.engine), head_revision()
    finally:
        services.close()
    if current != head:
        raise click.ClickException(f"database is at {current!r}, this code needs {head!r}")
    click.echo(f"database is at the newest schema ({head})")


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    services = services_or_exit()
    try:
        upgrade(services.engine)
    finally:
        services.close()
    click.echo("database is at the newest schema")


@click.group()
def outbox() -> None:
    """The outbox of events waiting for a worker."""


@outbox.command("flush")
def outbox_flush() -> None:
    """Wake the workers for every event still waiting in the outbox."""
    services = services_or_exit()
    try:
        result = flush_outbox(services.engine, services.redis, services.settings.queue_name)
    except RedisError as exc:
        raise click.ClickException(f"Redis is unreachable: {type(exc).__name__}") from exc
    finally:
        services.close()
    click.echo(
        f"{result.pending} event(s) waiting; woke workers for {result.woken}"
        + (f" (job {result.job_id})" if result.job_id else "")
    )


def gunicorn_command(bind: str) -> list[str]:
    """The gunicorn command line for the receiver."""
    return [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, "--bind", bind]


@click.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to serve on.")
def web(bind: str) -> None:
    """Serve the receiver with gunicorn."""
    services_or_exit().close()
    os.execv(sys.executable, gunicorn_command(bind))


@click.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to serve on.")
def up(bind: str) -> None:
    """Run receiver, worker and scheduler together (embedded Redis and SQLite by default)."""
    settings = settings_or_exit()
    embedded = None
    env = dict(os.environ)
    if not settings.redis_url:
        embedded = EmbeddedRedis(Path(settings.var_dir))
        env["VERIHOOK_REDIS_URL"] = embedded.start()
    metrics_dir = Path(settings.var_dir).resolve() / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    env["VERIHOOK_KEEP_METRICS"] = "1"  # the worker and scheduler write there too
    upgrade(services_or_exit().engine)
    verihook = [sys.executable, "-c", "from app import main; main()"]
    commands = [gunicorn_command(bind), verihook + ["worker"]]
    commands += [verihook + ["scheduler"]] if _has_command("scheduler") else []
    children = [subprocess.Popen(cmd, env=env) for cmd in commands]
    click.echo(f"verihook is up on http://{bind} (Ctrl-C stops it)")
    try:
        _wait_for_any(children)
    finally:
        _stop(children)
        if embedded:
            embedded.stop()


def _has_command(name: str) -> bool:
    from app import cli

    return name in cli.commands


def _wait_for_any(children: list[subprocess.Popen[bytes]]) -> None:
    stop = {"now": False}

    def on_signal(_signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop["now"] and all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
