"""The outbox sweeper: wake the workers for events whose wake-up may have been lost.

`verihook outbox flush` runs it now; the scheduler runs it on a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from redis import Redis
from sqlalchemy import Engine, func, select, update
from sqlmodel import col

from receiver.queue import enqueue_drain
from receiver.store.db import transaction
from receiver.store.models import OutboxEntry, utcnow


@dataclass(frozen=True)
class FlushResult:
    """What a flush found and did."""

    pending: int
    woken: int
    job_id: str | None


def flush_outbox(
    engine: Engine, redis: Redis, queue_name: str, *, grace_seconds: float = 0.0
) -> FlushResult:
    """Enqueue a drain job covering every ready outbox row older than `grace_seconds`.

    Raises redis errors to the caller (the CLI reports them; the scheduler retries next tick).
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=grace_seconds)
    with transaction(engine) as db:
        ready = db.execute(
            select(func.count())
            .select_from(OutboxEntry)
            .where(col(OutboxEntry.available_at) <= now, col(OutboxEntry.created_at) <= cutoff)
        ).scalar_one()
        pending = db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()
    if not ready:
        return FlushResult(pending=pending, woken=0, job_id=None)
    job_id = enqueue_drain(redis, queue_name)
    with transaction(engine) as db:
        db.execute(
            update(OutboxEntry)
            .where(col(OutboxEntry.available_at) <= now, col(OutboxEntry.created_at) <= cutoff)
            .values(enqueued_at=now)
        )
    return FlushResult(pending=pending, woken=ready, job_id=job_id)
