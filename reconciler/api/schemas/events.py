"""Stored events and replays: `/api/v1/events…` and `/api/v1/replays…`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from receiver.canonical import DecidedBy, Source, Status
from receiver.store.models import EventState
from receiver.store.read_models import Event, EventObservation
from receiver.store.replay_models import ReplayState
from reconciler.api.schemas.common import Bool, DomainChecked, Ref, StrictBody, Text, absent
from reconciler.event_queries import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    PROVIDER_NAMES,
    EventFilter,
    ListRequest,
    parse_limit,
)

Names = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""One name or several, comma-separated."""
PROVIDERS = f"only these providers (comma-separated): {', '.join(sorted(PROVIDER_NAMES))}"
STATES = f"only these states (comma-separated): {', '.join(s.value for s in EventState)}"
TIME = "ISO 8601 time or an age (30m, 2h, 7d)"
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="how many per page")]


class EventsQuery(DomainChecked):
    """`GET /api/v1/events`: filters, page size and cursor (`ListRequest.parse` decides)."""

    provider: Names = absent(PROVIDERS)
    state: Names = absent(STATES)
    session_id: Ref = absent("only this provider session")
    user_ref: Ref = absent("only this user")
    since: Text = absent(f"received at or after: {TIME}")
    until: Text = absent(f"received before: {TIME}")
    limit: Limit = DEFAULT_LIMIT
    cursor: Text = absent("next_cursor of the previous page")

    @classmethod
    def check(cls, values: dict[str, Any]) -> ListRequest:
        """The same parser as `verihook events list` and the console's events page."""
        return ListRequest.parse(values)


class LimitQuery(DomainChecked):
    """A page size."""

    limit: Limit = DEFAULT_LIMIT

    @classmethod
    def check(cls, values: dict[str, Any]) -> int:
        """`parse_limit`, as the CLI."""
        return parse_limit(values.get("limit"))


class ReplayOne(StrictBody):
    """`POST /events/<id>/replay`: no body, or `{"dry_run": bool}`."""

    dry_run: Bool = Field(False, description="say what would change, change nothing")


class ReplayFilter(DomainChecked):
    """Which events a bulk replay takes (`EventFilter.parse` decides); at least one filter."""

    model_config = ConfigDict(extra="forbid")
    REPEATED: ClassVar[Literal["keep"]] = "keep"

    provider: Names | list[Names] | None = Field(None, description=PROVIDERS)
    state: Names | list[Names] | None = Field(None, description=STATES)
    session_id: Ref | None = None
    user_ref: Ref | None = None
    since: Text | None = Field(None, description=TIME)
    until: Text | None = Field(None, description=TIME)

    @classmethod
    def check(cls, values: dict[str, Any]) -> EventFilter:
        """The same parser as `verihook replay`."""
        return EventFilter.parse(values)


class ReplayRequest(StrictBody):
    """`POST /replays`: a filter and whether to dry-run (the default) or start it."""

    model_config = ConfigDict(extra="forbid")

    filter: ReplayFilter
    dry_run: Bool = Field(True, description="false: store and queue the replay")


class EventPage(BaseModel):
    """A page of events, newest first."""

    events: list[Event]
    next_cursor: str | None
    limit: int


class Delivery(BaseModel):
    """The delivery as received: decrypted for operators, names and sizes for auditors."""

    model_config = ConfigDict(extra="allow")

    redacted: bool
    available: bool
    error: str | None = Field(None, description="why the payload cannot be shown")
    source: Source | None = None
    notification: str | None = None
    received_at: str | None = None
    body_bytes: int | None = None
    header_names: list[str] | None = Field(None, description="auditors")
    query_names: list[str] | None = Field(None, description="auditors")
    headers: list[list[str]] | None = Field(None, description="operators: [name, value]")
    query: list[list[str]] | None = Field(None, description="operators: [name, value]")
    body: str | None = Field(None, description="operators")


class EventDetail(Event):
    """An event, its delivery and its observations."""

    delivery: Delivery
    observations: list[EventObservation]


class StatusPair(BaseModel):
    """A session's or user's (status, decided_by)."""

    status: Status
    decided_by: DecidedBy


class Change(BaseModel):
    """A session or user whose status changes (with its identifying fields)."""

    model_config = ConfigDict(extra="allow")

    before: StatusPair | None = Field(alias="from")
    after: StatusPair | None = Field(alias="to")


class Effect(BaseModel):
    """What a replay did (or would do): counts, and the sessions and users that change."""

    events: int
    applied: int
    superseded: int
    quarantined: int
    failed: int
    deferred: int
    sessions_changed: int
    users_changed: int
    sessions: list[Change]
    users: list[Change]
    truncated: bool = Field(description="more changed than are listed")
    failures: list[dict[str, Any]]


class Replay(BaseModel):
    """A bulk replay: state, progress (0..1) and its summary so far."""

    id: int
    state: ReplayState
    total: int
    done: int
    progress: float = Field(ge=0, le=1)
    filter: dict[str, Any]
    summary: Effect | None = Field(None, description="left out of lists")
    last_event_id: int | None
    max_event_id: int | None
    error: str | None
    created_by: str | None
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    url: str | None = Field(None, description="where to follow a replay just started")


class ReplayList(BaseModel):
    """The newest bulk replays (without their summaries)."""

    replays: list[Replay]
