"""Looking up one verification session by its natural key (provider, provider's session id)."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from receiver.store.models import VerificationSession


def session_row(db: Session, provider: str, session_id: str) -> VerificationSession | None:
    """The session `session_id` of `provider`, or None when it is not known."""
    return db.execute(
        select(VerificationSession).where(
            col(VerificationSession.provider) == provider,
            col(VerificationSession.session_id) == session_id,
        )
    ).scalar_one_or_none()
