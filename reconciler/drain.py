"""The drain loop: claim ready events in batches and apply each batch in one transaction.

A batch that fails as a whole is retried event by event, so one poison event cannot hold back
the others; the poison one is marked `failed` with its error and retried with backoff a bounded
number of times (its outbox row stays, later). It is never marked done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import Session

from receiver.canonical import utc
from receiver.exceptions import DecryptionError, ParseError, UnknownValueError
from receiver.logs import crash_site
from receiver.metrics import APPLIED, APPLY_FAILURES, RECEIPT_TO_APPLIED, UNKNOWN_VALUES, inc
from receiver.providers.base import Parsed
from receiver.services import Services
from receiver.store.db import transaction
from receiver.store.models import EventState, InboundEvent, OutboxEntry, utcnow
from reconciler import notify
from reconciler.apply import apply_parsed, claim_ready, parse_event
from reconciler.audit.chain import append_audit
from reconciler.backoff import exponential_backoff
from reconciler.policies import policies

log = logging.getLogger(__name__)

WORKER_ACTOR = "worker"
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 300.0
DEFERRED_PAUSE_SECONDS = 0.05
"""Pause when a whole batch waits on sessions another worker holds (no busy loop)."""


@dataclass
class DrainStats:
    """Counts of one drain run."""

    applied: int = 0
    superseded: int = 0
    quarantined: int = 0
    failed: int = 0
    deferred: int = 0
    batches: int = 0
    changed_users: set[str] = field(default_factory=set)
    notified_users: set[str] = field(default_factory=set)
    received_at: list[datetime] = field(default_factory=list)


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff for a failed event: 2, 4, 8 … seconds, capped."""
    return exponential_backoff(attempts - 1, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_MAX_SECONDS)


def apply_batch(
    session: Session,
    services: Services,
    event_ids: list[int],
    stats: DrainStats,
    *,
    replay: bool = False,
) -> None:
    """Re-parse and apply these events in the caller's transaction, counting into `stats`.

    What the worker runs on a claimed batch, and what a replay runs (`replay=True`: its audit
    entries have source `replay`). An event that does not parse is quarantined; a missing key
    raises DecryptionError. The audit head is locked last.
    """
    events = session.execute(select(InboundEvent).where(InboundEvent.id.in_(event_ids))).scalars()
    parsed: dict[int, tuple[InboundEvent, Parsed]] = {}
    for event in events:
        error = _reparse(services, event, parsed, count_unknown=not replay)
        if error is not None:
            _quarantine(session, event, error)
            stats.quarantined += 1
    result = apply_parsed(
        session,
        parsed,
        keyring=services.keyring,
        actor=WORKER_ACTOR,
        policies=policies(services.settings),
        replay=replay,
        notify=bool(services.settings.notify_url),
    )
    append_audit(session, result.audit)
    stats.received_at.extend(
        event.received_at
        for event_id, (event, _) in parsed.items()
        if event_id in set(result.applied) | set(result.superseded)
    )
    stats.applied += len(result.applied)
    stats.superseded += len(result.superseded)
    stats.deferred += len(result.deferred)
    inc(APPLIED, "applied", amount=len(result.applied))
    inc(APPLIED, "superseded", amount=len(result.superseded))
    if result.deferred and not (result.applied or result.superseded):
        time.sleep(DEFERRED_PAUSE_SECONDS)  # every session is busy in another worker
    stats.changed_users |= result.changed_users


