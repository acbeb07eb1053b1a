"""Signing in with an API token, and out."""

from __future__ import annotations

import logging
from typing import Any

from flask import redirect, render_template, request, url_for
from flask import session as cookie

from receiver.request_rules import ViewResult
from receiver.services import get_services
from reconciler.api.auth import authenticate_token, known_tokens, token_digest
from reconciler.console.blueprint import bp
from reconciler.console.openapi_models import (
    ConsoleCsrfForm,
    ConsoleSignInForm,
    ConsoleSignInQuery,
    console_route,
    form_answers,
    page_answers,
)
from reconciler.console.security import CONSOLE_ROLES, error_page, new_session, safe_next
from reconciler.console.session_store import close_session, open_session

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 512


@bp.get("/sign-in")
@console_route(page_answers(), query=ConsoleSignInQuery)
def sign_in() -> ViewResult:
    """Console: the sign-in form

    A token field.
    """
    return render_template(
        "console/sign_in.html",
        next=safe_next(request.args.get("next")),
        ended=request.args.get("ended") == "1",
        signed_out=request.args.get("signed_out") == "1",
    )


@bp.post("/sign-in")
@console_route(
    form_answers(
        HTTP_401=(None, "Not a valid token (the form again)"),
        HTTP_403=(None, "A backend token (the console is not for it)"),
    ),
    form=ConsoleSignInForm,
)
def sign_in_post() -> ViewResult:
    """Console: sign in with an operator or auditor token

    Checks the token and opens a session on the server (its digest and an expiry); the signed
    cookie holds only the session's id.
    """
    token = request.form.get("token", "").strip()
    found = (
        authenticate_token(token, known_tokens())
        if token and len(token) <= MAX_TOKEN_LENGTH
        else None
    )
    target = safe_next(request.form.get("next"))
    if found is None:
        log.info("console sign-in refused: unknown token")
        page = render_template("console/sign_in.html", next=target, refused=True)
        return page, 401
    if found.role not in CONSOLE_ROLES:
        log.info("console sign-in refused for role %s", found.role)
        return error_page(
            403, "Not for this role", "The console is for operator and auditor tokens."
        )
    settings = get_services().settings
    engine = get_services().engine
    new_session(open_session(engine, token_digest(token), settings.console_session_seconds))
    log.info("console sign-in: %s (%s)", found.name, found.role)
    return redirect(target)


@bp.post("/sign-out")
@console_route(form_answers(), form=ConsoleCsrfForm)
def sign_out() -> Any:
    """Console: sign out

    Ends the session on the server (a copy of the cookie no longer signs anyone in) and forgets
    it in the browser.
    """
    session_id = cookie.get("sid")
    if isinstance(session_id, str) and session_id:
        close_session(get_services().engine, session_id)
    cookie.clear()
    return redirect(url_for("console.sign_in", signed_out="1"))
