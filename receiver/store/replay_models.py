"""Bulk replays (`POST /api/v1/replays`, `verihook replay`): one row per replay, resumable.

A replay walks the events matching its filter in ascending id order, up to `max_event_id` (the
newest event when it was created), one batch per transaction. The batch's effects and the row's
`last_event_id` cursor commit together, so a restarted run continues after the last processed
event and never applies one twice.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from receiver.store.models import BIG_ID, utcnow


class ReplayState(StrEnum):
    """Where a bulk replay stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Replay(SQLModel, table=True):
    """One bulk replay: its filter, progress, cursor and summary (JSON text)."""

    __tablename__ = "replays"

    id: int | None = Field(
        default=None, sa_column=Column(BIG_ID, primary_key=True, autoincrement=True)
    )
    filter_json: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default=ReplayState.PENDING, max_length=16)
    total: int = 0
    done: int = 0
    last_event_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """The cursor: the last event this replay processed (None before the first batch)."""
    max_event_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """Events stored after the replay was created are not part of it."""
    summary_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    error: str | None = Field(default=None, max_length=500)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
