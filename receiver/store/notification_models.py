"""Notifications of user-status changes to the product backend, and each delivery attempt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from receiver.store.models import BIG_ID, utcnow


class Notification(SQLModel, table=True):
    """A user-status change to deliver to the product backend (Standard Webhooks)."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_state", "user_ref", "state", "id"),
        Index("ix_notifications_due", "state", "next_attempt_at"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BIG_ID, primary_key=True, autoincrement=True)
    )
    webhook_id: str = Field(max_length=64, unique=True)
    user_ref: str = Field(max_length=128)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)


class NotificationAttempt(SQLModel, table=True):
    """One delivery attempt of a notification and what the backend answered."""

    __tablename__ = "notification_attempts"

    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(index=True)
    at: datetime = Field(default_factory=utcnow)
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
