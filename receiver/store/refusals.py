"""The durable record of refused deliveries: counts by provider, reason and ten-minute bucket.

A refused delivery (401: bad signature, wrong URL token, …) stores nothing of the request, by
design. What on-call needs later is only how many were refused, for which provider, why and
when: `verihook doctor` reads it to say what is probably misconfigured. The rows are bounded: a
handful of providers × the reasons the code can give × the buckets of REFUSALS_KEEP_DAYS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, Column, delete, func, select
from sqlmodel import Field, Session, SQLModel, col

from receiver.store import dialects
from receiver.store.models import table_of

REFUSAL_BUCKET_SECONDS = 600
"""The width of a bucket: `verihook doctor`'s "last hour" is the buckets that began in it."""

REFUSALS_KEEP_DAYS = 7
"""Buckets older than this are deleted (by the receiver's own writer, at most once an hour)."""

MAX_REASON_LENGTH = 40


class RefusalCount(SQLModel, table=True):
    """How many deliveries of one provider were refused for one reason in one bucket."""

    __tablename__ = "refusal_counts"

    provider: str = Field(primary_key=True, max_length=32)
    reason: str = Field(primary_key=True, max_length=MAX_REASON_LENGTH)
    bucket_start: datetime = Field(primary_key=True)
    count: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_at: datetime
    """When the newest refusal counted here happened."""


@dataclass(frozen=True)
class Refusals:
    """Refusals counted in memory, to be added to a bucket's row."""

    provider: str
    reason: str
    bucket_start: datetime
    count: int
    last_at: datetime


def bucket_of(at: datetime) -> datetime:
    """The start of the bucket holding `at` (aware UTC)."""
    seconds = int(at.timestamp())
    return datetime.fromtimestamp(seconds - seconds % REFUSAL_BUCKET_SECONDS, UTC)


def add_refusals(db: Session, counted: Iterable[Refusals]) -> None:
    """Add counts to their buckets (insert, or add to the row there), in the caller's
    transaction; in key order, so that two writers never wait on each other in a cycle."""
    rows = [
        {
            "provider": c.provider,
            "reason": c.reason[:MAX_REASON_LENGTH],
            "bucket_start": c.bucket_start,
            "count": c.count,
            "last_at": c.last_at,
        }
        for c in sorted(counted, key=lambda c: (c.provider, c.reason, c.bucket_start))
    ]
    if not rows:
        return
    table = table_of(RefusalCount)
    stmt = dialects.insert(db, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["provider", "reason", "bucket_start"],
        set_={"count": table.c["count"] + stmt.excluded["count"], "last_at": stmt.excluded.last_at},
    )
    db.execute(stmt, rows)


@dataclass(frozen=True)
class RefusalTotal:
    """Refusals of one provider for one reason since some time, and the last one's time."""

    provider: str
    reason: str
    count: int
    last_at: datetime


def refusals_since(db: Session, since: datetime) -> list[RefusalTotal]:
    """The refusals counted in the buckets from `since` on, by provider and reason, the most
    frequent first (then by provider and reason)."""
    rows = db.execute(
        select(
            col(RefusalCount.provider),
            col(RefusalCount.reason),
            func.sum(col(RefusalCount.count)),
            func.max(col(RefusalCount.last_at)),
        )
        .where(col(RefusalCount.bucket_start) >= since)
        .group_by(col(RefusalCount.provider), col(RefusalCount.reason))
    ).all()
    totals = [RefusalTotal(p, r, int(n), last) for p, r, n, last in rows]
    return sorted(totals, key=lambda t: (-t.count, t.provider, t.reason))


def prune_refusals(db: Session, *, now: datetime) -> None:
    """Delete the buckets older than REFUSALS_KEEP_DAYS."""
    cutoff = now - timedelta(days=REFUSALS_KEEP_DAYS)
    db.execute(delete(RefusalCount).where(col(RefusalCount.bucket_start) < cutoff))
