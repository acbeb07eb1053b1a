"""Session look-ups and the reconcile-now operation behind the CLI and API."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from receiver.providers.http import shared_client, time_budget
from receiver.services import Services
from receiver.store.db import transaction
from receiver.store.models import VerificationSession, utcnow
from receiver.store.sessions import session_row
from reconciler.drain import drain_ready_events
from reconciler.policies import policies
from reconciler.poller import reconcile

if TYPE_CHECKING:
    from receiver.providers.base import CreatedSession

log = logging.getLogger(__name__)


def find_session(services: Services, provider: str, session_id: str) -> VerificationSession:
    """One session, else LookupError naming it."""
    with transaction(services.engine) as db:
        row = session_row(db, provider, session_id)
    if row is None:
        raise LookupError(f"no {provider} session {session_id!r} is known")
    return row


def describe(row: VerificationSession) -> str:
    """A one-line summary of a session's status."""
    flag = " (overdue)" if row.overdue else ""
    return f"{row.provider}/{row.session_id} {row.status} by {row.decided_by}{flag}"


def reconcile_now(services: Services, provider: str, session_id: str) -> tuple[str, str, str]:
    """Poll a session now (whatever its schedule), apply what changed; return before/poll/after."""
    row = find_session(services, provider, session_id)
    before = describe(row)
    http = shared_client()
    outcome = reconcile(services, http, row, policies(services.settings)[provider], utcnow())
    drain_ready_events(services)
    return before, outcome.result, describe(find_session(services, provider, session_id))


CREATE_WRITE_PAUSES_SECONDS = (0.5, 1.0, 1.5)
"""Waits between the attempts to record a session the provider has just created (a database
restart takes seconds; the request must stay well inside gunicorn's 8 s)."""
CREATE_BUDGET_SECONDS = 5.0
"""The provider's share of `POST /api/v1/sessions` (token, creation, retries): with the write
retries above the caller waits at most about 8 s, then gets 503 and may retry."""


def create_session(
    services: Services,
    provider: str,
    user_ref: str,
    options: dict[str, object],
    *,
    pauses: tuple[float, ...] = CREATE_WRITE_PAUSES_SECONDS,
) -> tuple[VerificationSession, str | None]:
    """Create a session at the provider, remember it (state digest, first check); return it and
    the URL to send the user to. Raises the client's ProviderUnavailable/ProviderRejected, and
    StoreUnavailableError (the API answers 503) when the database is unreachable.

    A database outage must not leave a provider session nobody knows about, and no provider
    offers an idempotency key (a retry cannot find the session created by a failed attempt),
    nor can a row be written first (the provider chooses the session id). So:

    1. The database is checked before the provider is called: while it is down the caller gets
       StoreUnavailableError and nothing is created anywhere.
    2. After the provider's answer the row is written, retried on `CREATE_WRITE_PAUSES_SECONDS`
       (about 3 s) if the database fails meanwhile.
    3. If it still cannot be written the provider session is abandoned, logged with its id, and
       the caller gets StoreUnavailableError; its retry creates a new session. The abandoned
       one is harmless: its start URL was never handed out, so nobody verifies in it and it
       expires at the provider (a webhook saying so is stored like any other).
    """
    _require_store(services)
    callback_url = f"{services.settings.public_url.rstrip('/')}/callbacks/{provider}"
    http = shared_client()
    with time_budget(CREATE_BUDGET_SECONDS):
        created = (
            services.providers[provider]
            .client(http)
            .create_session(user_ref, options, callback_url=callback_url)
        )
    return _remember(services, provider, user_ref, created, pauses), created.start_url


def _require_store(services: Services) -> None:
    """StoreUnavailableError unless the database answers now."""
    from receiver.exceptions import StoreUnavailableError
    from receiver.store.db import UNAVAILABLE_ERRORS

    try:
        with transaction(services.engine) as db:
            db.execute(select(1))
    except UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailableError("the database is unavailable") from exc


def _remember(
    services: Services,
    provider: str,
    user_ref: str,
    created: CreatedSession,
    pauses: tuple[float, ...],
) -> VerificationSession:
    """Record the session just created, trying again after each of `pauses` while the database
    is unavailable; then abandon it (logged) with StoreUnavailableError."""
    from receiver.exceptions import StoreUnavailableError
    from receiver.store.db import UNAVAILABLE_ERRORS

    for pause in pauses:
        try:
            return _record(services, provider, user_ref, created)
        except UNAVAILABLE_ERRORS:
            time.sleep(pause)
    try:
        return _record(services, provider, user_ref, created)
    except UNAVAILABLE_ERRORS as exc:
        shown = created.session_id if created.session_id != user_ref else "(its user ref)"
        log.warning(  # never a user ref (idvapi's session id is the user's ref)
            "abandoned %s session %s: created at the provider, but the database is unavailable",
            provider,
            shown,
            extra={"provider": provider, "reason": type(exc).__name__},
        )
        raise StoreUnavailableError("the database is unavailable") from exc


def _record(
    services: Services, provider: str, user_ref: str, created: CreatedSession
) -> VerificationSession:
    """Write (or complete) the row of a session the provider created: its user, the digest of
    its callback state and its first check."""
    from receiver.canonical import utc
    from receiver.providers.docverify import state_digest
    from reconciler.planner import first_check

    policy = policies(services.settings)[provider]
    now = utcnow()
    with transaction(services.engine) as db:
        row = session_row(db, provider, created.session_id)
        row = row or VerificationSession(
            provider=provider, session_id=created.session_id, created_at=now
        )
        row.user_ref = row.user_ref or user_ref
        row.state_digest = state_digest(created.state) if created.state else row.state_digest
        row.next_check_at = row.next_check_at or first_check(policy, utc(row.created_at))
        row.updated_at = now
        db.add(row)
    return row
