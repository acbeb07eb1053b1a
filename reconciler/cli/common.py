"""What every command needs: settings, services or an engine, or a clean exit explaining why not.

A database problem (an unreachable server, an unsupported URL, a store never migrated, a
mistyped SQLite path) ends a command with one line on stderr saying what failed, where, which
variable to fix and what to run, never a traceback: the groups and commands that reach the store
are `StoreGroup`s and `StoreCommand`s. A command that works on an existing store never creates
a SQLite file, nor its directory.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import click
from pydantic import ValidationError

from receiver.exceptions import VerihookError
from receiver.inputs import check_ref
from receiver.settings import Settings, load_settings

if TYPE_CHECKING:  # each command imports what it needs: `verihook --help` stays fast
    from sqlalchemy import Engine

    from receiver.services import Services

SETTINGS = "verihook.settings"
"""Where (in click's shared `ctx.meta`) a command keeps the settings it runs with, for the message
of an error that the database or Redis raises later."""

Store = Literal["migrated", "reachable", "any"]
"""What a command needs of the store before it starts: `migrated` (it works on the store as it
is: the database exists, answers and holds verihook's tables; a missing SQLite file is an
error, never created), `reachable` (`db upgrade`: the database answers; a SQLite file is
created), `any` (the long-running processes, which wait out a database outage)."""


def settings_or_exit() -> Settings:
    """Load the settings, turning any configuration problem into a clean CLI failure."""
    try:
        settings = load_settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"invalid configuration: {problems}") from exc
    except (VerihookError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from exc
    context = click.get_current_context(silent=True)
    if context is not None:
        context.meta[SETTINGS] = settings
    return settings


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn an error of the database (or of its URL), or an unreachable Redis, into one line
    naming the variable to fix and what to do; anything else passes."""
    try:
        yield
    except Exception as exc:
        context = click.get_current_context(silent=True)
        settings = context.meta.get(SETTINGS) if context is not None else None
        message = _explained(exc, settings)
        if message is None:
            raise
        raise click.ClickException(message) from exc


def _explained(error: Exception, settings: Settings | None) -> str | None:
    from receiver.store.problems import explain

    default = Settings.model_fields["database_url"].default
    message = explain(error, settings.database_url if settings else default)
    if message is not None or not type(error).__module__.startswith("redis"):
        return message
    from redis.exceptions import ConnectionError, TimeoutError

    if not isinstance(error, ConnectionError | TimeoutError):
        return None
    url = settings.redis_url if settings else None
    named = f"VERIHOOK_REDIS_URL={url}" if url else "VERIHOOK_REDIS_URL unset: the embedded one"
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
    return (
        f"cannot reach Redis ({named}): {reason}: start it, or set "
        "VERIHOOK_REDIS_URL (the embedded Redis runs only under `verihook up`)"
    )


class StoreGroup(click.Group):
    """A command group whose commands use the store: database errors end them in one line."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand, explaining a database error."""
        with database_errors():
            return super().invoke(ctx)


class StoreCommand(click.Command):
    """A command that uses the store: database errors end it in one line."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, explaining a database error."""
        with database_errors():
            return super().invoke(ctx)


def engine_or_exit(*, store: Store = "migrated") -> Engine:
    """Only the database engine (for commands that read the store and need nothing else),
    after checking what the command needs of the store (`Store`)."""
    return _engine(settings_or_exit(), store)


def _engine(settings: Settings, store: Store) -> Engine:
    from receiver.store.db import check_store, make_engine

    with database_errors():
        engine = make_engine(settings.database_url, create=store != "migrated")
        try:
            if store != "any":
                check_store(engine, tables=store == "migrated")
        except BaseException:
            engine.dispose()
            raise
    return engine


def services_or_exit(*, store: Store = "migrated") -> Services:
    """Build the services, turning configuration and database errors into a clean CLI failure.
    The store is checked first, as `engine_or_exit` does, so a broken database URL creates
    nothing (not even a development encryption key)."""
    from receiver.services import Services

    settings = settings_or_exit()
    engine = _engine(settings, store)
    try:
        return Services.build(settings, engine=engine)
    except VerihookError as exc:
        engine.dispose()
        raise click.ClickException(str(exc)) from exc


def ref_argument(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """click callback: a user ref or session id, by the one rule of receiver/inputs.py (as the
    API and the webhooks apply it); a usage error (exit 2) otherwise."""
    try:
        return check_ref(value, param.name or "value")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
