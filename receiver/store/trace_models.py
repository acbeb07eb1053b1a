"""What triage needs beyond the events themselves: how often a provider delivered the same event
again, and the recent checks the scheduler made of each session.

- `delivery_counts`: one row per event that a provider delivered more than once, counting the
  repeats (answered `duplicate` at ingest). Kept apart from `inbound_events` so that the duplicate
  path never waits for a worker, a replay or a dry run that holds an event's row: the one
  statement that looks a duplicate's id up also counts it (receiver/store/event_batches.py).
  No foreign key, for the same reason (events are never deleted; a purge keeps the row).
- `session_polls`: the last `POLLS_KEPT` checks of each session by the scheduler or a
  reconcile-now (time, outcome, the event a new answer was stored as), written in the
  transaction that moves the session's next check; older ones are deleted as new ones come.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from receiver.store.models import BIG_ID, utcnow

POLLS_KEPT = 20
"""How many recent checks are kept per session."""


class DeliveryCount(SQLModel, table=True):
    """Repeated deliveries of one stored event (the first delivery is not counted here)."""

    __tablename__ = "delivery_counts"

    event_id: int = Field(sa_column=Column(BIG_ID, primary_key=True, autoincrement=False))
    duplicates: int = 0
    last_at: datetime = Field(default_factory=utcnow)
    """When the latest repeat arrived."""


class SessionPoll(SQLModel, table=True):
    """One check of a session: a status call (or the planner's decision not to make one)."""

    __tablename__ = "session_polls"
    __table_args__ = (Index("ix_session_polls_session", "session_pk", "id"),)

    id: int | None = Field(
        default=None, sa_column=Column(BIG_ID, primary_key=True, autoincrement=True)
    )
    session_pk: int
    polled_at: datetime = Field(default_factory=utcnow)
    outcome: str = Field(max_length=32)
    """changed, unchanged, quarantined, provider_unavailable, provider_refused, overdue, expired"""
    event_id: int | None = None
    """The event the answer was stored as (a new or unreadable answer)."""
