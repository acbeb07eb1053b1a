"""Listing verification sessions with filters: the store only.

Shared by `verihook sessions list` and the console's overview. Kept apart from
`reconciler.session_queries` (which imports the poller and the providers' HTTP clients) so that
listing sessions needs only a database engine and starts quickly.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Engine, select
from sqlmodel import col

from receiver.store.db import transaction
from receiver.store.models import VerificationSession


def list_sessions(
    engine: Engine,
    *,
    provider: str | None = None,
    status: str | Collection[str] | None = None,
    user_ref: str | None = None,
    overdue: bool = False,
    limit: int = 50,
) -> list[VerificationSession]:
    """Sessions matching the filters (`status`: one or several), most recently updated first."""
    query = select(VerificationSession).order_by(col(VerificationSession.updated_at).desc())
    if provider:
        query = query.where(col(VerificationSession.provider) == provider)
    if status:
        wanted = [status] if isinstance(status, str) else list(status)
        query = query.where(col(VerificationSession.status).in_(wanted))
    if user_ref:
        query = query.where(col(VerificationSession.user_ref) == user_ref)
    if overdue:
        query = query.where(col(VerificationSession.overdue).is_(True))
    with transaction(engine) as db:
        return list(db.execute(query.limit(limit)).scalars())
