"""How the console's routes appear in the OpenAPI document (reconciler/api/openapi.py lists every
route the app serves). They are HTML pages and forms authenticated by the console's session
cookie, not by a bearer token: without a session a page redirects to the sign-in form.

The models only describe: the console checks its own input and answers a bad value with an HTML
page, so spectree validates nothing here (`skip_validation`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from spectree import Response

from receiver.inputs import MAX_REF_LENGTH
from reconciler.api.schemas.common import absent
from reconciler.api.spec import answers, spec
from reconciler.audit import queries as aq

MAX_TEXT = 200
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Short = Annotated[str, StringConstraints(max_length=64)]
Ref = Annotated[str, StringConstraints(max_length=MAX_REF_LENGTH)]
Name = Annotated[str, StringConstraints(max_length=32)]
PAGE_SIZES = (25, 50, 100, 200)
NOT_SIGNED_IN = (None, "Not signed in: to the sign-in form")
BAD_INPUT = "; control characters in the URL: JSON"
"""Every route answers control characters in its URL with a JSON 400 (receiver/request_rules.py)."""


def html(**codes: Any) -> Response:
    """Answers whose bodies are HTML pages (a 400 may also be the JSON of BAD_INPUT)."""
    media = {code: ["text/html"] for code in codes if code != "HTTP_302"}
    return answers(media=media, **codes)


def page_answers(**codes: Any) -> Response:
    """A page's answers: 200, 302 to sign in, 403 for a role that may not see it."""
    return html(
        HTTP_200=(None, "The page"),
        HTTP_302=NOT_SIGNED_IN,
        HTTP_403=(None, "The signed-in token's role may not see this"),
        **codes,
    )


def form_answers(**codes: Any) -> Response:
    """A form's answers: 302 onwards (or to sign in), 400 for a missing or wrong CSRF token."""
    return html(
        HTTP_302=(None, "Done: to the next page (or to the sign-in form when not signed in)"),
        HTTP_400=(None, "The form's CSRF token is missing or wrong" + BAD_INPUT),
        **codes,
    )


def export_answers() -> Response:
    """The audit export's answers: the file, streamed, or why not."""
    return answers(
        HTTP_200=(None, "The export, streamed"),
        HTTP_302=NOT_SIGNED_IN,
        HTTP_400=(None, "A filter is not valid" + BAD_INPUT),
        media={"HTTP_200": ["text/csv", "application/x-ndjson"], "HTTP_400": ["text/html"]},
    )


def console_route(
    resp: Response, query: type[BaseModel] | None = None, form: type[BaseModel] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Describe a console route (documentation only: see the module docstring)."""
    return spec.validate(
        query=query, form=form, resp=resp, tags=["console"], security={}, skip_validation=True
    )


class ConsoleSignInQuery(BaseModel):
    """The sign-in form's arguments."""

    next: Text = absent("the console page to open after signing in")
    ended: Text = absent("1: the session ended (signed out, expired, or token revoked)")
    signed_out: Text = absent("1 right after signing out")


class ConsoleCsrfForm(BaseModel):
    """A console form: every one carries the session's CSRF token."""

    csrf_token: str = Field(description="the session's CSRF token")


class ConsoleSignInForm(ConsoleCsrfForm):
    """Sign in with an API token."""

    token: str = absent("the API token")
    next: str = absent("where to go next")


class ConsoleReplayForm(ConsoleCsrfForm):
    """Replay one event: a dry run unless `confirm` is 1."""

    dry_run: Literal["1"] = absent("1 for a dry run (nothing is changed; the default)")
    confirm: Literal["1"] = absent("1: replay for real (after a dry run)")


class ConsoleFilterForm(ConsoleCsrfForm):
    """A bulk replay's filter, as on the events page."""

    provider: Name = absent("only this provider")
    state: Text = absent("only these states (comma-separated)")
    session_id: Ref = absent("only this provider session")
    user_ref: Ref = absent("only this user")
    since: Short = absent("ISO 8601 time or an age (30m, 2h, 7d)")
    until: Short = absent("ISO 8601 time or an age")
    search: Ref = absent("an event id, provider event id, dedupe key or session id")


class ConsoleBulkReplayForm(ConsoleFilterForm):
    """Start a bulk replay after its dry run."""

    confirm: Literal["1"] = Field(description="1: the operator saw the dry run and confirms")


class ConsoleReconcileForm(ConsoleCsrfForm):
    """Reconcile one session now."""

    provider: Name = Field(description="the session's provider")
    session_id: Ref = Field(description="the provider's session id")


class ConsoleEventsQuery(BaseModel):
    """The events page's filters and page."""

    provider: Name = absent("only this provider")
    state: list[Name] = absent("only these states (repeated, or comma-separated)")
    search: Ref = absent("an event id, provider event id, dedupe key or session id")
    session_id: Ref = absent("only this provider session")
    user_ref: Ref = absent("only this user")
    since: Short = absent("ISO 8601 time or an age (30m, 2h, 7d)")
    until: Short = absent("ISO 8601 time or an age")
    limit: Literal[PAGE_SIZES] = absent("events per page")  # type: ignore[valid-type]
    cursor: Short = absent("the next page's cursor")


class ConsoleEventQuery(BaseModel):
    """One event's page."""

    raw: Literal["1"] = absent("1: show the decrypted delivery")


class ConsoleTimelineQuery(BaseModel):
    """Whose timeline."""

    user_ref: Ref = absent("the user")


class ConsoleAuditFilterQuery(BaseModel):
    """The audit page's filters."""

    user_ref: Ref = absent("only this user's entries")
    provider: Ref = absent("only this provider's entries")
    session_id: Ref = absent("only this session's entries")
    since: Short = absent("entries at or after this ISO 8601 time")
    until: Short = absent("entries before this ISO 8601 time")


class ConsoleAuditQuery(ConsoleAuditFilterQuery):
    """The audit page: filters and where to continue."""

    after: int = absent(ge=0, le=aq.MAX_SEQ, description="continue after this seq")


class ConsoleAuditExportQuery(ConsoleAuditFilterQuery):
    """The export: filters and a format."""

    format: Literal["csv", "jsonl"] = absent("csv (default) or jsonl")
