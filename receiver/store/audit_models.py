"""The hash-chained audit history: its append-only entries and the head every append locks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from receiver.store.models import BIG_ID, utcnow


class AuditEntry(SQLModel, table=True):
    """One status change of a session or a user. Append-only; no PII beyond the user ref.

    `entry_hash` = sha256(`prev_hash` + canonical JSON of every other field but `id`, `user_ref`
    and `session_id`), so editing, removing or reordering any row breaks the chain from that row
    on. The chain covers `user_digest` and `session_digest` (sha256 of the ref and of the session
    id, which for some providers is the user's identifier) instead of the values themselves, so
    that erasing a person can blank them and leave the chain verifiable.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (
        UniqueConstraint("seq", name="uq_audit_entries_seq"),
        Index("ix_audit_user_at", "user_ref", "at"),
        Index("ix_audit_session", "provider", "session_id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BIG_ID, primary_key=True, autoincrement=True)
    )
    seq: int
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=64)
    source: str = Field(max_length=16)
    subject: str = Field(max_length=8)
    provider: str | None = Field(default=None, max_length=32)
    session_id: str | None = Field(default=None, max_length=128)
    session_digest: str | None = Field(default=None, max_length=64)
    user_ref: str | None = Field(default=None, max_length=128)
    user_digest: str | None = Field(default=None, max_length=64)
    previous_status: str | None = Field(default=None, max_length=16)
    new_status: str | None = Field(default=None, max_length=16)
    decided_by: str | None = Field(default=None, max_length=8)
    event_id: int | None = None
    reason: str = Field(default="", max_length=200)
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The single row every append locks: the chain's last sequence number and hash."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    entry_hash: str = Field(default="0" * 64, max_length=64)
