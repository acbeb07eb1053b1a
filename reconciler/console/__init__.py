"""The web console at /console: server-rendered pages for operators and auditors, no JavaScript.

Sign in with an API token (operator or auditor; the backend role gets 403). Signing in opens a
session on the server (`session_store.py`: the token's digest and an expiry,
`VERIHOOK_CONSOLE_SESSION_SECONDS`); the signed cookie holds only that session's id and a CSRF
token. Every request looks the session up again, and its token among the valid tokens, so
signing out, expiry or a revoked token ends it at once, whoever holds a copy of the cookie.
Every POST carries the session's CSRF token. Every answer carries a strict
Content-Security-Policy (no script at all) and the other security headers; pages with data are
never cached. See `security.py`.

`init_app(app)` registers the blueprint (`blueprint.py`; its routes are in `pages.py`,
`event_pages.py`, `replay_pages.py`, `triage_pages.py`, `audit_pages.py` and `sign_in.py`) and
configures the session cookie and its signing key (`secret.py`).
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from receiver.services import get_services
from receiver.settings import Settings
from reconciler.console import (  # noqa: F401
    audit_pages,
    event_pages,
    pages,
    replay_pages,
    security,
    sign_in,
    triage_pages,
)
from reconciler.console.blueprint import ENABLED_KEY, bp


class ConsoleSessions(SecureCookieSessionInterface):
    """The signed session cookie exists only under /console: every other request (each provider
    delivery) skips building a signer and reading a cookie."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """A null session outside the console."""
        if not request.path.startswith(bp.url_prefix or "/console"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def configure(app: Flask, settings: Settings) -> None:
    """Set the session cookie's signing key(s) and attributes on `app`."""
    from reconciler.console.secret import secret_keys

    app.session_interface = ConsoleSessions()
    keys = secret_keys(settings)
    app.config[ENABLED_KEY] = bool(keys)
    if keys:
        app.config["SECRET_KEY"] = keys[0]
        app.config["SECRET_KEY_FALLBACKS"] = keys[1:]
    app.config.update(
        SESSION_COOKIE_NAME="verihook_console",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.env != "development",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.console_session_seconds),
    )


def init_app(app: Flask) -> None:
    """Register the console on an app built by `create_app` (its services are attached)."""
    with app.app_context():
        settings = get_services().settings
    configure(app, settings)
    app.register_blueprint(bp)
    app.after_request(security.security_headers)
