"""Stored API tokens (`verihook tokens create`) and console sign-ins: only sha256 digests of
tokens and session ids are kept, never the secrets themselves."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from receiver.store.models import utcnow


class ApiToken(SQLModel, table=True):
    """A bearer token with a role; `token_digest` is sha256(token) (reconciler.api.auth)."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=48, unique=True)
    role: str = Field(max_length=16)
    token_digest: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str | None = Field(default=None, max_length=64)
    revoked_at: datetime | None = None


class ConsoleSession(SQLModel, table=True):
    """A signed-in web console session (reconciler/console/session_store.py): the cookie holds
    the session's random id, this row its sha256, so that signing out ends it on the server."""

    __tablename__ = "console_sessions"

    id: int | None = Field(default=None, primary_key=True)
    session_digest: str = Field(max_length=64, unique=True)
    token_digest: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
