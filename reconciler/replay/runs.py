"""The `replays` rows of bulk replays: which events a run covers, create, lock, read, list, and
mark failed. Those given a session work in the caller's transaction; the others are one each."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from sqlalchemy import func, select
from sqlmodel import Session, col

from receiver.services import Services
from receiver.store.db import transaction
from receiver.store.models import InboundEvent, utcnow
from receiver.store.replay_models import Replay, ReplayState
from reconciler.audit.chain import append_audit
from reconciler.event_queries import DEFAULT_LIMIT, EventFilter, FilterError, NotFound
from reconciler.replay.effects import Effect
from reconciler.replay.operator_audit import operator_draft

log = logging.getLogger(__name__)


def matching_ids(
    db: Session,
    flt: EventFilter,
    *,
    after_id: int = 0,
    upto_id: int | None = None,
    limit: int | None = None,
) -> list[int]:
    """Ids of the events matching `flt`, ascending, after `after_id` (up to `upto_id`)."""
    query = (
        select(col(InboundEvent.id))
        .where(*flt.clauses(), col(InboundEvent.id) > after_id)
        .order_by(col(InboundEvent.id))
    )
    if upto_id is not None:
        query = query.where(col(InboundEvent.id) <= upto_id)
    if limit is not None:
        query = query.limit(limit)
    return [int(i) for i in db.execute(query).scalars()]


def count_matching(db: Session, flt: EventFilter, upto_id: int | None = None) -> int:
    """How many events match a filter (up to an id)."""
    query = select(func.count()).select_from(InboundEvent).where(*flt.clauses())
    if upto_id is not None:
        query = query.where(col(InboundEvent.id) <= upto_id)
    return int(db.execute(query).scalar_one())


def create_replay(services: Services, flt: EventFilter, *, actor_name: str) -> Replay:
    """Store a pending bulk replay of the events matching `flt` now; audit the operator action."""
    if flt.is_empty():
        raise FilterError("a bulk replay needs at least one filter (state, provider, since, …)")
    with transaction(services.engine) as db:
        upto = db.execute(select(func.max(col(InboundEvent.id)))).scalar_one_or_none() or 0
        total = count_matching(db, flt, upto)
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
        db.add(row)
        db.flush()
        append_audit(
            db,
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


def lock_replay(db: Session, replay_id: int) -> Replay:
    """A replay row, locked (FOR UPDATE on PostgreSQL) in the caller's transaction; NotFound."""
    query = (
        select(Replay)
        .where(col(Replay.id) == replay_id)
        .execution_options(populate_existing=True)
        .with_for_update()
    )
    row: Replay | None = db.execute(query).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no replay {replay_id}")
    return row


def mark_failed(services: Services, replay_id: int, error: Exception) -> None:
    """Record a run's error on its row, and its end in the audit history (logged, never raised,
    if even that fails)."""
    try:
        with transaction(services.engine) as db:
            row = lock_replay(db, replay_id)
            row.state, row.updated_at = ReplayState.FAILED.value, utcnow()
            row.error = f"{type(error).__name__}: {str(error)[:400]}"
            db.add(row)
            audit_end(db, row, f"stopped on {type(error).__name__}")
    except Exception:
        log.exception("could not mark replay %s failed", replay_id)


END_COUNTS = ("applied", "superseded", "quarantined", "failed", "deferred")
"""The counts a bulk replay's end entry in the audit history gives (from its summary)."""


def audit_end(db: Session, row: Replay, how: str) -> None:
    """The audit entry of a bulk replay's end (finished, or stopped by an error), with its
    counts, beside the one written when it started; in the caller's transaction."""
    summary = json.loads(row.summary_json)
    counts = ", ".join(f"{key} {summary.get(key, 0)}" for key in END_COUNTS)
    reason = f"bulk replay {row.id} {how} after {row.done} of {row.total} event(s) ({counts})"
    append_audit(db, [operator_draft(row.created_by, "replay", reason, flt=_filter(row))])


def _filter(row: Replay) -> EventFilter | None:
    """The replay's filter, or None if the stored one no longer reads (a failed run's cause)."""
    try:
        stored = json.loads(row.filter_json)
        return EventFilter.parse({k: v for k, v in stored.items() if v is not None})
    except (ValueError, AttributeError, FilterError):
        return None


def get_replay(services: Services, replay_id: int) -> Replay:
    """A replay row; NotFound if there is none."""
    with transaction(services.engine) as db:
        row = db.get(Replay, replay_id)
        if row is None:
            raise NotFound(f"no replay {replay_id}")
        return row


def list_replays(services: Services, limit: int = DEFAULT_LIMIT) -> list[Replay]:
    """The newest replays first."""
    with transaction(services.engine) as db:
        query = select(Replay).order_by(col(Replay.id).desc()).limit(limit)
        return list(db.execute(query).scalars())


def stale_replay_ids(services: Services, stale_after_seconds: float) -> list[int]:
    """Pending or running replays nobody advanced for `stale_after_seconds` (their worker died)."""
    cutoff = utcnow() - timedelta(seconds=stale_after_seconds)
    with transaction(services.engine) as db:
        ids = list(
            db.execute(
                select(col(Replay.id)).where(
                    col(Replay.state).in_([ReplayState.PENDING.value, ReplayState.RUNNING.value]),
                    col(Replay.updated_at) < cutoff,
                )
            ).scalars()
        )
    return [int(i) for i in ids if i is not None]
