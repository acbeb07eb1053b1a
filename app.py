"""verihook's wiring: `create_app()` and the `verihook` command group.

`gunicorn app:app` and `flask --app app …` both work: `app` is built on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, cast

import click

if TYPE_CHECKING:  # imported inside create_app: `verihook --help` needs none of it
    from flask import Flask
    from flask.cli import AppGroup

    from receiver.request_rules import ViewResult
    from receiver.services import Services
    from receiver.settings import Settings

COMMANDS = {
    "up": "reconciler.cli.up:up",
    "web": "reconciler.cli.web:web",
    "worker": "reconciler.cli.processes:worker",
    "scheduler": "reconciler.cli.processes:scheduler",
    "db": "reconciler.cli.store:db",
    "outbox": "reconciler.cli.store:outbox",
    "events": "reconciler.cli.events:events",
    "replay": "reconciler.cli.replay:replay",
    "sessions": "reconciler.cli.records:sessions",
    "notifications": "reconciler.cli.notifications:notifications",
    "audit": "reconciler.cli.audit:audit",
    "tokens": "reconciler.cli.tokens:tokens",
    "keys": "reconciler.cli.records:keys",
    "purge": "reconciler.cli.records:purge",
    "users": "reconciler.cli.records:users",
    "simulate": "reconciler.cli.processes:simulate",
    "demo": "reconciler.demo.run:demo",
    "doctor": "reconciler.cli.doctor:doctor",
}
"""Every `verihook` command as "module:attribute", imported only when that command runs (or its
help is shown): a command pays for its own imports, and `verihook --help` for none."""


class LazyGroup(click.Group):
    """A click group whose commands come from COMMANDS, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, without importing any of them."""
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module now."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, _, attribute = COMMANDS[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list with one-line summaries from COMMAND_HELP (no imports)."""
        rows = [(name, COMMAND_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


COMMAND_HELP = {
    "up": "Run receiver, worker and scheduler together (embedded Redis and SQLite by default).",
    "web": "Serve the receiver with gunicorn.",
    "worker": "Run an RQ worker that applies stored events (and delivers notifications).",
    "scheduler": "Run the scheduler: polls due sessions and sweeps the outbox while it holds the "
    "lead.",
    "db": "Database schema commands.",
    "outbox": "The outbox of events waiting for a worker.",
    "events": "Stored inbound events: list them, show one, replay one.",
    "replay": "Replay the events matching a filter: a dry run shows the effect first.",
    "sessions": "Verification sessions: list them, reconcile one now, merge them again.",
    "notifications": "Notifications of user-status changes sent to the product backend.",
    "audit": "The hash-chained audit history of every status change.",
    "tokens": "API tokens for the backend, operators and auditors.",
    "keys": "Encryption keys.",
    "purge": "Purge raw deliveries and personal details older than the retention period.",
    "users": "User records.",
    "simulate": "Run a provider simulator (contiguity, docverify, idvapi, idenfy, nevis) on "
    "127.0.0.1.",
    "demo": "Run the five simulators under chaos against real verihook processes, then report.",
    "doctor": "Check each configured provider's setup: URLs to give it, credentials, deliveries, "
    "refusals.",
}
"""The summary `verihook --help` shows per command (a test keeps it equal to each command's)."""


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the Flask app from settings (read from the environment when not given)."""
    from flask import Flask

    from receiver import health, request_rules, webhooks
    from receiver.logs import configure_logging
    from receiver.services import Services, init_app
    from receiver.settings import load_settings
    from reconciler import api, console

    settings = settings or (services.settings if services else load_settings())
    configure_logging(settings.log_level)
    flask_app = Flask("verihook", static_folder=None)
    flask_app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1  # see read_body
    services = services or Services.build(settings)
    init_app(flask_app, services)
    request_rules.init_app(flask_app)
    webhooks.init_app(flask_app, services)
    api.init_app(flask_app)
    flask_app.register_blueprint(health.bp)
    console.init_app(flask_app)
    _register_error_handlers(flask_app)
    flask_app.cli = flask_commands(flask_app.name)
    return flask_app


def _register_error_handlers(flask_app: Flask) -> None:
    """JSON errors without internals for every HTTP error and any unexpected exception; 503
    with Retry-After when the database is unreachable (the console has its own page). The 503
    and 500 are receiver/request_rules.py's, which the inbound front gives webhooks too."""
    from flask import jsonify
    from werkzeug.exceptions import HTTPException

    from receiver.exceptions import StoreUnavailableError
    from receiver.request_rules import internal_error_answer, unavailable_answer
    from receiver.store.db import UNAVAILABLE_ERRORS

    @flask_app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ViewResult:
        code = cast(int, exc.code)  # set on every HTTPException werkzeug and flask raise
        return jsonify({"error": (exc.name or "error").lower()}), code

    def store_unavailable(exc: Exception) -> ViewResult:
        return unavailable_answer(exc, flask_app.logger)

    unavailable: tuple[type[Exception], ...] = (StoreUnavailableError, *UNAVAILABLE_ERRORS)
    for error in unavailable:
        flask_app.register_error_handler(error, store_unavailable)

    @flask_app.errorhandler(Exception)
    def unexpected(exc: Exception) -> ViewResult:
        return internal_error_answer(flask_app.logger)


@click.group(
    cls=LazyGroup,
    help="verihook: trusted ingest and reconciliation of identity-verification results.",
)
def cli() -> None:
    """The `verihook` command group."""


def flask_commands(name: str) -> AppGroup:
    """The same lazy commands as a flask AppGroup, for `flask --app app …`."""
    from flask.cli import AppGroup

    class LazyAppGroup(LazyGroup, AppGroup):
        """LazyGroup's commands under flask's CLI."""

    return LazyAppGroup(name=name)


def __getattr__(name: str) -> Any:
    """Build `app` lazily so that importing this module has no side effects."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="verihook")


if __name__ == "__main__":
    main()
