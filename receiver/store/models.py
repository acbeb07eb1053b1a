"""SQLModel tables: inbound events, their outbox, sessions, observations, users.

Columns that can hold PII are ciphertext (`*_blob` with `key_id`); everything else is plain so
that it can be indexed and queried. Times are aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    Table,
    UniqueConstraint,
    inspect,
)
from sqlmodel import Field, SQLModel

BIG_ID = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids on PostgreSQL; INTEGER on SQLite so that it is the rowid and autoincrements."""


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Table (its `__table__`, which SQLModel does not declare to type checkers),
    through the mapper's public inspection API."""
    table = inspect(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


def utcnow() -> datetime:
    """The current time, aware UTC (SQLModel's UTCDateTime columns refuse naive values)."""
    return datetime.now(UTC)


class EventState(StrEnum):
    """Where an inbound event stands."""

    RECEIVED = "received"
    APPLIED = "applied"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    SUPERSEDED = "superseded"


class Disposition(StrEnum):
    """What an observation did to its session."""

    APPLIED = "applied"
    SUPERSEDED = "superseded"


class InboundEvent(SQLModel, table=True):
    """One authenticated delivery (webhook, callback or poll answer), stored before we answer."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("provider", "dedupe_key", name="uq_inbound_events_provider_dedupe"),
        Index("ix_inbound_events_state_received", "state", "received_at"),
        Index("ix_inbound_events_session", "provider", "session_id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BIG_ID, primary_key=True, autoincrement=True)
    )
    provider: str = Field(max_length=32)
    dedupe_key: str = Field(max_length=160)
    kind: str = Field(max_length=16)
    notification: str | None = Field(default=None, max_length=40)
    state: str = Field(default=EventState.RECEIVED, max_length=16)
    session_id: str | None = Field(default=None, max_length=128)
    user_ref: str | None = Field(default=None, max_length=128, index=True)
    received_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    applied_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=2000)
    parse_error: str | None = Field(default=None, max_length=2000)
    key_id: str | None = Field(default=None, max_length=32)
    payload_blob: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    purged_at: datetime | None = None


class OutboxEntry(SQLModel, table=True):
    """An event that still has to be applied; the worker deletes it in the applying transaction."""

    __tablename__ = "outbox"

    event_id: int = Field(sa_column=Column(BIG_ID, primary_key=True, autoincrement=False))
    created_at: datetime = Field(default_factory=utcnow)
    available_at: datetime = Field(default_factory=utcnow)
    enqueued_at: datetime | None = None
    attempts: int = 0


class VerificationSession(SQLModel, table=True):
    """What we know of one provider session: its current status and when to look again."""

    __tablename__ = "verification_sessions"
    __table_args__ = (
        UniqueConstraint("provider", "session_id", name="uq_sessions_provider_session"),
        Index("ix_sessions_next_check", "next_check_at"),
        Index("ix_sessions_user", "user_ref"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    session_id: str = Field(max_length=128)
    user_ref: str | None = Field(default=None, max_length=128)
    status: str = Field(default="pending", max_length=16)
    decided_by: str = Field(default="auto", max_length=8)
    status_observed_at: datetime | None = None
    current_observation_key: str | None = Field(default=None, max_length=64)
    last_event_id: int | None = None
    last_source: str | None = Field(default=None, max_length=16)
    last_reason: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    state_digest: str | None = Field(default=None, max_length=64)
    next_check_at: datetime | None = None
    last_polled_at: datetime | None = None
    poll_attempts: int = 0
    overdue: bool = False
    settled: bool = False


class ObservationRecord(SQLModel, table=True):
    """One observation in a session's history, applied or superseded."""

    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("session_pk", "observation_key", name="uq_observations_session_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    session_pk: int = Field(foreign_key="verification_sessions.id", index=True)
    observation_key: str = Field(max_length=64)
    status: str = Field(max_length=16)
    decided_by: str = Field(max_length=8)
    status_class: int
    occurred_at: datetime
    source: str = Field(max_length=16)
    provider_status: str = Field(default="", max_length=64)
    reasons: str = Field(default="[]", max_length=2000)
    event_id: int | None = Field(default=None, index=True)
    disposition: str = Field(default=Disposition.APPLIED, max_length=16)
    recorded_at: datetime = Field(default_factory=utcnow)
    key_id: str | None = Field(default=None, max_length=32)
    details_blob: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class UserRecord(SQLModel, table=True):
    """A user's verification status, derived from their sessions by the user rule."""

    __tablename__ = "user_records"

    user_ref: str = Field(primary_key=True, max_length=128)
    status: str = Field(default="pending", max_length=16)
    decided_by: str = Field(default="auto", max_length=8)
    provider: str | None = Field(default=None, max_length=32)
    session_id: str | None = Field(default=None, max_length=128)
    verified_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
