"""Reconcile one due session: claim it, decide, poll the provider, store what is new.

A poll answer goes the same way as a webhook: stored as an inbound event (source `poll`) with
an outbox row, applied by the workers. An answer that says nothing new costs no write beyond the
session's next check time and the check's line in `session_polls` (the last POLLS_KEPT per
session, for the console's session page). Claiming is a conditional update on `next_check_at`,
so a due time is polled once even if two schedulers overlap during a leader change.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlmodel import col

from receiver.canonical import SYNTHETIC_EXPIRY, Source, Status, utc
from receiver.exceptions import ParseError
from receiver.logs import crash_site
from receiver.providers.base import Delivery, Parsed, Provider, content_digest
from receiver.providers.http import ProviderRejected, ProviderUnavailable
from receiver.services import Services
from receiver.store.db import transaction
from receiver.store.event_batches import NewEvent, store_event
from receiver.store.models import VerificationSession, table_of, utcnow
from receiver.store.trace_models import POLLS_KEPT, SessionPoll
from reconciler.planner import Action, Policy, SessionFacts, after_failure, after_poll, decide

log = logging.getLogger(__name__)
_SESSIONS = table_of(VerificationSession)


@dataclass(frozen=True)
class PollOutcome:
    """What reconciling one session did."""

    provider: str
    session_id: str
    result: str
    status_calls: int = 0


def due_sessions(services: Services, now: datetime, limit: int) -> list[VerificationSession]:
    """Sessions whose next check is due, oldest first (uses the next_check_at index)."""
    with transaction(services.engine) as db:
        return list(
            db.execute(
                select(VerificationSession)
                .where(col(VerificationSession.next_check_at) <= now)
                .order_by(col(VerificationSession.next_check_at))
                .limit(limit)
            ).scalars()
        )


def claim(services: Services, row: VerificationSession, now: datetime) -> bool:
    """Move the session's due time to a lease, if nobody else did: True when we own it."""
    with transaction(services.engine) as db:
        result = db.connection().execute(
            update(_SESSIONS)
            .where(_SESSIONS.c.id == row.id, _SESSIONS.c.next_check_at == row.next_check_at)
            .values(next_check_at=now + timedelta(seconds=services.settings.poll_lease_seconds))
        )
        return result.rowcount == 1


def _facts(row: VerificationSession) -> SessionFacts:
    return SessionFacts(
        status=Status(row.status),
        created_at=utc(row.created_at),
        poll_attempts=row.poll_attempts,
        overdue=row.overdue,
        settled=row.settled,
    )


def _set(
    services: Services,
    row: VerificationSession,
    check: tuple[str, datetime, int | None] | None = None,
    **values: object,
) -> None:
    """Update the session; with `check` (outcome, time, event id) record it in the same
    transaction."""
    with transaction(services.engine) as db:
        connection = db.connection()
        connection.execute(update(_SESSIONS).where(_SESSIONS.c.id == row.id).values(**values))
        if check is not None and row.id is not None:
            record_check(connection, row.id, *check)


def record_check(
    connection: Connection, session_pk: int, outcome: str, at: datetime, event_id: int | None
) -> None:
    """Append a check to a session's recent checks, forgetting all but the newest POLLS_KEPT."""
    polls = table_of(SessionPoll)
    connection.execute(
        insert(polls).values(
            session_pk=session_pk, polled_at=at, outcome=outcome[:32], event_id=event_id
        )
    )
    oldest_kept = (
        select(polls.c.id)
        .where(polls.c.session_pk == session_pk)
        .order_by(polls.c.id.desc())
        .offset(POLLS_KEPT - 1)
        .limit(1)
        .scalar_subquery()
    )
    connection.execute(
        delete(polls).where(polls.c.session_pk == session_pk, polls.c.id < oldest_kept)
    )


def store_poll_answer(
    services: Services,
    provider: Provider,
    session_id: str,
    body: bytes,
    received_at: datetime,
    parse_error: str | None = None,
    marker: str | None = None,
    user_ref: str | None = None,
) -> tuple[int, bool]:
    """Store a poll answer (or a synthetic expiry) as an event with its outbox row, carrying
    the session's user ref (a quarantined answer is never applied, yet its user finds it)."""
    query = (("session_id", session_id),) + ((("verihook", marker),) if marker else ())
    delivery = Delivery(
        provider=provider.name,
        source=Source.POLL,
        body=body,
        headers=(),
        query=query,
        received_at=received_at,
    )
    key = f"poll:{content_digest(session_id, body, received_at.isoformat())}"
    event = NewEvent(
        provider=provider.name,
        dedupe_key=key,
        kind=Source.POLL.value,
        record=delivery.to_record(),
        received_at=received_at,
        session_id=session_id,
        user_ref=user_ref,
        parse_error=parse_error,
    )
    with transaction(services.engine) as db:
        return store_event(db, event, keyring=services.keyring)


