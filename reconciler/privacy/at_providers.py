"""Ask providers to delete a person's data on their side, on request (`users forget --at-provider`).

Only providers whose documented API has a deletion endpoint take part: docverify's
`DELETE /api/v1/verification/{sid}` ("deletes the personal user data collected during the
verification process"). iDenfy's documents we hold describe no deletion endpoint, so nothing is
called for iDenfy; contiguity, idvapi and nevis document none either. Each session's outcome is
reported, and a provider that fails does not stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import col

from receiver.providers.base import DeletesProviderData
from receiver.providers.http import ProviderRejected, ProviderUnavailable, shared_client
from receiver.services import Services
from receiver.store.db import transaction
from receiver.store.models import VerificationSession
from reconciler.privacy.lifecycle import pseudonym


@dataclass(frozen=True)
class ProviderErasure:
    """What the provider answered for one session: deleted, not_found, unsupported or failed."""

    provider: str
    session_id: str
    outcome: str
    detail: str = ""


def sessions_of(services: Services, user_ref: str) -> list[tuple[str, str]]:
    """(provider, session id) of every session of the user, oldest first; also once the user
    was forgotten (their sessions then carry the pseudonym), so that a failed call can be retried.
    """
    refs = [user_ref, pseudonym(user_ref)]
    with transaction(services.engine) as db:
        rows = db.execute(
            select(col(VerificationSession.provider), col(VerificationSession.session_id))
            .where(col(VerificationSession.user_ref).in_(refs))
            .order_by(col(VerificationSession.id))
        ).all()
    return [(provider, session_id) for provider, session_id in rows]


def erase_at_providers(
    services: Services, sessions: list[tuple[str, str]]
) -> list[ProviderErasure]:
    """Call the deletion endpoint of each session's provider where one exists."""
    http = shared_client()
    outcomes = []
    for provider_name, session_id in sessions:
        provider = services.providers.get(provider_name)
        client = provider.client(http) if provider is not None and provider.is_enabled() else None
        if not isinstance(client, DeletesProviderData):
            outcomes.append(ProviderErasure(provider_name, session_id, "unsupported"))
            continue
        try:
            deleted = client.delete_session(session_id)
        except (ProviderRejected, ProviderUnavailable) as exc:
            outcomes.append(ProviderErasure(provider_name, session_id, "failed", str(exc)))
            continue
        outcome = "deleted" if deleted else "not_found"
        outcomes.append(ProviderErasure(provider_name, session_id, outcome))
    return outcomes
