"""Merge stored sessions again after the ordering rule changed (DESIGN §2, revised December).

Until December an expiry or a cancellation ranked with the automatic decisions, so a late
expiry webhook (iDenfy sends one after the token's lifetime, often after the decision) replaced
the verdict. Under the revised rule `ended` ranks below every decision. Only a session whose
current status is ended can change, and only users with such a session: this finds them, picks
each session's current observation again from its recorded observations, and writes an audit
entry for every session and user status that changes (source `remerge`). Idempotent: a second
run changes nothing. `verihook db upgrade` runs it after migrating; `verihook sessions remerge`
runs it alone (with `--dry-run` to list what would change).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, update
from sqlmodel import Session, col

from receiver.canonical import ENDED_STATUSES, VERDICTS, DecidedBy, Status, status_class, utc
from receiver.services import Services
from receiver.store.db import transaction
from receiver.store.models import (
    Disposition,
    ObservationRecord,
    VerificationSession,
    table_of,
    utcnow,
)
from reconciler.audit.chain import AuditDraft, append_audit
from reconciler.users import refresh_users

ACTOR = "remerge"
BATCH = 500


@dataclass(frozen=True)
class SessionChange:
    """One session whose current status the revised rule changes."""

    provider: str
    session_id: str
    user_ref: str | None
    before: str
    after: str
    decided_by: str


@dataclass
class RemergeReport:
    """What a remerge changed (or, dry, would change)."""

    examined: int = 0
    sessions: list[SessionChange] = field(default_factory=list)
    users_changed: int = 0


def _ended_session_ids(db: Session, after_id: int, limit: int) -> list[int]:
    query = (
        select(col(VerificationSession.id))
        .where(
            col(VerificationSession.status).in_([s.value for s in ENDED_STATUSES]),
            col(VerificationSession.id) > after_id,
        )
        .order_by(col(VerificationSession.id))
        .limit(limit)
    )
    return list(db.execute(query).scalars())


def _best(records: Iterable[ObservationRecord]) -> ObservationRecord | None:
    def key(r: ObservationRecord) -> tuple[int, object, str]:
        klass = status_class(Status(r.status), DecidedBy(r.decided_by))
        return (int(klass), utc(r.occurred_at), r.observation_key)

    return max(records, key=key, default=None)


def _remerge_batch(db: Session, ids: list[int], dry_run: bool, report: RemergeReport) -> set[str]:
    """Remerge the sessions `ids` (locked); return the user refs to refresh."""
    query = (
        select(VerificationSession).where(col(VerificationSession.id).in_(ids)).with_for_update()
    )
    sessions = {s.id: s for s in db.execute(query).scalars()}
    observations: dict[int, list[ObservationRecord]] = {}
    for record in db.execute(
        select(ObservationRecord).where(col(ObservationRecord.session_pk).in_(ids))
    ).scalars():
        observations.setdefault(record.session_pk, []).append(record)
    users: set[str] = set()
    drafts: list[AuditDraft] = []
    table = table_of(ObservationRecord)
    dispositions = (
        update(table)
        .where(table.c.id == bindparam("_id"))
        .values(disposition=bindparam("disposition"))
    )
    marks: list[dict[str, object]] = []
    for pk, row in sessions.items():
        report.examined += 1
        if row.user_ref and row.status in {s.value for s in ENDED_STATUSES}:
            users.add(row.user_ref)
        best = _best(observations.get(pk, []))
        if best is None or best.observation_key == row.current_observation_key:
            continue
        report.sessions.append(
            SessionChange(
                row.provider, row.session_id, row.user_ref, row.status, best.status, best.decided_by
            )
        )
        if dry_run:
            continue
        drafts.append(
            AuditDraft(
                actor=ACTOR,
                source=ACTOR,
                subject="session",
                provider=row.provider,
                session_id=row.session_id,
                user_ref=row.user_ref,
                previous_status=row.status,
                new_status=best.status,
                decided_by=best.decided_by,
                event_id=best.event_id,
                reason="ordering rule: an expiry or cancellation never replaces a verdict",
            )
        )
        for record in observations[pk]:
            wanted = Disposition.APPLIED if record is best else Disposition.SUPERSEDED
            if record.disposition != wanted.value:
                marks.append({"_id": record.id, "disposition": wanted.value})
        row.status, row.decided_by = best.status, best.decided_by
        row.status_observed_at = utc(best.occurred_at)
        row.current_observation_key = best.observation_key
        row.last_event_id, row.last_source = best.event_id, best.source
        row.last_reason = best.provider_status[:64]
        row.settled = row.settled or Status(best.status) in VERDICTS
        row.updated_at = utcnow()
        db.add(row)
    if marks:
        db.connection().execute(dispositions, marks)
    db.flush()
    if drafts:
        append_audit(db, drafts)
    return users


def remerge_ended_sessions(services: Services, *, dry_run: bool = False) -> RemergeReport:
    """Merge every ended session again under the revised rule, then refresh its users."""
    report = RemergeReport()
    users: set[str] = set()
    after = 0
    while True:
        with transaction(services.engine) as db:
            ids = _ended_session_ids(db, after, BATCH)
            if not ids:
                break
            users |= _remerge_batch(db, ids, dry_run, report)
            after = ids[-1]
    if dry_run or not users:
        return report
    ordered = sorted(users)
    for start in range(0, len(ordered), BATCH):
        with transaction(services.engine) as db:
            drafts = refresh_users(db, ordered[start : start + BATCH], actor=ACTOR, notify=True)
            drafts = [_as_remerge(d) for d in drafts]
            report.users_changed += len(drafts)
            append_audit(db, drafts)
    return report


def _as_remerge(draft: AuditDraft) -> AuditDraft:
    return AuditDraft(**{**vars(draft), "source": ACTOR})
