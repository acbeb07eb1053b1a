"""Erasing one person: `POST /api/v1/users/<user_ref>/forget`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from receiver.store.read_models import RowModel
from reconciler.api.schemas.common import Bool, StrictBody, StrictTrue


class ForgetRequest(StrictBody):
    """`{"confirm": true, "at_provider"?: bool}`."""

    confirm: StrictTrue = Field(description="must be true: erasing cannot be undone")
    at_provider: Bool = Field(False, description="ask providers with a deletion endpoint too")


class ProviderErasure(RowModel):
    """What a provider answered for one session (reconciler/privacy/at_providers.py)."""

    provider: str
    session_id: str
    outcome: Literal["deleted", "not_found", "unsupported", "failed"]
    detail: str | None


class Erasure(RowModel):
    """What was erased."""

    user_ref: str = Field(description="the pseudonym the sessions now carry")
    events: int
    observations: int
    sessions: int
    notifications: int
    audit_entries: int
    at_provider: list[ProviderErasure]