def _reparse(
    services: Services,
    event: InboundEvent,
    parsed: dict[int, tuple[InboundEvent, Parsed]],
    *,
    count_unknown: bool = True,
) -> str | None:
    """Re-parse one event into `parsed`; return why it must be quarantined instead, if so.

    Whatever goes wrong with one event stays with that event: a ParseError or an unexpected
    exception from the parser (pure: re-running it on the same bytes fails the same way)
    quarantines it. Only DecryptionError propagates: a missing key is the deployment's problem,
    so the event fails and is retried (one by one, with backoff) once the key is back.
    """
    provider = services.providers.get(event.provider)
    if provider is None:
        return f"provider {event.provider!r} is not configured any more"
    try:
        parsed[event.id] = (event, parse_event(event, provider, services.keyring))
    except UnknownValueError as exc:  # a poll answer the provider's documents do not define
        if count_unknown:
            inc(UNKNOWN_VALUES, event.provider, exc.field)
        return str(exc)
    except ParseError as exc:
        return str(exc)
    except DecryptionError:
        raise
    except Exception as exc:
        site = crash_site(exc)
        log.error(
            "parser failed on a stored event; quarantining",
            extra={"event_id": event.id, "reason": site},
        )
        return f"unexpected {site} while parsing"
    return None


def _quarantine(session: Session, event: InboundEvent, error: str) -> None:
    now = utcnow()
    session.execute(
        update(InboundEvent)
        .where(InboundEvent.id == event.id)
        .values(state=EventState.QUARANTINED.value, parse_error=error[:2000], updated_at=now)
    )
    session.execute(
        OutboxEntry.__table__.delete().where(  # type: ignore[attr-defined]
            OutboxEntry.event_id == event.id
        )
    )


def _record_failure(services: Services, event_id: int, error: Exception) -> bool:
    """Mark one event failed; keep its outbox row for a later retry unless out of attempts."""
    message = f"{type(error).__name__}: {str(error)[:500]}"
    now = utcnow()
    with transaction(services.engine) as session:
        event = session.get(InboundEvent, event_id)
        if event is None:
            return False
        event.attempts += 1
        event.state, event.last_error, event.updated_at = EventState.FAILED.value, message, now
        session.add(event)
        entry = session.get(OutboxEntry, event_id)
        exhausted = event.attempts >= services.settings.apply_max_attempts
        if entry is not None and exhausted:
            session.delete(entry)
        elif entry is not None:
            entry.attempts = event.attempts
            entry.available_at = now + timedelta(seconds=backoff_seconds(event.attempts))
            session.add(entry)
    log.warning(
        "event failed to apply",
        extra={"event_id": event_id, "count": event.attempts, "reason": type(error).__name__},
    )
    return True


def drain_ready_events(services: Services, *, max_seconds: float = 60.0) -> DrainStats:
    """Apply ready events batch after batch until none is ready or `max_seconds` pass."""
    stats = DrainStats()
    deadline = time.monotonic() + max_seconds
    size = services.settings.apply_batch_size
    while time.monotonic() < deadline:
        try:
            with transaction(services.engine) as session:
                ids = claim_ready(session, size)
                if not ids:
                    break
                apply_batch(session, services, ids, stats)
            stats.batches += 1
            _observe_applied(stats)
        except Exception:  # the batch boundary: isolate the poison event(s) one by one
            log.exception("batch failed; applying its events one at a time")
            _apply_one_by_one(services, ids, stats)
        if stats.changed_users and services.settings.notify_url:
            notify.wake_notifier(services, stats.changed_users)
            stats.notified_users |= stats.changed_users
            stats.changed_users = set()
    return stats


def _observe_applied(stats: DrainStats) -> None:
    """Record receipt→applied latency for the events just committed."""
    now = utcnow()
    for received in stats.received_at:
        RECEIPT_TO_APPLIED.observe(max(0.0, (now - utc(received)).total_seconds()))
    stats.received_at.clear()


def _apply_one_by_one(services: Services, ids: list[int], stats: DrainStats) -> None:
    for event_id in ids:
        try:
            with transaction(services.engine) as session:
                if claim_one(session, event_id):
                    apply_batch(session, services, [event_id], stats)
        except Exception as exc:  # a job boundary: record on our row, never mark done
            stats.failed += 1
            inc(APPLY_FAILURES)
            _record_failure(services, event_id, exc)


def claim_one(session: Session, event_id: int) -> bool:
    """Lock one event's outbox row if it is still there and not locked by another worker."""
    query = select(OutboxEntry.event_id).where(OutboxEntry.event_id == event_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.execute(query).scalar_one_or_none() is not None
