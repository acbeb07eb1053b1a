"""The console's triage pages: what needs attention (failed and quarantined events, overdue
sessions, refused deliveries), and one session with its history, its recent checks and a
reconcile-now button for operators.

Data comes from reconciler/console/triage_queries.py and the functions the API and the CLI use
(reconciler.session_queries); templates escape everything (Jinja autoescape, never `|safe`).
"""

from __future__ import annotations

import logging

from flask import redirect, render_template, request, url_for

from receiver.providers import REGISTRY
from receiver.request_rules import ViewResult
from receiver.services import get_services
from reconciler.console import triage_queries
from reconciler.console.blueprint import bp
from reconciler.console.openapi_models import (
    ConsoleReconcileForm,
    console_route,
    form_answers,
    page_answers,
)
from reconciler.console.security import error_page, operator_only, principal
from reconciler.policies import policies

log = logging.getLogger(__name__)

ATTENTION_SHOWN = 100
RECONCILE_RESULTS = frozenset(
    {
        "changed",
        "unchanged",
        "stopped",
        "overdue",
        "expired",
        "quarantined",
        "provider_unavailable",
        "provider_refused",
    }
)
"""What `reconcile_now` can answer (reconciler/poller.py), shown after the redirect."""


@bp.get("/attention")
@console_route(page_answers())
def attention() -> ViewResult:
    """Console: what needs attention (failed and quarantined events, overdue sessions)

    Failed and quarantined events and overdue sessions together, newest first, with the refused
    deliveries of the last 24 hours by provider and reason.
    """
    engine = get_services().engine
    found = triage_queries.needs_attention(engine, ATTENTION_SHOWN)
    return render_template(
        "console/attention.html",
        items=found.items,
        totals=found.totals,
        shown=ATTENTION_SHOWN,
        refusals=triage_queries.refusals_by_reason(engine),
        window_hours=int(triage_queries.REFUSALS_WINDOW.total_seconds() // 3600),
    )


@bp.get("/sessions/<provider>/<path:session_id>")
@console_route(page_answers(HTTP_404=(None, "No such session")))
def session_page(provider: str, session_id: str) -> ViewResult:
    """Console: one session (status, history, recent checks, next check, why overdue)

    The session's observations, the scheduler's recent checks of it (time, outcome), when it is
    checked next, its lifetime, why it is overdue, and a reconcile-now button for operators.
    """
    services = get_services()
    missing = error_page(404, "No such session", f"No {provider} session {session_id!r} is known.")
    if provider not in REGISTRY:
        return missing
    policy = policies(services.settings).get(provider)
    shown = triage_queries.session_detail(services.engine, provider, session_id, policy)
    if shown is None:
        return missing
    reconciled = request.args.get("reconciled")
    return render_template(
        "console/session.html",
        s=shown,
        reconciled=reconciled if reconciled in RECONCILE_RESULTS else None,
    )


@bp.post("/sessions/reconcile")
@console_route(
    form_answers(HTTP_403=(None, "Not an operator"), HTTP_404=(None, "No such session")),
    form=ConsoleReconcileForm,
)
@operator_only
def reconcile_session() -> ViewResult:
    """Console: reconcile one session now (operators)

    Asks the provider for the session's status now, whatever its schedule, applies what changed,
    and goes back to the session's page with the outcome.
    """
    from reconciler.session_queries import reconcile_now

    provider = request.form.get("provider", "")
    session_id = request.form.get("session_id", "")
    if provider not in REGISTRY or not session_id:
        return error_page(404, "No such session", "Name a provider and one of its sessions.")
    services = get_services()
    try:
        _, result, _ = reconcile_now(services, provider, session_id)
    except LookupError:
        return error_page(404, "No such session", f"No {provider} session {session_id!r} is known.")
    log.info(
        "console reconcile-now by %s: %s",
        principal().name,
        result,
        extra={"provider": provider, "outcome": result},
    )
    return redirect(
        url_for("console.session_page", provider=provider, session_id=session_id, reconciled=result)
    )
