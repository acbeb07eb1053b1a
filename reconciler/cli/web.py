"""`verihook web`: serve the receiver with gunicorn."""

from __future__ import annotations

import os
import sys

import click

from reconciler.cli.bind import refuse_busy_bind
from reconciler.cli.common import services_or_exit

GUNICORN_CONFIG = "python:receiver.gunicorn_conf"
"""gunicorn settings, shipped inside the package so that an installed verihook finds them."""


def gunicorn_command(bind: str) -> list[str]:
    """The gunicorn command line for the receiver."""
    return [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, "--bind", bind]


@click.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to serve on.")
def web(bind: str) -> None:
    """Serve the receiver with gunicorn."""
    refuse_busy_bind(bind, "web")
    services_or_exit(store="any").close()
    os.execv(sys.executable, gunicorn_command(bind))
