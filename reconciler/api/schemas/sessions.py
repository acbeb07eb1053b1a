"""Users and sessions: `GET /users/<ref>`, `GET /sessions/<provider>/<id>`, `POST /sessions`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel

from receiver.providers import REGISTRY
from receiver.store.read_models import HistoryItem, Session, UserState
from reconciler.api.schemas.common import Ref, StrictBody, absent

ProviderName: Any = Literal.__getitem__(tuple(sorted(REGISTRY)))
"""One of the providers verihook knows (receiver/providers REGISTRY)."""


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


class User(UserState):
    """A user's verification status, the deciding session, and all the user's sessions."""

    sessions: list[Session]

    @classmethod
    def unknown(cls, user_ref: str, sessions: list[Any]) -> User:
        """A user never seen (status `unknown`), with the sessions registered to them."""
        return cls.model_validate(
            {
                **dict.fromkeys(cls.model_fields),
                "user_ref": user_ref,
                "status": "unknown",
                "sessions": sessions,
            }
        )


class NewSession(StrictBody):
    """`{provider, user_ref, options?}` creates the session at the provider;
    `{provider, session_id, user_ref}` registers one created elsewhere."""

    provider: ProviderName
    user_ref: Ref
    session_id: Ref = absent("register a session made elsewhere (null is refused)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="provider options for a new session"
    )
