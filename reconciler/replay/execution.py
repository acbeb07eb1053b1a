"""Running replays: one event now, a dry run of a filter, and a bulk replay worked batch after
batch from its cursor (each batch one transaction, retried on a transient database error).

Nothing here touches RQ: `verihook replay` runs a bulk replay in the foreground with
`run_replay`, and `queueing.run_replay_job` runs it in a worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from receiver.services import Services
from receiver.store.db import UNAVAILABLE_ERRORS, transaction, writer_lock
from receiver.store.models import InboundEvent, utcnow
from receiver.store.replay_models import Replay, ReplayState
from reconciler import notify
from reconciler.audit.chain import append_audit
from reconciler.drain import DrainStats, record_applied
from reconciler.event_queries import EventFilter, NotFound, event_json
from reconciler.replay.batch import replay_batch
from reconciler.replay.effects import Effect
from reconciler.replay.operator_audit import operator_draft
from reconciler.replay.runs import (
    audit_end,
    count_matching,
    get_replay,
    lock_replay,
    mark_failed,
    matching_ids,
)

log = logging.getLogger(__name__)

DRY_RUN_MAX_EVENTS = 5000
"""A dry run applies (and rolls back) at most this many events, in one transaction."""
BATCH_RETRIES = 3
"""A batch that hits a transient database error (deadlock, serialization) is retried."""


def _wake_notifier(services: Services, stats: DrainStats) -> None:
    if stats.changed_users and services.settings.notify_url:
        notify.wake_notifier(services, stats.changed_users)


# ---------------------------------------------------------------- one event


def replay_event(
    services: Services, event_id: int, *, actor_name: str, dry_run: bool = False
) -> dict[str, Any]:
    """Replay one event now (or compute what that would do); the operator action is audited."""
    with writer_lock(services.engine), Session(services.engine, expire_on_commit=False) as db:
        try:
            event = db.get(InboundEvent, event_id)
            if event is None:
                raise NotFound(f"no event {event_id}")
            state_before = event.state
            effect = Effect()
            stats = replay_batch(db, services, [event_id], effect)
            event = db.get(InboundEvent, event_id, populate_existing=True)
            assert event is not None
            if not dry_run:
                append_audit(
                    db,
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
                db.rollback()
            else:
                db.commit()
        except BaseException:
            db.rollback()
            raise
    if not dry_run:
        record_applied(stats)
        _wake_notifier(services, stats)
    return {
        "dry_run": dry_run,
        "event_id": event_id,
        "state_before": state_before,
        "event": after,
        **effect.to_json(),
    }


# ---------------------------------------------------------------- bulk


def dry_run(
    services: Services, flt: EventFilter, *, max_events: int = DRY_RUN_MAX_EVENTS
) -> dict[str, Any]:
    """What a bulk replay of `flt` would change: it is applied for real, then rolled back."""
    with writer_lock(services.engine), Session(services.engine) as db:
        try:
            total = count_matching(db, flt)
            ids = matching_ids(db, flt, limit=max_events)
            effect = Effect()
            if ids:
                replay_batch(db, services, ids, effect)
        finally:
            db.rollback()
    return {
        "dry_run": True,
        "filter": flt.to_json(),
        "total": total,
        "considered": len(ids),
        "events_truncated": total > len(ids),
        **effect.to_json(),
    }


def _run_batch(services: Services, replay_id: int, limit: int) -> tuple[Replay, int, DrainStats]:
    """Replay the next batch of a bulk replay and advance its cursor, in one transaction."""
    with transaction(services.engine) as db:
        row = lock_replay(db, replay_id)
        stats = DrainStats()
        if row.state == ReplayState.DONE:
            return row, 0, stats
        now = utcnow()
        row.state, row.error, row.updated_at = ReplayState.RUNNING.value, None, now
        row.started_at = row.started_at or now
        flt = EventFilter.parse(
            {k: v for k, v in json.loads(row.filter_json).items() if v is not None}
        )
        ids = matching_ids(
            db, flt, after_id=row.last_event_id or 0, upto_id=row.max_event_id, limit=limit
        )
        if ids:
            effect = Effect.from_json(json.loads(row.summary_json))
            stats = replay_batch(db, services, ids, effect)
            row.last_event_id, row.done = ids[-1], row.done + len(ids)
            row.total = max(row.total, row.done)
            row.summary_json = json.dumps(effect.to_json())
        if len(ids) < limit:
            row.state, row.finished_at = ReplayState.DONE.value, now
            row.total = row.done
            audit_end(db, row, "finished")
        db.add(row)
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
            mark_failed(services, replay_id, exc)
            raise
        processed += count
        record_applied(stats)  # committed: a dry run, rolled back, counts nothing
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
        except UNAVAILABLE_ERRORS:
            if attempt == BATCH_RETRIES:
                raise
            log.warning("replay batch hit a transient database error; retrying")
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")