def says_something_new(row: VerificationSession, parsed: Parsed) -> bool:
    """True when the answer's status, decider or finality differ from the session's."""
    return any(
        (obs.status.value, obs.decided_by.value, obs.is_final)
        != (row.status, row.decided_by, row.settled)
        for obs in parsed.observations
    )


def reconcile(
    services: Services, http: httpx.Client, row: VerificationSession, policy: Policy, now: datetime
) -> PollOutcome:
    """Decide and act for one claimed, due session."""
    action = decide(policy, _facts(row), now)
    if action is Action.STOP:
        _set(services, row, next_check_at=None)
        return PollOutcome(row.provider, row.session_id, "stopped")
    if action is Action.OVERDUE:
        check = ("overdue", now, None)
        _set(services, row, check, next_check_at=None, overdue=True, updated_at=now)
        log.info("session overdue", extra={"provider": row.provider})
        return PollOutcome(row.provider, row.session_id, "overdue")
    provider = services.providers[row.provider]
    if action is Action.EXPIRE:
        event_id, _ = store_poll_answer(
            services,
            provider,
            row.session_id,
            b"{}",
            now,
            marker=SYNTHETIC_EXPIRY,
            user_ref=row.user_ref,
        )
        _set(services, row, ("expired", now, event_id), next_check_at=None)
        return PollOutcome(row.provider, row.session_id, "expired")
    return _poll(services, http, provider, row, policy, now)


def _poll(
    services: Services,
    http: httpx.Client,
    provider: Provider,
    row: VerificationSession,
    policy: Policy,
    now: datetime,
) -> PollOutcome:
    try:
        answer = provider.client(http).fetch_status(row.session_id)
    except ProviderUnavailable as exc:
        return _backed_off(services, row, policy, now, "provider_unavailable", exc.retry_after)
    except ProviderRejected as exc:
        log.warning(
            "provider refused a status call",
            extra={"provider": row.provider, "reason": str(exc.status_code)},
        )
        return _backed_off(services, row, policy, now, "provider_refused")
    body = json.dumps(answer, separators=(",", ":"), sort_keys=True).encode()
    try:
        parsed = provider.parse_status(row.session_id, answer, now)
    except Exception as exc:  # parsing is pure: whatever fails is about this answer
        if isinstance(exc, ParseError):
            why = str(exc)
        else:
            why = f"unexpected {crash_site(exc)} while parsing a status answer"
            log.error("status parser failed; quarantining the answer", extra={"reason": why})
        event_id, _ = store_poll_answer(
            services, provider, row.session_id, body, now, parse_error=why, user_ref=row.user_ref
        )
        return _backed_off(services, row, policy, now, "quarantined", event_id=event_id)
    return _answered(services, provider, row, policy, now, parsed, body)


def _backed_off(
    services: Services,
    row: VerificationSession,
    policy: Policy,
    now: datetime,
    result: str,
    retry_after: float | None = None,
    event_id: int | None = None,
) -> PollOutcome:
    """A call that taught us nothing: the next one waits longer."""
    attempts = row.poll_attempts + 1
    _set(
        services,
        row,
        (result, now, event_id),
        poll_attempts=attempts,
        last_polled_at=now,
        next_check_at=after_failure(policy, attempts, now, retry_after),
    )
    return PollOutcome(row.provider, row.session_id, result, 1)


def _answered(
    services: Services,
    provider: Provider,
    row: VerificationSession,
    policy: Policy,
    now: datetime,
    parsed: Parsed,
    body: bytes,
) -> PollOutcome:
    """A parsed answer: stored when it says something new; the next check planned from it."""
    attempts = row.poll_attempts + 1
    new = says_something_new(row, parsed)
    stored = (
        store_poll_answer(services, provider, row.session_id, body, now, user_ref=row.user_ref)
        if new
        else None
    )
    first = parsed.observations[0] if parsed.observations else None
    facts = SessionFacts(
        status=first.status if first else Status(row.status),
        created_at=utc(row.created_at),
        poll_attempts=attempts,
        settled=first.is_final if first else row.settled,
    )
    _set(
        services,
        row,
        ("changed" if new else "unchanged", now, stored[0] if stored else None),
        poll_attempts=attempts,
        last_polled_at=now,
        next_check_at=after_poll(policy, facts, now),
    )
    return PollOutcome(row.provider, row.session_id, "changed" if new else "unchanged", 1)


__all__ = ["PollOutcome", "claim", "due_sessions", "reconcile", "utcnow"]
