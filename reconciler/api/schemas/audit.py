"""The audit history: `GET /api/v1/audit`, `/audit/as-of`, `/audit/verify`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from receiver.canonical import DecidedBy
from receiver.store.read_models import UserStatus
from reconciler.api.schemas.common import DomainChecked, Instant, Ref, absent
from reconciler.audit import queries as aq

Format: Any = Literal.__getitem__(aq.FORMATS)
"""json (a page), csv or jsonl (a streamed export)."""


def _integer(values: dict[str, Any], name: str) -> None:
    raw = values.get(name)
    if raw is not None and (not raw.isascii() or not raw.isdigit() or len(raw) > 18):
        raise aq.AuditQueryError(f"{name} must be a non-negative integer")


class AuditQuery(DomainChecked):
    """Filters, and a page (json) or an export format (`AuditFilter.parse` decides)."""

    REPEATED: ClassVar[Literal["first"]] = "first"

    user_ref: Ref = absent("only this user's entries")
    provider: Ref = absent("only this provider's entries")
    session_id: Ref = absent("only this session's entries")
    since: Instant = absent("entries at or after this ISO-8601 time")
    until: Instant = absent("entries before this time (exclusive)")
    format: Format = Field("json", description="json, csv or jsonl")
    limit: int = Field(aq.DEFAULT_PAGE, ge=1, le=aq.MAX_PAGE, description="json: per page")
    cursor: int = Field(0, ge=0, le=aq.MAX_SEQ, description="json: continue after this seq")

    @classmethod
    def check(cls, values: dict[str, Any]) -> aq.AuditFilter:
        """The same parser as `verihook audit query` and the console's audit page."""
        flt = aq.AuditFilter.parse({k: values.get(k) for k in aq.FILTER_NAMES})
        if values.get("format", "json") not in aq.FORMATS:
            raise aq.AuditQueryError(f"format must be one of {', '.join(aq.FORMATS)}")
        _integer(values, "limit")
        _integer(values, "cursor")
        return flt


class AsOfQuery(DomainChecked):
    """A user and a moment."""

    REPEATED: ClassVar[Literal["first"]] = "first"

    user_ref: Ref = Field(description="the user")
    at: Instant = Field(description="ISO-8601 time")

    @classmethod
    def check(cls, values: dict[str, Any]) -> tuple[str, datetime]:
        """(user ref, the moment as aware UTC)."""
        user_ref, at = values.get("user_ref"), values.get("at")
        if user_ref is None or at is None:
            raise aq.AuditQueryError("user_ref and at are required")
        return aq.check_ref(user_ref, "user_ref"), aq.parse_instant(at, "at")


class AuditEntry(BaseModel):
    """One entry of the hash-chained audit history."""

    seq: int = Field(ge=1)
    at: datetime
    actor: str
    source: str
    subject: str = Field(description="session, user, or what an operator acted on")
    provider: str | None
    session_id: str | None
    user_ref: str | None = Field(description="null once the person was erased")
    user_digest: str | None = Field(description="sha256 of the user ref")
    previous_status: str | None
    new_status: str | None
    decided_by: str | None
    event_id: int | None
    reason: str
    prev_hash: str
    entry_hash: str


class AuditPage(BaseModel):
    """A page of entries in chain order."""

    entries: list[AuditEntry]
    next_cursor: int | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class AuditVerify(BaseModel):
    """The verdict of walking the chain."""

    ok: bool
    entries: int = Field(description="entries read")
    head: str = Field(description="hash of the last entry that chains")
    first_bad: int | None = Field(description="seq of the first entry that does not chain")
    problem: str | None


class AsOf(BaseModel):
    """A user's status at a moment and the entries that made it so."""

    user_ref: str
    at: datetime
    status: UserStatus
    decided_by: DecidedBy | None
    provider: str | None
    session_id: str | None
    entries: list[AuditEntry]
