"""Console sign-ins kept on the server, so that signing out (or expiry) ends them everywhere.

Signing in stores a row (`console_sessions`) holding the sha256 of a new random session id, the
digest of the token that signed in, and when the session expires
(`VERIHOOK_CONSOLE_SESSION_SECONDS`, default 12 h); the signed cookie carries the session id.
Every console request looks the id up again: a row that is gone (signed out) or past its expiry
ends the session, in every gunicorn worker and process at once, however the cookie was kept.
The caller passes an engine; each function is one transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, select
from sqlmodel import col

from receiver.store.db import transaction
from receiver.store.models import utcnow
from receiver.store.token_models import ConsoleSession


def session_digest(session_id: str) -> str:
    """How a session id is stored and looked up: its sha256 (the id itself is never stored)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(
    engine: Engine, token_digest: str, lifetime_seconds: int, *, now: datetime | None = None
) -> str:
    """Store a new session for the token with digest `token_digest`; return its id (for the
    cookie only). Sessions already expired are deleted on the way."""
    now = now or utcnow()
    session_id = secrets.token_urlsafe(32)
    with transaction(engine) as db:
        db.execute(delete(ConsoleSession).where(col(ConsoleSession.expires_at) <= now))
        db.add(
            ConsoleSession(
                session_digest=session_digest(session_id),
                token_digest=token_digest,
                created_at=now,
                expires_at=now + timedelta(seconds=lifetime_seconds),
            )
        )
    return session_id


def session_token(engine: Engine, session_id: str, *, now: datetime | None = None) -> str | None:
    """The token digest of a live session, or None when it was closed or has expired."""
    query = select(col(ConsoleSession.token_digest)).where(
        col(ConsoleSession.session_digest) == session_digest(session_id),
        col(ConsoleSession.expires_at) > (now or utcnow()),
    )
    with transaction(engine) as db:
        found: str | None = db.execute(query).scalar_one_or_none()
        return found


def close_session(engine: Engine, session_id: str) -> bool:
    """End a session (signing out): True when there was one to end."""
    with transaction(engine) as db:
        result = db.execute(
            delete(ConsoleSession).where(
                col(ConsoleSession.session_digest) == session_digest(session_id)
            )
        )
        return bool(cast(CursorResult[Any], result).rowcount)  # a DELETE's result is one
