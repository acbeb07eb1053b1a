"""Users and sessions: `GET /users/<ref>`, `GET /sessions/<provider>/<id>`, `POST /sessions`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel

from receiver.canonical import DecidedBy, Source, Status
from receiver.providers import REGISTRY
from receiver.store.models import Disposition
from reconciler.api.schemas.common import Ref, StrictBody, absent

ProviderName: Any = Literal.__getitem__(tuple(sorted(REGISTRY)))
"""One of the providers verihook knows (receiver/providers REGISTRY)."""
UserStatus = Status | Literal["unknown"]
"""A user's status; `unknown` when verihook has never seen the user."""


class Session(BaseModel):
    """A verification session as the API shows it."""

    provider: str
    session_id: str
    user_ref: str | None
    status: Status
    decided_by: DecidedBy | None
    status_observed_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    next_check_at: datetime | None
    overdue: bool


class HistoryItem(BaseModel):
    """One observation of a session (no PII: details stay encrypted)."""

    status: Status
    decided_by: DecidedBy
    occurred_at: datetime | None
    source: Source
    provider_status: str | None
    reasons: list[str]
    event_id: int | None
    disposition: Disposition
    recorded_at: datetime | None


class SessionDetail(Session):
    """A session and its whole history."""

    history: list[HistoryItem]


class SessionCreated(BaseModel):
    """A session just created at the provider; send the user to `start_url`."""

    provider: str
    session_id: str
    start_url: str | None


class SessionMade(RootModel[SessionCreated | Session]):
    """Created at the provider (`start_url`), or registered (the session)."""


class User(BaseModel):
    """A user's verification status, the deciding session, and all the user's sessions."""

    user_ref: str
    status: UserStatus
    decided_by: DecidedBy | None
    provider: str | None
    session_id: str | None
    updated_at: datetime | None
    verified_at: datetime | None
    sessions: list[Session]


class NewSession(StrictBody):
    """`{provider, user_ref, options?}` creates the session at the provider;
    `{provider, session_id, user_ref}` registers one created elsewhere."""

    provider: ProviderName
    user_ref: Ref
    session_id: Ref = absent("register a session made elsewhere (null is refused)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="provider options for a new session"
    )
