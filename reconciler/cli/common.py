"""What every command needs: settings, services or an engine, or a clean exit explaining why not."""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from receiver.exceptions import VerihookError
from receiver.inputs import check_ref
from receiver.settings import Settings, load_settings

if TYPE_CHECKING:  # each command imports what it needs: `verihook --help` stays fast
    from sqlalchemy import Engine

    from receiver.services import Services


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


def ref_argument(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """click callback: a user ref or session id, by the one rule of receiver/inputs.py (as the
    API and the webhooks apply it); a usage error (exit 2) otherwise."""
    try:
        return check_ref(value, param.name or "value")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
