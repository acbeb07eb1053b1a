"""Canonical vocabulary shared by every provider: statuses, their classes, and Observation.

Pure: no I/O, no Flask, no database. DESIGN §2 is the contract for the names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from functools import cached_property

from receiver.exceptions import ParseError


class Status(StrEnum):
    """A verification session's canonical status."""

    PENDING = "pending"
    PROCESSING = "processing"
    REQUIRES_INPUT = "requires_input"
    REVIEW = "review"
    VERIFIED = "verified"
    REJECTED = "rejected"
    CANCELED = "canceled"
    EXPIRED = "expired"


class DecidedBy(StrEnum):
    """Who made a decision: the provider's automation or a human reviewer."""

    AUTO = "auto"
    MANUAL = "manual"


class Source(StrEnum):
    """How an observation reached us."""

    WEBHOOK = "webhook"
    POLL = "poll"
    CALLBACK = "callback"


class StatusClass(IntEnum):
    """Ordering classes (DESIGN §2): manual decision > auto decision > ended > in-flight.

    An ended session (canceled, expired) stopped without a verdict, so an expiry or a
    cancellation never replaces a verdict, whatever the times: iDenfy sends its expiry webhook
    after the token's lifetime, often after the decision.
    """

    IN_FLIGHT = 0
    ENDED = 1
    AUTO_DECISION = 2
    MANUAL_DECISION = 3


IN_FLIGHT_STATUSES = frozenset({Status.PENDING, Status.PROCESSING, Status.REQUIRES_INPUT})
ENDED_STATUSES = frozenset({Status.CANCELED, Status.EXPIRED})
VERDICTS = frozenset({Status.VERIFIED, Status.REJECTED})
TERMINAL_STATUSES = VERDICTS | ENDED_STATUSES


def status_class(status: Status, decided_by: DecidedBy) -> StatusClass:
    """Classify a status for the ordering rule."""
    if status in IN_FLIGHT_STATUSES:
        return StatusClass.IN_FLIGHT
    if status in ENDED_STATUSES:
        return StatusClass.ENDED
    if decided_by is DecidedBy.MANUAL and status in VERDICTS:
        return StatusClass.MANUAL_DECISION
    return StatusClass.AUTO_DECISION


def is_terminal(status: Status) -> bool:
    """True when no further provider change is expected for a session in this status."""
    return status in TERMINAL_STATUSES


def utc(ts: datetime) -> datetime:
    """Return `ts` as an aware UTC datetime (naive values are taken to be UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


EARLIEST_TIME = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST_TIME = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
"""The provider times we accept: a day inside datetime's range, so that the time shifted to any
UTC offset (a database session's time zone, a local rendering) can still be represented."""


def from_unix(seconds: float, *, field: str = "time") -> datetime:
    """Convert a provider's unix seconds (its `field`) to an aware UTC datetime.

    Raises ParseError (the delivery is quarantined) for NaN, infinities and times outside
    EARLIEST_TIME..LATEST_TIME, never OverflowError, ValueError or OSError.
    """
    try:
        moment = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, ValueError, OSError) as exc:
        raise ParseError(f"field {field!r} is not a representable unix time") from exc
    return provider_time(moment, field=field)


def provider_time(ts: datetime, *, field: str = "time") -> datetime:
    """A provider's datetime (its `field`) in UTC; ParseError when it is out of range.

    An ISO time such as `0001-01-01T00:00:00+14:00` parses but has no UTC equivalent: it must
    fail here, at parse time, not later in the worker.
    """
    try:
        moment = utc(ts)
    except OverflowError:
        moment = None
    if moment is None or not EARLIEST_TIME <= moment <= LATEST_TIME:
        raise ParseError(f"field {field!r} is outside the representable time range")
    return moment


@dataclass(frozen=True)
class Observation:
    """One provider statement about one session.

    `reasons` holds non-PII codes (error codes, recommendation, tags); `details` holds whatever
    else the provider said that may be PII (it is stored encrypted, never logged).
    """

    provider: str
    session_id: str
    status: Status
    occurred_at: datetime
    source: Source
    decided_by: DecidedBy = DecidedBy.AUTO
    user_ref: str | None = None
    provider_status: str = ""
    reasons: tuple[str, ...] = ()
    details: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    final: bool | None = field(default=None, compare=False)
    """The provider says nothing more will change (None: decided by the status alone)."""

    def __post_init__(self) -> None:
        """Coerce plain strings and lists to the enum and tuple types (frozen-safe)."""
        object.__setattr__(self, "status", Status(self.status))
        object.__setattr__(self, "source", Source(self.source))
        object.__setattr__(self, "decided_by", DecidedBy(self.decided_by))
        object.__setattr__(self, "reasons", tuple(self.reasons))

    @property
    def status_class(self) -> StatusClass:
        """This observation's class under the ordering rule."""
        return status_class(self.status, self.decided_by)

    @property
    def is_final(self) -> bool:
        """True when the provider will not change this session any more (e.g. a final review)."""
        return self.final if self.final is not None else is_terminal(self.status)

    @cached_property
    def key(self) -> str:
        """A deterministic identity: equal statements about a session share it.

        It is the tie-break of the ordering rule too (DESIGN §2), so it must depend only on what
        the provider said, never on when or how often we heard it.
        """
        material = json.dumps(
            [
                self.provider,
                self.session_id,
                self.status.value,
                self.decided_by.value,
                utc(self.occurred_at).isoformat(),
                self.provider_status,
                sorted(set(self.reasons)),
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(material.encode()).hexdigest()

    def to_json(self) -> dict[str, object]:
        """A JSON-safe dict (details included; callers encrypt it before storing)."""
        data = asdict(self)
        data["occurred_at"] = utc(self.occurred_at).isoformat()
        data["reasons"] = list(self.reasons)
        for name in ("status", "source", "decided_by"):
            data[name] = str(data[name])
        return data


SYNTHETIC_EXPIRY = "verihook_expired"
"""Query marker of the synthetic poll event that expires a poll-only session past its TTL (the
poller stores it; apply reads it back as `expiry_observation`)."""


def expiry_observation(provider: str, session_id: str, received_at: datetime) -> Observation:
    """The synthetic observation that ends a poll-only session past its TTL."""
    return Observation(
        provider=provider,
        session_id=session_id,
        status=Status.EXPIRED,
        occurred_at=received_at,
        source=Source.POLL,
        provider_status="ttl_expired",
        reasons=("ttl_expired",),
    )
