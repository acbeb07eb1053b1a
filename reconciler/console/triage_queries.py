"""What the console's triage pages read: the extra columns of an events page (what each event
resulted in, how often the provider delivered it), what needs attention (failed and quarantined
events, overdue sessions), one session with its history and recent checks, and the refused
deliveries by provider and reason.

Formatting follows the API's (its read models, receiver/store/read_models.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import defer
from sqlmodel import Session, SQLModel, col

from receiver.canonical import Status, utc
from receiver.store.db import transaction
from receiver.store.models import (
    EventState,
    InboundEvent,
    ObservationRecord,
    VerificationSession,
    utcnow,
)
from receiver.store.read_models import Session as ReadSession
from receiver.store.read_models import Timestamp
from receiver.store.refusals import refusals_since
from receiver.store.sessions import session_row
from receiver.store.trace_models import DeliveryCount, SessionPoll
from reconciler.api.views import history_json, session_json
from reconciler.event_queries import event_json, iso_time
from reconciler.planner import Mode, Policy, SessionFacts, overdue_reason
from reconciler.session_listing import list_sessions

ATTENTION_STATES = (EventState.FAILED.value, EventState.QUARANTINED.value)
REFUSALS_WINDOW = timedelta(hours=24)


def results_of(db: Session, ids: list[int]) -> dict[int, list[dict[str, str]]]:
    """Per event id, the statuses its observations gave (status, decided_by, disposition)."""
    found: dict[int, list[dict[str, str]]] = {i: [] for i in ids}
    if ids:
        for event_id, status, decided_by, disposition in db.execute(
            select(
                col(ObservationRecord.event_id),
                col(ObservationRecord.status),
                col(ObservationRecord.decided_by),
                col(ObservationRecord.disposition),
            )
            .where(col(ObservationRecord.event_id).in_(ids))
            .order_by(col(ObservationRecord.id))
        ):
            found[event_id].append(
                {"status": status, "decided_by": decided_by, "disposition": disposition}
            )
    return found


def deliveries_of(db: Session, ids: list[int]) -> dict[int, int]:
    """Per event id, how many times the provider delivered it (1 + the repeats counted)."""
    found = dict.fromkeys(ids, 1)
    if ids:
        for event_id, repeats in db.execute(
            select(col(DeliveryCount.event_id), col(DeliveryCount.duplicates)).where(
                col(DeliveryCount.event_id).in_(ids)
            )
        ):
            found[event_id] = 1 + repeats
    return found


def last_repeat_at(db: Session, event_id: int) -> datetime | None:
    """When the provider last delivered the event again (None: never)."""
    row = db.get(DeliveryCount, event_id)
    return row.last_at if row is not None else None


@dataclass
class Attention:
    """Failed and quarantined events and overdue sessions, newest first, and their totals."""

    items: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)


def needs_attention(engine: Engine, limit: int) -> Attention:
    """The newest `limit` things that need a person: failed or quarantined events (by when they
    arrived) and overdue sessions (by when they were last updated: flagged, or news)."""
    with transaction(engine) as db:
        events = db.execute(
            select(InboundEvent)
            .options(defer(InboundEvent.payload_blob))  # type: ignore[arg-type]  # sqlmodel types it as bytes
            .where(col(InboundEvent.state).in_(ATTENTION_STATES))
            .order_by(col(InboundEvent.received_at).desc(), col(InboundEvent.id).desc())
            .limit(limit)
        ).scalars()
        items = [{"item": "event", "at": utc(e.received_at), **event_json(e)} for e in events]
        totals = {
            state: int(count)
            for state, count in db.execute(
                select(col(InboundEvent.state), func.count())
                .where(col(InboundEvent.state).in_(ATTENTION_STATES))
                .group_by(InboundEvent.state)
            )
        }
    overdue = list_sessions(engine, overdue=True, limit=limit)
    items += [{"item": "session", "at": utc(s.updated_at), **session_json(s)} for s in overdue]
    items.sort(key=lambda item: item["at"], reverse=True)
    return Attention(
        items=items[:limit],
        totals={
            **{state: totals.get(state, 0) for state in ATTENTION_STATES},
            "overdue": count_overdue(engine),
        },
    )


def count_overdue(engine: Engine) -> int:
    """How many sessions are flagged overdue."""
    from receiver.store.models import VerificationSession

    with transaction(engine) as db:
        return int(
            db.execute(
                select(func.count())
                .select_from(VerificationSession)
                .where(col(VerificationSession.overdue).is_(True))
            ).scalar_one()
        )


class OnCallSession(ReadSession):
    """A session as its console page shows it: the API's answer and the scheduler's columns."""

    table: ClassVar[type[SQLModel] | None] = VerificationSession

    settled: bool
    poll_attempts: int
    last_polled_at: Timestamp | None


def session_detail(
    engine: Engine, provider: str, session_id: str, policy: Policy | None
) -> dict[str, Any] | None:
    """A session with its history (oldest first), its recent checks (newest first), when it is
    checked next and why, and (when flagged) why it is overdue; None when unknown."""
    with transaction(engine) as db:
        row = session_row(db, provider, session_id)
        if row is None or row.id is None:
            return None
        history = [
            history_json(o)
            for o in db.execute(
                select(ObservationRecord)
                .where(col(ObservationRecord.session_pk) == row.id)
                .order_by(col(ObservationRecord.occurred_at), col(ObservationRecord.id))
            ).scalars()
        ]
        polls = [
            {"at": iso_time(p.polled_at), "outcome": p.outcome, "event_id": p.event_id}
            for p in db.execute(
                select(SessionPoll)
                .where(col(SessionPoll.session_pk) == row.id)
                .order_by(col(SessionPoll.id).desc())
            ).scalars()
        ]
    shown = {
        **OnCallSession.from_row(row).answer(),
        "history": history,
        "polls": polls,
        "mode": policy.mode.value if policy else None,
        "lifetime_ends_at": None,
        "overdue_reason": None,
    }
    if policy is not None:
        created = utc(row.created_at)
        shown["lifetime_ends_at"] = iso_time(created + timedelta(seconds=policy.ttl))
        if row.overdue:
            facts = SessionFacts(
                status=Status(row.status),
                created_at=created,
                poll_attempts=row.poll_attempts,
                overdue=False,
                settled=row.settled,
            )
            shown["overdue_reason"] = overdue_reason(policy, facts, utc(row.updated_at))
    shown["next_check_means"] = _next_check_means(policy, shown)
    return shown


def _next_check_means(policy: Policy | None, shown: dict[str, Any]) -> str:
    if shown["next_check_at"] is None:
        return "none: settled, overdue, expired or stopped"
    if policy is None or policy.mode is Mode.POLL:
        return "the next status poll"
    if policy.mode is Mode.FALLBACK:
        return "the webhook deadline: polled then if no final webhook came"
    return "the webhook deadline: flagged overdue then if no final webhook came"


def refusals_by_reason(engine: Engine, window: timedelta = REFUSALS_WINDOW) -> list[dict[str, Any]]:
    """Refused deliveries of the last `window` by provider and reason, the most first."""
    with transaction(engine) as db:
        totals = refusals_since(db, utcnow() - window)
    return [
        {
            "provider": t.provider,
            "reason": t.reason,
            "count": t.count,
            "last_at": iso_time(t.last_at),
        }
        for t in totals
    ]
