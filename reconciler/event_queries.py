"""Finding stored events: filters, cursors and a page of event metadata.

Shared by `verihook events list`, the events API, the console and bulk replays. Kept apart from
`reconciler.replay` (which imports the worker's apply path) so that listing events imports only
the store: `verihook events list` starts in a fraction of a second.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import defer
from sqlmodel import Session, col

from receiver.inputs import check_ref
from receiver.settings import ProvidersSettings
from receiver.store.models import EventState, InboundEvent, utcnow
from receiver.store.read_models import Event

PROVIDER_NAMES = tuple(ProvidersSettings.model_fields)
"""Every provider verihook knows (the registry's names, without importing the providers)."""
FILTER_KEYS = ("provider", "state", "session_id", "user_ref", "since", "until", "search")
LIST_KEYS = (*FILTER_KEYS, "limit", "cursor")
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
RELATIVE_TIME = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
MAX_ID = 2**63 - 1
"""Event and replay ids are 64-bit; anything larger names nothing."""
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
CHECK_ID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
"""An idvapi check id (a UUID): its events' dedupe keys are `check:<id>:<content hash>`."""
EVENT_ID_PREFIXES = ("", "evt:")
"""How a provider's own event id appears in a dedupe key (Contiguity's `evt_…` → `evt:evt_…`)."""


class FilterError(ValueError):
    """A filter or list parameter that is not valid; the message says what is expected."""


class NotFound(LookupError):
    """No event or replay has this id."""


def parse_time(name: str, value: Any, now: datetime) -> datetime:
    """An ISO 8601 time (naive = UTC) or an age such as `30m`, `2h`, `7d` before `now`."""
    if not isinstance(value, str) or not value.strip():
        raise FilterError(f"{name} must be an ISO 8601 time or an age like 30m, 2h, 7d")
    try:
        relative = RELATIVE_TIME.match(value)
        if relative:
            amount, unit = int(relative.group(1)), relative.group(2)
            return now - timedelta(**{UNITS[unit]: amount})
        parsed = datetime.fromisoformat(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise FilterError(
            f"{name} must be an ISO 8601 time (2024-05-01T12:00:00Z) or an age like 30m, 2h, 7d"
        ) from exc


def _names(name: str, value: Any, allowed: Iterable[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise FilterError(f"{name} must be a string (comma-separated) or a list of strings")
    allowed = sorted(allowed)
    found = []
    for item in items:
        if not isinstance(item, str) or item.strip() not in allowed:
            raise FilterError(f"{name} must be one of {', '.join(allowed)}")
        found.append(item.strip())
    return tuple(sorted(set(found)))


def _ref(name: str, value: Any) -> str:
    """A session id or user ref filter, by the one rule of receiver/inputs.py."""
    try:
        return check_ref(value, name)
    except ValueError as exc:
        raise FilterError(str(exc)) from exc


@dataclass(frozen=True)
class EventFilter:
    """Which stored events: by provider(s), state(s), session, user, received_at window, and a
    search term (an event id, a provider event id, a dedupe key or a session id)."""

    providers: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    session_id: str | None = None
    user_ref: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None

    @classmethod
    def parse(cls, values: Mapping[str, Any], *, now: datetime | None = None) -> EventFilter:
        """Validate filter values (query parameters or a JSON object); FilterError if bad."""
        unknown = sorted(set(values) - set(FILTER_KEYS))
        if unknown:
            raise FilterError(f"unknown filter {', '.join(unknown)}; use {', '.join(FILTER_KEYS)}")
        now = now or utcnow()
        given = {k: v for k, v in values.items() if v is not None and v != ""}
        flt = cls(
            providers=_names("provider", given["provider"], PROVIDER_NAMES)
            if "provider" in given
            else (),
            states=_names("state", given["state"], [s.value for s in EventState])
            if "state" in given
            else (),
            session_id=_ref("session_id", given["session_id"]) if "session_id" in given else None,
            user_ref=_ref("user_ref", given["user_ref"]) if "user_ref" in given else None,
            since=parse_time("since", given["since"], now) if "since" in given else None,
            until=parse_time("until", given["until"], now) if "until" in given else None,
            search=_ref("search", given["search"]).strip() if "search" in given else None,
        )
        if flt.since and flt.until and flt.since >= flt.until:
            raise FilterError("since must be before until")
        return flt

    def is_empty(self) -> bool:
        """True when the filter matches every event."""
        return self == EventFilter()

    def to_json(self) -> dict[str, Any]:
        """The filter with absolute times (a relative `since` is resolved once, here); `search`
        only when given."""
        found = {
            "provider": list(self.providers) or None,
            "state": list(self.states) or None,
            "session_id": self.session_id,
            "user_ref": self.user_ref,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
        return {**found, "search": self.search} if self.search else found

    def describe(self) -> str:
        """A short human description (for audit reasons and CLI output)."""
        parts = [
            f"{key}={','.join(value) if isinstance(value, list) else value}"
            for key, value in self.to_json().items()
            if value
        ]
        return " ".join(parts) or "all events"

    def clauses(self) -> list[Any]:
        """SQL conditions on InboundEvent."""
        found: list[Any] = []
        if self.providers:
            found.append(col(InboundEvent.provider).in_(self.providers))
        if self.states:
            found.append(col(InboundEvent.state).in_(self.states))
        if self.session_id is not None:
            found.append(col(InboundEvent.session_id) == self.session_id)
        if self.user_ref is not None:
            found.append(col(InboundEvent.user_ref) == self.user_ref)
        if self.since is not None:
            found.append(col(InboundEvent.received_at) >= self.since)
        if self.until is not None:
            found.append(col(InboundEvent.received_at) < self.until)
        if self.search:
            found.append(search_clause(self.search))
        return found


def search_clause(term: str) -> Any:
    """Events whose id, dedupe key, provider event id or session id is `term`.

    Each branch names the providers so that PostgreSQL can use the (provider, dedupe_key) and
    (provider, session_id) indexes rather than read the whole table.
    """
    providers = col(InboundEvent.provider).in_(PROVIDER_NAMES)
    keys = [prefix + term for prefix in EVENT_ID_PREFIXES]
    branches = [
        and_(providers, col(InboundEvent.dedupe_key).in_(keys)),
        and_(providers, col(InboundEvent.session_id) == term),
    ]
    if CHECK_ID.match(term):
        pattern = f"check:{term}:%"  # a UUID: no LIKE wildcard in it
        branches.append(
            and_(col(InboundEvent.provider) == "idvapi", col(InboundEvent.dedupe_key).like(pattern))
        )
    if term.isascii() and term.isdigit() and len(term) <= 18:
        branches.append(col(InboundEvent.id) == int(term))
    return or_(*branches)


def encode_cursor(event_id: int) -> str:
    """An opaque cursor: base64 of the last listed id."""
    return base64.urlsafe_b64encode(str(event_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id behind a cursor; FilterError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        value = int(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise FilterError("cursor is not valid (use next_cursor from the previous page)") from exc
    if not 1 <= value <= MAX_ID or not raw.isdigit():
        raise FilterError("cursor is not valid (use next_cursor from the previous page)")
    return value


def parse_limit(value: Any) -> int:
    """A page size: 1..MAX_LIMIT, DEFAULT_LIMIT when not given."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except (TypeError, ValueError) as exc:
        raise FilterError(f"limit must be an integer from 1 to {MAX_LIMIT}") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise FilterError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return limit


@dataclass(frozen=True)
class ListRequest:
    """A validated `GET /api/v1/events` (or `verihook events list`)."""

    filter: EventFilter
    limit: int = DEFAULT_LIMIT
    before_id: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> ListRequest:
        """Validate query parameters; FilterError names the first bad one."""
        unknown = sorted(set(params) - set(LIST_KEYS))
        if unknown:
            raise FilterError(f"unknown parameter {', '.join(unknown)}; use {', '.join(LIST_KEYS)}")
        cursor = params.get("cursor")
        return cls(
            filter=EventFilter.parse({k: v for k, v in params.items() if k in FILTER_KEYS}),
            limit=parse_limit(params.get("limit")),
            before_id=decode_cursor(cursor) if cursor else None,
        )


def list_events(db: Session, request: ListRequest) -> tuple[list[InboundEvent], str | None]:
    """A page of events, newest id first, and the cursor of the next page (None at the end)."""
    query = (
        select(InboundEvent)
        .options(defer(InboundEvent.payload_blob))  # type: ignore[arg-type]  # sqlmodel types it as bytes
        .where(*request.filter.clauses())
        .order_by(col(InboundEvent.id).desc())
        .limit(request.limit + 1)
    )
    if request.before_id is not None:
        query = query.where(col(InboundEvent.id) < request.before_id)
    rows = list(db.execute(query).scalars())
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    return rows, encode_cursor(rows[-1].id) if more and rows else None


def iso_time(value: datetime | None) -> str | None:
    """A time as ISO 8601, None for None."""
    return value.isoformat() if value is not None else None


def event_json(event: InboundEvent) -> dict[str, Any]:
    """An event's metadata (no payload; the errors withhold provider values)."""
    return Event.from_row(event).answer()
