"""Receiver-side commands: `db upgrade|check`, `outbox flush`, `web`."""

from __future__ import annotations

import os
import sys
import tomllib
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from receiver.exceptions import VerihookError
from receiver.settings import Settings, load_settings

if TYPE_CHECKING:  # each command imports what it needs: `verihook --help` stays fast
    from sqlalchemy import Engine

    from receiver.services import Services

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
    from receiver.services import Services

    settings = settings_or_exit()
    try:
        return Services.build(settings)
    except VerihookError as exc:
        raise click.ClickException(str(exc)) from exc


def engine_or_exit() -> Engine:
    """Only the database engine (for commands that read the store and need nothing else)."""
    from receiver.store.db import make_engine

    return make_engine(settings_or_exit().database_url)


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
    from receiver.store.migrate import upgrade

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
    from redis.exceptions import RedisError

    from receiver.outbox import flush_outbox

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
