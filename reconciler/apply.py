"""Apply stored events to sessions and users, a batch per transaction, idempotently.

One transaction per batch: claim ready outbox rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
has one writer), re-parse each event's stored delivery with today's code, lock the sessions it
touches in a fixed order, record every new observation, merge by the ordering rule, update the
users, append audit entries, queue notifications, mark the events and delete their outbox rows.
An observation already recorded for its session (same key) is skipped, so applying an event
twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select, update
from sqlmodel import Session, col

from receiver.canonical import (
    SYNTHETIC_EXPIRY,
    DecidedBy,
    Observation,
    Source,
    Status,
    StatusClass,
    expiry_observation,
    status_class,
    utc,
)
from receiver.providers.base import Delivery, Parsed, Provider
from receiver.store.crypto import Keyring
from receiver.store.events import open_payload
from receiver.store.models import (
    Disposition,
    EventState,
    InboundEvent,
    ObservationRecord,
    OutboxEntry,
    table_of,
    utcnow,
)
from reconciler.audit.chain import AuditDraft
from reconciler.ordering import ordering_key
from reconciler.planner import Policy, SessionFacts, after_event
from reconciler.sessions import (
    SessionKey,
    SessionRow,
    existing_sessions,
    hurry_recent_sessions,
    lock_sessions,
    write_sessions,
)
from reconciler.users import refresh_users


@dataclass
class BatchResult:
    """What one batch did."""

    applied: list[int] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    quarantined: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    audit: list[AuditDraft] = field(default_factory=list)
    changed_users: set[str] = field(default_factory=set)


def claim_ready(db: Session, limit: int) -> list[int]:
    """Lock up to `limit` ready outbox rows (others' locked rows are skipped) and return ids."""
    query = (
        select(col(OutboxEntry.event_id))
        .where(col(OutboxEntry.available_at) <= utcnow())
        .order_by(col(OutboxEntry.event_id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(db.execute(query).scalars())


def parse_event(event: InboundEvent, provider: Provider, keyring: Keyring) -> Parsed:
    """Re-parse an event's stored delivery with today's code (raises ParseError)."""
    delivery = Delivery.from_record(open_payload(event, keyring=keyring))
    if delivery.source is Source.POLL:
        session_id = delivery.query_value("session_id") or ""
        if delivery.query_value("verihook") == SYNTHETIC_EXPIRY:
            expiry = expiry_observation(provider.name, session_id, delivery.received_at)
            return Parsed(session_id=session_id, user_ref=None, observations=(expiry,))
        return provider.parse_status(session_id, json.loads(delivery.body), delivery.received_at)
    return provider.parse(delivery)


def _current_key(row: SessionRow) -> tuple[StatusClass, datetime, str] | None:
    if row.current_observation_key is None or row.status_observed_at is None:
        return None
    klass = status_class(Status(row.status), DecidedBy(row.decided_by))
    return (klass, utc(row.status_observed_at), row.current_observation_key)


@dataclass
class _SessionWork:
    row: SessionRow
    before: tuple[str, str]
    observations: list[tuple[int, Observation]] = field(default_factory=list)
    poll_now: bool = False


def apply_parsed(
    db: Session,
    parsed_events: dict[int, tuple[InboundEvent, Parsed]],
    *,
    keyring: Keyring,
    actor: str,
    policies: dict[str, Policy],
    replay: bool = False,
    notify: bool = False,
) -> BatchResult:
    """Apply already-parsed events inside the caller's transaction, with set-based queries."""
    result = BatchResult()
    _forget_unknown_sessions(db, parsed_events)
    refs: dict[SessionKey, str | None] = {}
    for event, parsed in parsed_events.values():
        if parsed.session_id is not None:
            refs.setdefault((event.provider, parsed.session_id), parsed.user_ref)
    rows = lock_sessions(db, refs)
    hurried: set[int] = set()
    for provider in sorted({e.provider for e, p in parsed_events.values() if p.poll_recent}):
        hurried |= hurry_recent_sessions(db, provider)
    work = {key: _SessionWork(row, (row.status, row.decided_by)) for key, row in rows.items()}
    for item in work.values():
        item.poll_now = item.row.id in hurried  # else saving the locked row would undo it
    for event_id, (event, parsed) in list(parsed_events.items()):
        if parsed.session_id is not None and (event.provider, parsed.session_id) not in rows:
            result.deferred.append(event_id)  # another worker holds its session: next batch
            del parsed_events[event_id]
    for event_id, (event, parsed) in parsed_events.items():
        if parsed.session_id is None:
            continue
        item = work[(event.provider, parsed.session_id)]
        item.poll_now |= parsed.poll_now
        item.observations.extend((event_id, obs) for obs in parsed.observations)
    known = _known_keys(db, work.values())
    inserts: list[dict[str, object]] = []
    dethroned: list[dict[str, object]] = []
    winners: dict[tuple[str, str], str | None] = {}
    for key, item in work.items():
        winners[key] = _merge_session(item, known, keyring, inserts, dethroned)
        _schedule(item, policies[item.row.provider])
        if (item.row.status, item.row.decided_by) != item.before:
            result.audit.append(_session_audit(item, actor, replay))
        if item.row.user_ref:
            result.changed_users.add(item.row.user_ref)
    write_sessions(db, [item.row for item in work.values()])
    if inserts:
        db.connection().execute(insert(_OBS), inserts)
    if dethroned:
        db.connection().execute(_DETHRONE, dethroned)
    _mark_events(db, parsed_events, rows, winners, result)
    result.audit.extend(
        refresh_users(db, result.changed_users, actor=actor, replay=replay, notify=notify)
    )
    return result


def _forget_unknown_sessions(
    db: Session, parsed_events: dict[int, tuple[InboundEvent, Parsed]]
) -> None:
    """A delivery that may not create a session (a stranger's redirect) names one nobody
    registered: it touches no session at all (DESIGN §3)."""
    named = {
        (event.provider, parsed.session_id)
        for event, parsed in parsed_events.values()
        if parsed.session_id is not None and not parsed.creates_session
    }
    if not named:
        return
    known = existing_sessions(db, named)
    for event_id, (event, parsed) in list(parsed_events.items()):
        key = (event.provider, parsed.session_id)
        if not parsed.creates_session and key in named and key not in known:
            parsed_events[event_id] = (event, replace(parsed, session_id=None, poll_now=False))


_OBS = table_of(ObservationRecord)
_DETHRONE = (
    update(_OBS)
    .where(_OBS.c.session_pk == bindparam("spk"), _OBS.c.observation_key == bindparam("okey"))
    .values(disposition=Disposition.SUPERSEDED.value)
)


def _known_keys(db: Session, items: Iterable[_SessionWork]) -> set[tuple[int, str]]:
    """(session pk, observation key) pairs already recorded, in one query.

    By session only (a range of the unique index per session, a few rows each), the keys are
    matched here: `session_pk IN (…) AND observation_key IN (…)` probes the index for every
    pair of the two lists, 200 × 600 probes for a batch (16 ms on PostgreSQL, 11 ms on SQLite)."""
    pks = {item.row.id for item in items if item.observations}
    keys = {obs.key for item in items for _, obs in item.observations}
    if not pks:
        return set()
    rows = db.execute(
        select(col(ObservationRecord.session_pk), col(ObservationRecord.observation_key)).where(
            col(ObservationRecord.session_pk).in_(pks)
        )
    )
    return {(pk, key) for pk, key in rows if key in keys}


def _merge_session(
    item: _SessionWork,
    known: set[tuple[int, str]],
    keyring: Keyring,
    inserts: list[dict[str, object]],
    dethroned: list[dict[str, object]],
) -> str | None:
    """Merge new observations into one locked session row; queue the rows to write."""
    row = item.row
    fresh: dict[str, tuple[int, Observation]] = {}
    for event_id, obs in item.observations:
        if (row.id, obs.key) not in known:
            fresh.setdefault(obs.key, (event_id, obs))
    best = _current_key(row)
    winner: tuple[int, Observation] | None = None
    for event_id, obs in fresh.values():
        if best is None or ordering_key(obs) > best:
            best, winner = ordering_key(obs), (event_id, obs)
    for key, (event_id, obs) in fresh.items():
        applied = winner is not None and winner[1].key == key
        disposition = Disposition.APPLIED if applied else Disposition.SUPERSEDED
        inserts.append(_record(row, event_id, obs, disposition, keyring))
    now = utcnow()
    if winner is not None:
        if row.current_observation_key:
            dethroned.append({"spk": row.id, "okey": row.current_observation_key})
        event_id, obs = winner
        row.status, row.decided_by = obs.status.value, obs.decided_by.value
        row.status_observed_at, row.current_observation_key = utc(obs.occurred_at), obs.key
        row.last_event_id, row.last_source = event_id, obs.source.value
        row.last_reason = obs.provider_status[:64]
        row.settled = obs.is_final
        row.overdue = False  # news arrived: whoever chased it can stop
    row.updated_at = now
    return row.current_observation_key


def _schedule(item: _SessionWork, policy: Policy) -> None:
    """Set the session's next check: now after a redirect, else by the provider's policy."""
    row, now = item.row, utcnow()
    if item.poll_now and not row.settled:
        row.next_check_at = now
        return
    facts = SessionFacts(
        status=Status(row.status),
        created_at=utc(row.created_at),
        poll_attempts=row.poll_attempts,
        overdue=row.overdue,
        settled=row.settled,
    )
    current = utc(row.next_check_at) if row.next_check_at else None
    row.next_check_at = after_event(policy, facts, now, current)


def _record(
    row: SessionRow, event_id: int, obs: Observation, disposition: str, keyring: Keyring
) -> dict[str, object]:
    record: dict[str, object] = {
        "session_pk": row.id,
        "observation_key": obs.key,
        "status": obs.status.value,
        "decided_by": obs.decided_by.value,
        "status_class": int(obs.status_class),
        "occurred_at": utc(obs.occurred_at),
        "source": obs.source.value,
        "provider_status": obs.provider_status[:64],
        "reasons": json.dumps(list(obs.reasons))[:2000],
        "event_id": event_id,
        "disposition": disposition.value if isinstance(disposition, Disposition) else disposition,
        "recorded_at": utcnow(),
        "key_id": None,
        "details_blob": None,
    }
    if obs.details:
        sealed = keyring.seal(
            json.dumps(obs.details, default=str).encode(),
            aad=f"observation:{row.id}:{obs.key}".encode(),
        )
        record["key_id"], record["details_blob"] = sealed.key_id, sealed.blob
    return record


def _session_audit(item: _SessionWork, actor: str, replay: bool) -> AuditDraft:
    row = item.row
    return AuditDraft(
        actor=actor,
        source="replay" if replay else (row.last_source or "webhook"),
        subject="session",
        provider=row.provider,
        session_id=row.session_id,
        user_ref=row.user_ref,
        previous_status=item.before[0],
        new_status=row.status,
        decided_by=row.decided_by,
        event_id=row.last_event_id,
        reason=row.last_reason or "",
    )


def _mark_events(
    db: Session,
    parsed_events: dict[int, tuple[InboundEvent, Parsed]],
    rows: dict[tuple[str, str], SessionRow],
    winners: dict[tuple[str, str], str | None],
    result: BatchResult,
) -> None:
    """Mark each event applied or superseded (one UPDATE per state) and drop its outbox row.
    An event of a known session carries the session's user ref when it names none itself (a
    callback or a poll answer never does), so that every user filter finds it."""
    now = utcnow()
    events = table_of(InboundEvent)
    conn = db.connection()
    for event_id, (event, parsed) in parsed_events.items():
        key = (event.provider, parsed.session_id or "")
        keys = {obs.key for obs in parsed.observations}
        current = winners.get(key)
        superseded = bool(keys) and current not in keys
        (result.superseded if superseded else result.applied).append(event_id)
        row = rows.get(key)
        user_ref = parsed.user_ref or (row.user_ref if row else None) or event.user_ref
        if (event.session_id, event.user_ref) != (parsed.session_id, user_ref):
            conn.execute(
                update(events)
                .where(events.c.id == event_id)
                .values(session_id=parsed.session_id, user_ref=user_ref)
            )
    for state, ids in (
        (EventState.APPLIED, result.applied),
        (EventState.SUPERSEDED, result.superseded),
    ):
        if ids:
            conn.execute(
                update(events)
                .where(events.c.id.in_(ids))
                .values(state=state.value, applied_at=now, updated_at=now, last_error=None)
            )
    outbox = table_of(OutboxEntry)
    conn.execute(delete(outbox).where(outbox.c.event_id.in_(list(parsed_events))))
