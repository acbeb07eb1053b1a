"""Replay a batch of stored events inside the caller's transaction, with the worker's code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlmodel import Session, col

from receiver.exceptions import DecryptionError
from receiver.providers.base import Parsed
from receiver.services import Services
from receiver.store import dialects
from receiver.store.models import EventState, InboundEvent, OutboxEntry, table_of, utcnow
from reconciler.backoff import backoff_seconds
from reconciler.drain import DrainStats, apply_batch, reparse
from reconciler.replay.effects import Effect, session_states, user_states

FAILURES_LIST_LIMIT = 100
"""Events that could not be applied listed in a summary (with their error)."""


def _upsert_outbox(db: Session, rows: list[dict[str, Any]]) -> None:
    """Insert or reset outbox rows, in event id order (the lock order workers use too)."""
    if not rows:
        return
    stmt = dialects.insert(db.get_bind(), table_of(OutboxEntry))
    stmt = stmt.on_conflict_do_update(
        index_elements=["event_id"],
        set_={
            "available_at": stmt.excluded.available_at,
            "attempts": stmt.excluded.attempts,
            "enqueued_at": None,
        },
    )
    db.execute(stmt, sorted(rows, key=lambda r: r["event_id"]))


@dataclass
class _LookAhead:
    """What re-parsing a replay's events before applying them tells."""

    to_apply: list[int] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    """Events that cannot be applied at all (a missing key), with their error."""
    session_keys: set[tuple[str, str]] = field(default_factory=set)
    user_refs: set[str] = field(default_factory=set)


def replay_batch(
    db: Session, services: Services, event_ids: Iterable[int], effect: Effect
) -> DrainStats:
    """Replay events inside the caller's transaction and fold their effect into `effect`.

    Each event is re-parsed first, to learn the sessions and users it touches (their states are
    read before and after) and to set apart the ones that cannot be applied at all: those are
    marked failed and put back in the outbox with the worker's backoff. The rest are reset in
    the outbox and applied by the worker's `apply_batch` with audit source `replay`.
    """
    ids = sorted(set(event_ids))
    events = list(
        db.execute(
            select(InboundEvent).where(col(InboundEvent.id).in_(ids)).order_by(col(InboundEvent.id))
        ).scalars()
    )
    ahead = _look_ahead(services, events)
    sessions_before = session_states(db, ahead.session_keys)
    user_refs = ahead.user_refs | _users_of(sessions_before)
    users_before = user_states(db, user_refs)

    _reset(db, services, ids, ahead, effect)
    for event in events:  # their ORM copies predate these updates
        db.expire(event)
    stats = DrainStats()
    if ahead.to_apply:
        apply_batch(db, services, ahead.to_apply, stats, replay=True)

    sessions_after = session_states(db, ahead.session_keys)
    user_refs |= _users_of(sessions_after)
    users_after = user_states(db, user_refs)
    effect.add_counts(stats, len(events), len(ahead.failures))
    effect.add_changes("sessions", sessions_before, sessions_after)
    effect.add_changes("users", users_before, users_after)
    return stats


def _look_ahead(services: Services, events: list[InboundEvent]) -> _LookAhead:
    """Re-parse each event as the worker will: the sessions and users it touches, and whether
    it can be applied (one that does not parse can: `apply_batch` quarantines it)."""
    ahead = _LookAhead()
    for event in events:
        assert event.id is not None
        if event.session_id:
            ahead.session_keys.add((event.provider, event.session_id))
        if event.user_ref:
            ahead.user_refs.add(event.user_ref)
        try:
            parsed = reparse(services, event)
        except DecryptionError as exc:  # a missing key: failed and retried, as the worker does
            ahead.failures[event.id] = f"{type(exc).__name__}: {str(exc)[:500]}"
            continue
        ahead.to_apply.append(event.id)
        if isinstance(parsed, Parsed):
            if parsed.session_id:
                ahead.session_keys.add((event.provider, parsed.session_id))
            if parsed.user_ref:
                ahead.user_refs.add(parsed.user_ref)
    return ahead


def _users_of(states: dict[str, tuple[Any, dict[str, Any]]]) -> set[str]:
    """The user refs of sessions' states (`session_states`)."""
    return {meta["user_ref"] for _, meta in states.values() if meta["user_ref"]}


def _reset(
    db: Session, services: Services, ids: list[int], ahead: _LookAhead, effect: Effect
) -> None:
    """Put the events to apply back in the outbox, fresh; mark the failures failed, in the
    outbox with the worker's backoff while it retries (listed in `effect`)."""
    failures, to_apply = ahead.failures, ahead.to_apply
    now = utcnow()
    retry_at = now + timedelta(seconds=backoff_seconds(1))
    retried = services.settings.apply_max_attempts > 1  # else a failure leaves the outbox
    _upsert_outbox(
        db,
        [
            {
                "event_id": event_id,
                "created_at": now,
                "available_at": retry_at if event_id in failures else now,
                "attempts": 1 if event_id in failures else 0,
            }
            for event_id in ids
            if event_id in to_apply or (event_id in failures and retried)
        ],
    )
    if failures and not retried:
        outbox = table_of(OutboxEntry)
        db.execute(delete(outbox).where(outbox.c.event_id.in_(sorted(failures))))
    events_table = table_of(InboundEvent)
    if to_apply:
        db.execute(
            update(events_table)
            .where(events_table.c.id.in_(to_apply))
            .values(attempts=0, updated_at=now)
        )
    for event_id, message in sorted(failures.items()):
        db.execute(
            update(events_table)
            .where(events_table.c.id == event_id)
            .values(state=EventState.FAILED.value, attempts=1, last_error=message, updated_at=now)
        )
        if len(effect.failures) < FAILURES_LIST_LIMIT:
            effect.failures.append({"event_id": event_id, "error": message})
