"""Who is signed in, CSRF tokens, and the security headers of every console answer.

- The session (Flask's signed cookie, HttpOnly, SameSite=Strict, Secure outside development,
  path /console) holds `sid`, the id of a sign-in kept on the server (`session_store.py`), and
  `csrf`. On every request the sign-in is looked up by that id (gone after sign-out, or past
  `VERIHOOK_CONSOLE_SESSION_SECONDS`: the session has ended, whoever holds a copy of the cookie),
  and its token's digest among the tokens valid *now* (`reconciler.api.auth.known_tokens`): a
  revoked or removed token is signed out at its next request.
- CSRF: a random per-session token, rendered as a hidden field in every form and compared in
  constant time on every POST; a missing or wrong one is answered 400 before anything else runs.
- Headers: CSP without any script source, frame-ancestors 'none' and X-Frame-Options DENY,
  nosniff, Referrer-Policy no-referrer, and Cache-Control no-store on everything but the
  stylesheet.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, g, redirect, render_template, request, url_for
from flask import session as cookie
from flask.wrappers import Response

from receiver.services import get_services
from reconciler.api.auth import Principal, known_tokens
from reconciler.console.blueprint import ENABLED_KEY, bp
from reconciler.console.session_store import session_token

log = logging.getLogger(__name__)

CONSOLE_ROLES = frozenset({"operator", "auditor"})
STATIC_ENDPOINTS = frozenset({"console.stylesheet", "console.icon"})
PUBLIC_ENDPOINTS = frozenset({"console.sign_in", "console.sign_in_post", *STATIC_ENDPOINTS})
CSRF_FIELD = "csrf_token"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = cookie.get("csrf")
    if not isinstance(token, str) or not token:
        token = cookie["csrf"] = secrets.token_urlsafe(32)
    return token


def new_session(session_id: str) -> None:
    """Start a signed-in session (`session_id` from `session_store.open_session`): nothing
    carried over from before (no fixation), fresh CSRF."""
    cookie.clear()
    cookie["sid"] = session_id
    cookie["csrf"] = secrets.token_urlsafe(32)
    cookie.permanent = True


def csrf_ok() -> bool:
    """True when the POSTed form carries this session's CSRF token."""
    expected = cookie.get("csrf")
    given = request.form.get(CSRF_FIELD, "")
    return (
        isinstance(expected, str)
        and bool(expected)
        and hmac.compare_digest(expected.encode(), given.encode())
    )


def signed_in_principal() -> Principal | None:
    """The principal of the session if its sign-in is still open on the server and its token
    still valid, else None (and the cookie is cleared)."""
    session_id = cookie.get("sid")
    if not isinstance(session_id, str) or not session_id:
        return None
    digest = session_token(get_services().engine, session_id)
    if digest is None:
        log.info("console session ended: signed out or expired")
        cookie.clear()
        g.console_session_ended = True
        return None
    principal = known_tokens().get(digest)
    if principal is None:
        log.info("console session ended: its token is no longer valid")
        cookie.clear()
        g.console_session_ended = True
    return principal


def principal() -> Principal:
    """The signed-in principal of this request (set by the guard)."""
    found: Principal = g.console_principal
    return found


def is_operator() -> bool:
    """True when an operator is signed in."""
    found = g.get("console_principal")
    return found is not None and found.role == "operator"


def error_page(status: int, title: str, message: str) -> tuple[str, int]:
    """A plain error page with the request id."""
    return render_template(
        "console/error.html", status=status, title=title, message=message
    ), status


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path on this site, else the overview."""
    if value and value.startswith("/console") and "\\" not in value and "//" not in value:
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc:
            return value
    return url_for("console.overview")


@bp.before_request
def guard() -> Any:
    """Console off (503), CSRF (400), signed in (else to the sign-in page), role (403)."""
    if request.endpoint in STATIC_ENDPOINTS:
        return None
    if not current_app.config.get(ENABLED_KEY):
        return error_page(
            503,
            "The console is off",
            "Set VERIHOOK_CONSOLE_SECRET (32 or more random characters) to turn it on.",
        )
    if request.method == "POST" and not csrf_ok():
        return error_page(
            400,
            "Form expired or forged",
            "The form did not carry this session's security token. Reload the page and retry.",
        )
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    found = signed_in_principal()
    if found is None:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        gone = "1" if g.get("console_session_ended") else None
        return redirect(url_for("console.sign_in", next=target, ended=gone))
    g.console_principal = found
    if found.role not in CONSOLE_ROLES:
        return error_page(
            403, "Not for this role", "The console is for operator and auditor tokens."
        )
    return None


def operator_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: 403 unless an operator is signed in."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_operator():
            return error_page(403, "Operators only", "Only an operator token may do this.")
        return view(*args, **kwargs)

    return wrapper


def is_console_path(path: str) -> bool:
    """True for /console and everything under it."""
    return path == bp.url_prefix or path.startswith(f"{bp.url_prefix}/")


def security_headers(response: Response) -> Response:
    """after_request (app-wide, so that a 404 or 405 under /console has them too): the security
    headers on every console answer; no caching of pages with data."""
    if not is_console_path(request.path):
        return response
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    if request.endpoint not in STATIC_ENDPOINTS:
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def template_globals() -> dict[str, Any]:
    """What every console template may use."""
    return {
        "csrf_token": csrf_token,
        "csrf_field": CSRF_FIELD,
        "principal": g.get("console_principal"),
        "is_operator": is_operator(),
        "environment": get_services().settings.env,
        "request_id": g.get("request_id", ""),
    }
