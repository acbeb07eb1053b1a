"""Find stored events, and replay them with the worker's own code: one, or in bulk by filter.

Replaying an event = putting it back in the outbox (attempts reset, available now) and applying
it with `reconciler.drain.apply_batch(..., replay=True)`, the function a worker runs, so its
audit entries have source `replay`. Today's code re-parses the stored delivery: a quarantined
event that today's code understands is applied; one it still does not understand stays
quarantined with today's parse error. An event that cannot be applied at all (its key is not in
the keyring, its payload was purged) is marked `failed` again and left to the workers' retries.

Every replay computes its *effect*: the sessions and users whose (status, decided_by) changed,
from what to what, read before and after the apply in the same transaction. A dry run is the
same work in a transaction that is rolled back, so it shows what a real replay would do, not a
guess. A bulk replay is a `replays` row worked through in ascending event id order, one batch per
transaction; the batch's effects, the row's cursor (`last_event_id`) and its running summary
commit together, so a run that stops anywhere resumes after its last committed batch and applies
nothing twice.

Lock order (no deadlock with workers): replay row → outbox rows → events → sessions (SKIP LOCKED)
→ users → audit head, which is taken last by `apply_batch`. A dry run applies all its events in
one `apply_batch` call for the same reason.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col

from receiver.exceptions import DecryptionError
from receiver.services import Services
from receiver.store.db import is_sqlite, sqlite_write_lock, transaction
from receiver.store.events import open_payload
from receiver.store.models import (
    EventState,
    InboundEvent,
    ObservationRecord,
    OutboxEntry,
    UserRecord,
    VerificationSession,
    utcnow,
)
from receiver.store.replay_models import Replay, ReplayState
from reconciler import notify
from reconciler.apply import parse_event
from reconciler.audit.chain import AuditDraft, append_audit
from reconciler.drain import DrainStats, apply_batch, backoff_seconds
from reconciler.event_queries import (  # noqa: F401  (the API, console and tests import them here)
    DEFAULT_LIMIT,
    FILTER_KEYS,
    LIST_KEYS,
    MAX_ID,
    MAX_LIMIT,
    MAX_REF_LENGTH,
    REF_PATTERN,
    EventFilter,
    FilterError,
    ListRequest,
    NotFound,
    _iso,
    decode_cursor,
    encode_cursor,
    event_json,
    list_events,
    parse_limit,
    parse_time,
)
from reconciler.job_services import services as job_services

log = logging.getLogger(__name__)

DRY_RUN_MAX_EVENTS = 5000
"""A dry run applies (and rolls back) at most this many events, in one transaction."""
SUMMARY_LIST_LIMIT = 1000
"""Changed sessions (and users) listed in a summary; beyond it only the counts grow (and may
count twice one that changes in two batches)."""
FAILURES_LIST_LIMIT = 100
JOB = "reconciler.replay.run_replay_job"
JOB_BUDGET_SECONDS = 300.0
"""A replay job works this long, then hands the rest to a fresh job (resuming at its cursor)."""
JOB_TIMEOUT_SECONDS = 900
BATCH_RETRIES = 3
"""A batch that hits a transient database error (deadlock, serialization) is retried."""


class QueueUnavailable(RuntimeError):
    """The replay was stored but could not be queued (Redis unreachable)."""

    def __init__(self, replay_id: int) -> None:
        super().__init__(
            f"replay {replay_id} is stored but Redis is unreachable; "
            f"run `verihook replay --resume {replay_id}`"
        )
        self.replay_id = replay_id


def _delivery_json(event: InboundEvent, services: Services, *, redacted: bool) -> dict[str, Any]:
    """The stored delivery: headers and body for operators; names and sizes for auditors."""
    try:
        record = open_payload(event, keyring=services.keyring)
    except Exception as exc:  # purged, or a key this process does not have
        return {"redacted": redacted, "available": False, "error": type(exc).__name__}
    body = str(record.get("body", "")).encode("latin-1")
    headers = [(str(k), str(v)) for k, v in record.get("headers", [])]
    query = [(str(k), str(v)) for k, v in record.get("query", [])]
    shown: dict[str, Any] = {
        "redacted": redacted,
        "available": True,
        "source": record.get("source"),
        "notification": record.get("notification"),
        "received_at": record.get("received_at"),
        "body_bytes": len(body),
    }
    if redacted:
        shown["header_names"] = sorted({k for k, _ in headers}, key=str.lower)
        shown["query_names"] = sorted({k for k, _ in query})
    else:
        shown["headers"] = [[k, v] for k, v in headers]
        shown["query"] = [[k, v] for k, v in query]
        shown["body"] = body.decode("utf-8", errors="replace")
    return shown


def _observation_json(row: ObservationRecord, session_row: VerificationSession) -> dict[str, Any]:
    return {
        "provider": session_row.provider,
        "session_id": session_row.session_id,
        "status": row.status,
        "decided_by": row.decided_by,
        "occurred_at": _iso(row.occurred_at),
        "source": row.source,
        "provider_status": row.provider_status,
        "disposition": row.disposition,
    }


def show_event(
    services: Services, event_id: int, *, redacted: bool, actor_name: str | None = None
) -> dict[str, Any]:
    """An event, its delivery (redacted for auditors) and the observations it produced.

    An unredacted view exposes personal data, so it is an operator action: it is written to the
    audit history as `operator:<actor_name>`.
    """
    if not redacted and not actor_name:
        raise ValueError("an unredacted view needs the operator's name for the audit history")
    with transaction(services.engine) as session:
        event = session.get(InboundEvent, event_id)
        if event is None:
            raise NotFound(f"no event {event_id}")
        observations = [
            _observation_json(obs, row)
            for obs, row in session.execute(
                select(ObservationRecord, VerificationSession)
                .join(
                    VerificationSession,
                    col(VerificationSession.id) == col(ObservationRecord.session_pk),
                )
                .where(col(ObservationRecord.event_id) == event_id)
                .order_by(col(ObservationRecord.id))
            )
        ]
        shown = {
            **event_json(event),
            "delivery": _delivery_json(event, services, redacted=redacted),
            "observations": observations,
        }
        if not redacted and shown["delivery"]["available"]:
            append_audit(
                session,
                [
                    operator_draft(
                        actor_name or "",
                        "event",
                        f"viewed the raw delivery of event {event_id}",
                        event=event,
                    )
                ],
            )
    return shown


def operator_draft(
    actor_name: str,
    subject: str,
    reason: str,
    *,
    event: InboundEvent | None = None,
    flt: EventFilter | None = None,
    previous_status: str | None = None,
    new_status: str | None = None,
) -> AuditDraft:
    """The audit entry of an operator action (`operator:<token name>`, source `operator`)."""
    provider = session_id = user_ref = None
    if event is not None:
        provider, session_id, user_ref = event.provider, event.session_id, event.user_ref
    elif flt is not None:
        provider = flt.providers[0] if len(flt.providers) == 1 else None
        session_id, user_ref = flt.session_id, flt.user_ref
    return AuditDraft(
        actor=f"operator:{actor_name}"[:64],
        source="operator",
        subject=subject,
        provider=provider,
        session_id=session_id,
        user_ref=user_ref,
        previous_status=previous_status,
        new_status=new_status,
        decided_by=None,
        event_id=event.id if event is not None else None,
        reason=reason[:200],
    )


# ---------------------------------------------------------------- effects


StatusPair = dict[str, str] | None
"""{"status", "decided_by"} of a session or user, None when it did not exist."""


def _pair(status: str | None, decided_by: str | None) -> StatusPair:
    return {"status": status, "decided_by": decided_by or "auto"} if status is not None else None


@dataclass
class Effect:
    """What replaying a set of events did (or would do): counts and from → to changes."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("events", "applied", "superseded", "quarantined", "failed", "deferred"), 0
        )
    )
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    unlisted: dict[str, int] = field(default_factory=lambda: {"sessions": 0, "users": 0})

    def add_counts(self, stats: DrainStats, events: int, failed: int) -> None:
        """Fold one batch's counts in."""
        self.counts["events"] += events
        self.counts["applied"] += stats.applied
        self.counts["superseded"] += stats.superseded
        self.counts["quarantined"] += stats.quarantined
        self.counts["deferred"] += stats.deferred
        self.counts["failed"] += failed

    def add_changes(
        self,
        kind: str,
        before: dict[str, tuple[StatusPair, dict[str, Any]]],
        after: dict[str, tuple[StatusPair, dict[str, Any]]],
    ) -> None:
        """Fold one batch's before/after states in: keep the first `from`, the last `to`."""
        target = self.sessions if kind == "sessions" else self.users
        for key in sorted(set(before) | set(after)):
            old = before.get(key, (None, {}))
            new = after.get(key, (None, {}))
            if old[0] == new[0]:
                continue
            if key in target:
                target[key]["to"] = new[0]
                target[key].update({k: v for k, v in new[1].items() if v is not None})
            elif len(target) < SUMMARY_LIST_LIMIT:
                target[key] = {**old[1], **{k: v for k, v in new[1].items() if v is not None}}
                target[key].update({"from": old[0], "to": new[0]})
            else:
                self.unlisted[kind] += 1

    def to_json(self) -> dict[str, Any]:
        """The summary as the API and the replays table show it."""
        sessions = [v for _, v in sorted(self.sessions.items()) if v["from"] != v["to"]]
        users = [v for _, v in sorted(self.users.items()) if v["from"] != v["to"]]
        return {
            **self.counts,
            "sessions_changed": len(sessions) + self.unlisted["sessions"],
            "users_changed": len(users) + self.unlisted["users"],
            "sessions": sessions,
            "users": users,
            "truncated": bool(self.unlisted["sessions"] or self.unlisted["users"]),
            "failures": self.failures,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Effect:
        """Rebuild a stored summary, to keep adding batches to it."""
        effect = cls()
        for key in effect.counts:
            effect.counts[key] = int(data.get(key, 0))
        for item in data.get("sessions", []):
            effect.sessions[f"{item['provider']}/{item['session_id']}"] = dict(item)
        for item in data.get("users", []):
            effect.users[item["user_ref"]] = dict(item)
        effect.failures = list(data.get("failures", []))
        effect.unlisted["sessions"] = int(data.get("sessions_changed", 0)) - len(effect.sessions)
        effect.unlisted["users"] = int(data.get("users_changed", 0)) - len(effect.users)
        return effect


def _session_states(
    session: Session, keys: set[tuple[str, str]]
) -> dict[str, tuple[StatusPair, dict[str, Any]]]:
    if not keys:
        return {}
    by_provider: dict[str, list[str]] = {}
    for provider, session_id in keys:
        by_provider.setdefault(provider, []).append(session_id)
    rows = session.execute(
        select(
            col(VerificationSession.provider),
            col(VerificationSession.session_id),
            col(VerificationSession.user_ref),
            col(VerificationSession.status),
            col(VerificationSession.decided_by),
        ).where(
            or_(
                *[
                    and_(
                        col(VerificationSession.provider) == provider,
                        col(VerificationSession.session_id).in_(ids),
                    )
                    for provider, ids in sorted(by_provider.items())
                ]
            )
        )
    )
    return {
        f"{provider}/{session_id}": (
            _pair(status, decided_by),
            {"provider": provider, "session_id": session_id, "user_ref": user_ref},
        )
        for provider, session_id, user_ref, status, decided_by in rows
    }


def _user_states(session: Session, refs: set[str]) -> dict[str, tuple[StatusPair, dict[str, Any]]]:
    if not refs:
        return {}
    rows = session.execute(
        select(col(UserRecord.user_ref), col(UserRecord.status), col(UserRecord.decided_by)).where(
            col(UserRecord.user_ref).in_(sorted(refs))
        )
    )
    return {ref: (_pair(status, decided_by), {"user_ref": ref}) for ref, status, decided_by in rows}


def _upsert_outbox(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert or reset outbox rows, in event id order (the lock order workers use too)."""
    if not rows:
        return
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = OutboxEntry.__table__  # type: ignore[attr-defined]
    stmt = module.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["event_id"],
        set_={
            "available_at": stmt.excluded.available_at,
            "attempts": stmt.excluded.attempts,
            "enqueued_at": None,
        },
    )
    session.execute(stmt, sorted(rows, key=lambda r: r["event_id"]))


def replay_batch(
    session: Session, services: Services, event_ids: Iterable[int], effect: Effect
) -> DrainStats:
    """Replay events inside the caller's transaction and fold their effect into `effect`.

    Each event is re-parsed first, to learn the sessions and users it touches (their states are
    read before and after) and to set apart the ones that cannot be applied at all: those are
    marked failed and put back in the outbox with the worker's backoff. The rest are reset in
    the outbox and applied by the worker's `apply_batch` with audit source `replay`.
    """
    ids = sorted(set(event_ids))
    events = list(
        session.execute(
            select(InboundEvent).where(col(InboundEvent.id).in_(ids)).order_by(col(InboundEvent.id))
        ).scalars()
    )
    to_apply: list[int] = []
    failures: dict[int, str] = {}
    session_keys: set[tuple[str, str]] = set()
    user_refs: set[str] = set()
    for event in events:
        assert event.id is not None
        if event.session_id:
            session_keys.add((event.provider, event.session_id))
        if event.user_ref:
            user_refs.add(event.user_ref)
        provider = services.providers.get(event.provider)
        if provider is None:
            to_apply.append(event.id)  # `apply_batch` quarantines it, as the worker does
            continue
        try:
            parsed = parse_event(event, provider, services.keyring)
        except DecryptionError as exc:  # a missing key: failed and retried, as the worker does
            failures[event.id] = f"{type(exc).__name__}: {str(exc)[:500]}"
            continue
        except Exception:  # ParseError or a parser crash: `apply_batch` quarantines it with
            to_apply.append(event.id)  # today's message, as the worker does
            continue
        to_apply.append(event.id)
        if parsed.session_id:
            session_keys.add((event.provider, parsed.session_id))
        if parsed.user_ref:
            user_refs.add(parsed.user_ref)
    sessions_before = _session_states(session, session_keys)
    user_refs |= {meta["user_ref"] for _, meta in sessions_before.values() if meta["user_ref"]}
    users_before = _user_states(session, user_refs)

    now = utcnow()
    retry_at = now + timedelta(seconds=backoff_seconds(1))
    retried = services.settings.apply_max_attempts > 1  # else a failure leaves the outbox
    _upsert_outbox(
        session,
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
        outbox = OutboxEntry.__table__  # type: ignore[attr-defined]
        session.execute(delete(outbox).where(outbox.c.event_id.in_(sorted(failures))))
    events_table = InboundEvent.__table__  # type: ignore[attr-defined]
    if to_apply:
        session.execute(
            update(events_table)
            .where(events_table.c.id.in_(to_apply))
            .values(attempts=0, updated_at=now)
        )
    for event_id, message in sorted(failures.items()):
        session.execute(
            update(events_table)
            .where(events_table.c.id == event_id)
            .values(state=EventState.FAILED.value, attempts=1, last_error=message, updated_at=now)
        )
        if len(effect.failures) < FAILURES_LIST_LIMIT:
            effect.failures.append({"event_id": event_id, "error": message})
    for event in events:  # their ORM copies predate these updates
        session.expire(event)

    stats = DrainStats()
    if to_apply:
        apply_batch(session, services, to_apply, stats, replay=True)

    sessions_after = _session_states(session, session_keys)
    user_refs |= {meta["user_ref"] for _, meta in sessions_after.values() if meta["user_ref"]}
    users_after = _user_states(session, user_refs)
    effect.add_counts(stats, len(events), len(failures))
    effect.add_changes("sessions", sessions_before, sessions_after)
    effect.add_changes("users", users_before, users_after)
    return stats


def _writer(services: Services) -> AbstractContextManager[Any]:
    """The process's SQLite writer lock (as `transaction()` takes it); nothing on PostgreSQL."""
    return sqlite_write_lock(services.engine) if is_sqlite(services.engine) else nullcontext()


def _wake_notifier(services: Services, stats: DrainStats) -> None:
    if stats.changed_users and services.settings.notify_url:
        notify.wake_notifier(services, stats.changed_users)


# ---------------------------------------------------------------- one event


def replay_event(
    services: Services, event_id: int, *, actor_name: str, dry_run: bool = False
) -> dict[str, Any]:
    """Replay one event now (or compute what that would do); the operator action is audited."""
    with _writer(services), Session(services.engine, expire_on_commit=False) as session:
        try:
            event = session.get(InboundEvent, event_id)
            if event is None:
                raise NotFound(f"no event {event_id}")
            state_before = event.state
            effect = Effect()
            stats = replay_batch(session, services, [event_id], effect)
            event = session.get(InboundEvent, event_id, populate_existing=True)
            assert event is not None
            if not dry_run:
                append_audit(
                    session,
                    [
                        operator_draft(
                            actor_name,
                            "event",
                            f"replayed event {event_id} (was {state_before}, now {event.state})",
                            event=event,
                            previous_status=state_before,
                            new_status=event.state,
                        )
                    ],
                )
            after = event_json(event)
            if dry_run:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
    if not dry_run:
        _wake_notifier(services, stats)
    return {
        "dry_run": dry_run,
        "event_id": event_id,
        "state_before": state_before,
        "event": after,
        **effect.to_json(),
    }


# ---------------------------------------------------------------- bulk


def _matching_ids(
    session: Session,
    flt: EventFilter,
    *,
    after_id: int = 0,
    upto_id: int | None = None,
    limit: int | None = None,
) -> list[int]:
    query = (
        select(col(InboundEvent.id))
        .where(*flt.clauses(), col(InboundEvent.id) > after_id)
        .order_by(col(InboundEvent.id))
    )
    if upto_id is not None:
        query = query.where(col(InboundEvent.id) <= upto_id)
    if limit is not None:
        query = query.limit(limit)
    return [int(i) for i in session.execute(query).scalars()]


def count_matching(session: Session, flt: EventFilter, upto_id: int | None = None) -> int:
    """How many events match a filter (up to an id)."""
    query = select(func.count()).select_from(InboundEvent).where(*flt.clauses())
    if upto_id is not None:
        query = query.where(col(InboundEvent.id) <= upto_id)
    return int(session.execute(query).scalar_one())


def dry_run(
    services: Services, flt: EventFilter, *, max_events: int = DRY_RUN_MAX_EVENTS
) -> dict[str, Any]:
    """What a bulk replay of `flt` would change: it is applied for real, then rolled back."""
    with _writer(services), Session(services.engine) as session:
        try:
            total = count_matching(session, flt)
            ids = _matching_ids(session, flt, limit=max_events)
            effect = Effect()
            if ids:
                replay_batch(session, services, ids, effect)
        finally:
            session.rollback()
    return {
        "dry_run": True,
        "filter": flt.to_json(),
        "total": total,
        "considered": len(ids),
        "events_truncated": total > len(ids),
        **effect.to_json(),
    }


def create_replay(services: Services, flt: EventFilter, *, actor_name: str) -> Replay:
    """Store a pending bulk replay of the events matching `flt` now; audit the operator action."""
    if flt.is_empty():
        raise FilterError("a bulk replay needs at least one filter (state, provider, since, …)")
    with transaction(services.engine) as session:
        upto = session.execute(select(func.max(col(InboundEvent.id)))).scalar_one_or_none() or 0
        total = count_matching(session, flt, upto)
        now = utcnow()
        row = Replay(
            filter_json=json.dumps(flt.to_json(), sort_keys=True),
            state=ReplayState.PENDING.value,
            total=total,
            done=0,
            max_event_id=upto,
            summary_json=json.dumps(Effect().to_json()),
            created_by=actor_name[:64],
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        append_audit(
            session,
            [
                operator_draft(
                    actor_name,
                    "replay",
                    f"started bulk replay {row.id} of {total} event(s): {flt.describe()}",
                    flt=flt,
                )
            ],
        )
    return row


def enqueue_replay(services: Services, replay_id: int) -> str:
    """Queue `run_replay_job(replay_id)`; QueueUnavailable when Redis cannot be reached."""
    try:
        job = Queue(services.settings.queue_name, connection=services.redis).enqueue_call(
            JOB,
            args=(replay_id,),
            job_id=f"replay-{replay_id}-{uuid.uuid4().hex[:12]}",
            timeout=JOB_TIMEOUT_SECONDS,
            result_ttl=3600,
            failure_ttl=86_400,
        )
    except RedisError as exc:
        raise QueueUnavailable(replay_id) from exc
    return str(job.id)


def start_replay(services: Services, flt: EventFilter, *, actor_name: str) -> Replay:
    """Create a bulk replay and queue it for a worker."""
    row = create_replay(services, flt, actor_name=actor_name)
    assert row.id is not None
    enqueue_replay(services, row.id)
    return row


def _lock_replay(session: Session, replay_id: int) -> Replay:
    query = (
        select(Replay).where(col(Replay.id) == replay_id).execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no replay {replay_id}")
    return row


def _run_batch(services: Services, replay_id: int, limit: int) -> tuple[Replay, int, DrainStats]:
    """Replay the next batch of a bulk replay and advance its cursor, in one transaction."""
    with transaction(services.engine) as session:
        row = _lock_replay(session, replay_id)
        stats = DrainStats()
        if row.state == ReplayState.DONE:
            return row, 0, stats
        now = utcnow()
        row.state, row.error, row.updated_at = ReplayState.RUNNING.value, None, now
        row.started_at = row.started_at or now
        flt = EventFilter.parse(
            {k: v for k, v in json.loads(row.filter_json).items() if v is not None}
        )
        ids = _matching_ids(
            session, flt, after_id=row.last_event_id or 0, upto_id=row.max_event_id, limit=limit
        )
        if ids:
            effect = Effect.from_json(json.loads(row.summary_json))
            stats = replay_batch(session, services, ids, effect)
            row.last_event_id, row.done = ids[-1], row.done + len(ids)
            row.total = max(row.total, row.done)
            row.summary_json = json.dumps(effect.to_json())
        if len(ids) < limit:
            row.state, row.finished_at = ReplayState.DONE.value, now
            row.total = row.done
        session.add(row)
    return row, len(ids), stats


def run_replay(
    services: Services,
    replay_id: int,
    *,
    max_events: int | None = None,
    max_seconds: float | None = None,
    batch_size: int | None = None,
    progress: Callable[[Replay, int], None] | None = None,
) -> Replay:
    """Work a bulk replay from its cursor until done, `max_events` or `max_seconds` is reached.

    `progress(row, processed_in_this_batch)` is called after each committed batch.
    """
    size = batch_size or services.settings.apply_batch_size
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    processed = 0
    while True:  # at least one batch per call, so that a chain of jobs always moves on
        limit = size if max_events is None else min(size, max_events - processed)
        if limit <= 0:
            break
        try:
            row, count, stats = _with_retries(services, replay_id, limit)
        except NotFound:
            raise
        except Exception as exc:
            _mark_failed(services, replay_id, exc)
            raise
        processed += count
        _wake_notifier(services, stats)
        if progress is not None:
            progress(row, count)
        if row.state == ReplayState.DONE:
            return row
        if deadline is not None and time.monotonic() >= deadline:
            break
    return get_replay(services, replay_id)


def _with_retries(services: Services, replay_id: int, limit: int) -> tuple[Replay, int, DrainStats]:
    for attempt in range(1, BATCH_RETRIES + 1):
        try:
            return _run_batch(services, replay_id, limit)
        except OperationalError:
            if attempt == BATCH_RETRIES:
                raise
            log.warning("replay batch hit a transient database error; retrying")
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def _mark_failed(services: Services, replay_id: int, error: Exception) -> None:
    try:
        with transaction(services.engine) as session:
            row = _lock_replay(session, replay_id)
            row.state, row.updated_at = ReplayState.FAILED.value, utcnow()
            row.error = f"{type(error).__name__}: {str(error)[:400]}"
            session.add(row)
    except Exception:
        log.exception("could not mark replay %s failed", replay_id)


def get_replay(services: Services, replay_id: int) -> Replay:
    """A replay row; NotFound if there is none."""
    with transaction(services.engine) as session:
        row = session.get(Replay, replay_id)
        if row is None:
            raise NotFound(f"no replay {replay_id}")
        return row


def list_replays(services: Services, limit: int = DEFAULT_LIMIT) -> list[Replay]:
    """The newest replays first."""
    with transaction(services.engine) as session:
        query = select(Replay).order_by(col(Replay.id).desc()).limit(limit)
        return list(session.execute(query).scalars())


def replay_json(row: Replay) -> dict[str, Any]:
    """A replay's state, progress (0..1) and summary."""
    if row.state == ReplayState.DONE:
        progress = 1.0
    else:
        progress = min(row.done / row.total, 1.0) if row.total else 0.0
    return {
        "id": row.id,
        "state": row.state,
        "total": row.total,
        "done": row.done,
        "progress": round(progress, 4),
        "filter": json.loads(row.filter_json),
        "summary": json.loads(row.summary_json),
        "last_event_id": row.last_event_id,
        "max_event_id": row.max_event_id,
        "error": row.error,
        "created_by": row.created_by,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
    }


def run_replay_job(replay_id: int, budget_seconds: float | None = None) -> dict[str, Any]:
    """RQ job: work a replay for a while; if it is not done, queue a fresh job to go on."""
    services = job_services()
    row = run_replay(
        services,
        replay_id,
        max_seconds=JOB_BUDGET_SECONDS if budget_seconds is None else budget_seconds,
    )
    if row.state == ReplayState.RUNNING:
        enqueue_replay(services, replay_id)
    return {k: v for k, v in replay_json(row).items() if k != "summary"}


def resume_stale_replays(services: Services, stale_after_seconds: float = 600.0) -> list[int]:
    """Queue a job for every pending or running replay nobody advanced for a while (its worker
    died); for the scheduler's sweep. Returns the ids queued."""
    cutoff = utcnow() - timedelta(seconds=stale_after_seconds)
    with transaction(services.engine) as session:
        ids = list(
            session.execute(
                select(col(Replay.id)).where(
                    col(Replay.state).in_([ReplayState.PENDING.value, ReplayState.RUNNING.value]),
                    col(Replay.updated_at) < cutoff,
                )
            ).scalars()
        )
    for replay_id in ids:
        assert replay_id is not None
        enqueue_replay(services, replay_id)
    return [int(i) for i in ids if i is not None]
