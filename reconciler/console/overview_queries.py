"""What the console reads that no shared query function gives yet: the overview's numbers (read
by the same DatabaseCollector that serves /metrics), the scheduler leader, a user's sessions with
their history (the API's own answer, `SessionDetail`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlmodel import col

from receiver.metrics import DatabaseCollector
from receiver.services import Services
from receiver.store.db import transaction
from receiver.store.models import EventState, ObservationRecord, UserRecord, VerificationSession
from receiver.store.read_models import UserState
from reconciler.api.schemas.sessions import SessionDetail
from reconciler.leader import LEADER_KEY


@dataclass
class Overview:
    """The numbers on the overview page; `available` is False when the database did not answer."""

    available: bool = False
    by_state: dict[str, int] = field(default_factory=dict)
    queue_depth: int = 0
    oldest_ready_seconds: float = 0.0
    overdue_sessions: int = 0


def overview(services: Services) -> Overview:
    """Events by state, queue depth, oldest ready event age, overdue sessions (as /metrics)."""
    found = Overview(by_state={state.value: 0 for state in EventState})
    for family in DatabaseCollector(services.engine).collect():
        found.available = True
        for sample in family.samples:
            if family.name == "verihook_events":
                found.by_state[sample.labels["state"]] = int(sample.value)
            elif family.name == "verihook_queue_depth":
                found.queue_depth = int(sample.value)
            elif family.name == "verihook_oldest_ready_event_age_seconds":
                found.oldest_ready_seconds = float(sample.value)
            elif family.name == "verihook_overdue_sessions":
                found.overdue_sessions = int(sample.value)
    return found


@dataclass(frozen=True)
class Leader:
    """Who leads the schedulers: state is `leading`, `none` or `unreachable` (Redis)."""

    state: str
    host: str | None = None
    pid: str | None = None
    token: str | None = None
    expires_in_seconds: float | None = None


def scheduler_leader(services: Services) -> Leader:
    """The leader lock's holder (`host:pid:random`, reconciler/leader.py) and its time left."""
    key = LEADER_KEY.format(queue=services.settings.queue_name)
    try:
        value = services.redis.get(key)
        left_ms = services.redis.pttl(key) if value is not None else None
    except (RedisError, OSError):
        return Leader("unreachable")
    if value is None:
        return Leader("none")
    holder = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    host, pid, token = (holder.rsplit(":", 2) + ["", ""])[:3]
    left = left_ms / 1000 if isinstance(left_ms, int) and left_ms >= 0 else None
    return Leader("leading", host or holder, pid or None, token or None, left)


@dataclass
class Timeline:
    """A user's record and sessions, each session with its history (oldest first)."""

    user: UserState | None
    sessions: list[dict[str, Any]]


def user_timeline(services: Services, user_ref: str) -> Timeline:
    """The user's status record and every session of theirs with its full history."""
    with transaction(services.engine) as db:
        record = db.get(UserRecord, user_ref)
        rows = list(
            db.execute(
                select(VerificationSession)
                .where(col(VerificationSession.user_ref) == user_ref)
                .order_by(col(VerificationSession.created_at), col(VerificationSession.id))
            ).scalars()
        )
        history: dict[int, list[ObservationRecord]] = {row.id: [] for row in rows if row.id}
        if history:
            for observation in db.execute(
                select(ObservationRecord)
                .where(col(ObservationRecord.session_pk).in_(sorted(history)))
                .order_by(col(ObservationRecord.occurred_at), col(ObservationRecord.id))
            ).scalars():
                history[observation.session_pk].append(observation)
    return Timeline(
        user=UserState.from_row(record) if record is not None else None,
        sessions=[
            SessionDetail.from_row(row, history=history.get(row.id or 0, [])).answer()
            for row in rows
        ],
    )
