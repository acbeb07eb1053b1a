"""verihook's wiring: `create_app()` and the `verihook` command group.

`gunicorn app:app` and `flask --app app …` both work: `app` is built on first access.
"""

from __future__ import annotations

from typing import Any

import click
from flask import Flask, jsonify

from receiver import console, health, requests, webhooks
from receiver.api import audit as api_audit
from receiver.api import erasure as api_erasure
from receiver.api import events as api_events
from receiver.api import openapi as api_openapi
from receiver.api import views as api_views
from receiver.services import Services, init_app
from receiver.settings import Settings, load_settings


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the Flask app from settings (read from the environment when not given)."""
    from receiver.logs import configure_logging

    settings = settings or (services.settings if services else load_settings())
    configure_logging(settings.log_level)
    flask_app = Flask("verihook", static_folder=None)
    flask_app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1  # see read_body
    services = services or Services.build(settings)
    init_app(flask_app, services)
    requests.init_app(flask_app)
    webhooks.init_app(flask_app, services)
    flask_app.register_blueprint(api_views.bp)
    flask_app.register_blueprint(api_audit.bp)
    flask_app.register_blueprint(api_events.bp)
    flask_app.register_blueprint(api_erasure.bp)
    flask_app.register_blueprint(api_openapi.bp)
    flask_app.register_blueprint(health.bp)
    console.init_app(flask_app)
    _register_error_handlers(flask_app)
    for command in cli.commands.values():
        flask_app.cli.add_command(command)
    return flask_app


def _register_error_handlers(flask_app: Flask) -> None:
    """JSON errors without internals for every HTTP error and any unexpected exception; 503
    with Retry-After when the database is unreachable (the console has its own page)."""
    from werkzeug.exceptions import HTTPException

    from receiver.exceptions import StoreUnavailableError
    from receiver.store.db import UNAVAILABLE_ERRORS
    from receiver.webhooks import RETRY_AFTER_SECONDS

    @flask_app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        return jsonify({"error": (exc.name or "error").lower()}), exc.code

    def store_unavailable(exc: Exception):  # type: ignore[no-untyped-def]
        flask_app.logger.warning("database unavailable: %s", type(exc).__name__)
        return (
            jsonify({"error": "store unavailable"}),
            503,
            {"Retry-After": RETRY_AFTER_SECONDS},
        )

    for error in (StoreUnavailableError, *UNAVAILABLE_ERRORS):
        flask_app.register_error_handler(error, store_unavailable)

    @flask_app.errorhandler(Exception)
    def unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        flask_app.logger.exception("unhandled error")
        return jsonify({"error": "internal error"}), 500


@click.group(help="verihook: trusted ingest and reconciliation of identity-verification results.")
def cli() -> None:
    """The `verihook` command group."""


def _register_commands() -> None:
    from receiver.cli import db, outbox, up, web
    from reconciler.audit_cli import audit
    from reconciler.cli import keys, purge, scheduler, sessions, simulate, users, worker
    from reconciler.demo import demo
    from reconciler.events_cli import events, replay
    from reconciler.notify_cli import notifications
    from reconciler.tokens import tokens

    for command in (
        db,
        outbox,
        up,
        web,
        worker,
        scheduler,
        sessions,
        simulate,
        notifications,
        keys,
        purge,
        users,
        demo,
        audit,
        events,
        replay,
        tokens,
    ):
        cli.add_command(command)


_register_commands()


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
