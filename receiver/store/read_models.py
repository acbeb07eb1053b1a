"""Read models: stored rows as the API, the console and the CLI show them.

Each is a pydantic model read from a table model's row (`from_row`: attribute access, as the
full-stack FastAPI template's `XPublic` models): its fields are columns of `table` by the same
names, checked when the class is defined, so a renamed or dropped column fails at import and a
column is shown by naming it here once. The API's answer models (reconciler/api/schemas/) are
these or extend them, so the OpenAPI document, the API, the console and the CLI agree.

Times are written as `datetime.isoformat()` of the value the database gave (`+00:00`, not
pydantic's `Z`): the API's format since its first version.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema
from sqlmodel import SQLModel

from receiver.canonical import DecidedBy, Source, Status
from receiver.store.models import (
    Disposition,
    EventState,
    InboundEvent,
    ObservationRecord,
    UserRecord,
    VerificationSession,
    table_of,
)


def _isoformat(value: datetime) -> str:
    return value.isoformat()


Timestamp = Annotated[
    datetime,
    PlainSerializer(_isoformat, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A time, written as `datetime.isoformat()` gives it (an ISO 8601 date-time)."""


def _json_text(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


class RowModel(BaseModel):
    """A table model's row as it is shown: validated from the row's attributes (`from_row`)."""

    model_config = ConfigDict(from_attributes=True)

    table: ClassVar[type[SQLModel] | None] = None
    """The table model whose columns this model's fields are (None: no check, as for a model
    of a join, or one that a subclass extends with more than the row)."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A model naming its `table` has only columns of it as fields: checked when defined."""
        super().__pydantic_init_subclass__(**kwargs)
        table = cls.__dict__.get("table")
        if table is None:
            return
        unknown = set(cls.model_fields) - set(table_of(table).columns.keys())
        if unknown:
            raise TypeError(f"{cls.__name__}: not columns of {table.__name__}: {sorted(unknown)}")

    @classmethod
    def from_row(cls, row: object, **more: Any) -> Self:
        """This model of a row (a table model instance, or any object with the attributes),
        with `more` fields that the row does not have (a session's history)."""
        if not more:
            return cls.model_validate(row, from_attributes=True)
        values = {name: getattr(row, name) for name in cls.model_fields if name not in more}
        return cls.model_validate({**values, **more}, from_attributes=True)

    def answer(self) -> dict[str, Any]:
        """The JSON-ready dict the API answers (enums as their values, times as text)."""
        return self.model_dump(mode="json")


class Session(RowModel):
    """A verification session as the API shows it."""

    table: ClassVar[type[SQLModel] | None] = VerificationSession

    provider: str
    session_id: str
    user_ref: str | None
    status: Status
    decided_by: DecidedBy | None
    status_observed_at: Timestamp | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    next_check_at: Timestamp | None
    overdue: bool


UserStatus = Status | Literal["unknown"]
"""A user's status; `unknown` when verihook has never seen the user."""


class UserState(RowModel):
    """A user's verification status and the deciding session."""

    table: ClassVar[type[SQLModel] | None] = UserRecord

    user_ref: str
    status: UserStatus
    decided_by: DecidedBy | None
    provider: str | None
    session_id: str | None
    updated_at: Timestamp | None
    verified_at: Timestamp | None


class HistoryItem(RowModel):
    """One observation of a session (no PII: details stay encrypted)."""

    table: ClassVar[type[SQLModel] | None] = ObservationRecord

    status: Status
    decided_by: DecidedBy
    occurred_at: Timestamp | None
    source: Source
    provider_status: str | None
    reasons: Annotated[list[str], BeforeValidator(_json_text)]  # stored as JSON text
    event_id: int | None
    disposition: Disposition
    recorded_at: Timestamp | None


class EventObservation(RowModel):
    """An observation the event produced."""

    provider: str  # the session's
    session_id: str  # the session's
    status: Status
    decided_by: DecidedBy
    occurred_at: Timestamp | None
    source: Source
    provider_status: str | None
    disposition: Disposition


class Event(RowModel):
    """A stored event's metadata (no payload; errors withhold provider values)."""

    table: ClassVar[type[SQLModel] | None] = InboundEvent

    id: int
    provider: str
    kind: str
    notification: str | None
    state: EventState
    session_id: str | None
    user_ref: str | None
    dedupe_key: str
    received_at: Timestamp
    updated_at: Timestamp
    applied_at: Timestamp | None
    attempts: int
    last_error: str | None
    parse_error: str | None
    key_id: str | None
    purged_at: Timestamp | None
