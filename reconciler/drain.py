"""The drain loop: claim ready events in batches and apply each batch in one transaction.

A batch whose application fails is retried event by event, so one poison event cannot hold back
the others; the poison one is marked `failed` with its error and retried with backoff a bounded
number of times (its outbox row stays, later). It is never marked done.

The database failing while a transaction is opened, a batch claimed or committed (connection
refused or lost, pool exhausted, SQLite busy) is nobody's poison: no event is marked failed, the
outbox keeps the events, and the drain tries again after a short pause (STORE_RETRIES times in a
row), then stops; the outbox sweeper wakes a worker again later. The counts (DrainStats, the
`verihook_events_applied_total` counter, receipt→applied latency) take a batch in only once it is
committed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import Session, col

from receiver.canonical import utc
from receiver.exceptions import DecryptionError, ParseError, UnknownValueError
from receiver.logs import crash_site
from receiver.metrics import APPLIED, APPLY_FAILURES, RECEIPT_TO_APPLIED, UNKNOWN_VALUES, inc
from receiver.providers.base import Parsed
from receiver.services import Services
from receiver.store.db import UNAVAILABLE_ERRORS, transaction
from receiver.store.models import EventState, InboundEvent, OutboxEntry, table_of, utcnow
from reconciler import notify
from reconciler.apply import apply_parsed, claim_ready, parse_event
from reconciler.audit.chain import append_audit
from reconciler.backoff import backoff_seconds, exponential_backoff
from reconciler.policies import policies

log = logging.getLogger(__name__)

WORKER_ACTOR = "worker"
DEFERRED_PAUSE_SECONDS = 0.05
"""Pause when a whole batch waits on sessions another worker holds (no busy loop)."""
STORE_RETRIES = 3
"""Tries again after the database failed to open, claim or commit, before the drain stops."""
STORE_RETRY_BASE_SECONDS = 0.2
"""The first pause before trying the database again; it doubles (0.2, 0.4, 0.8 s)."""
STORE_RETRY_MAX_SECONDS = 2.0
"""The longest of those pauses."""


@dataclass
class DrainStats:
    """Counts of one drain run."""

    applied: int = 0
    superseded: int = 0
    quarantined: int = 0
    failed: int = 0
    deferred: int = 0
    batches: int = 0
    changed_users: set[str] = field(default_factory=set)
    notified_users: set[str] = field(default_factory=set)
    received_at: list[datetime] = field(default_factory=list)
    store_unavailable: bool = False
    """The drain stopped early: the database kept failing (the outbox keeps the events)."""

    def add(self, other: DrainStats) -> None:
        """Fold the counts of a committed unit (a batch, or one event) into these."""
        self.applied += other.applied
        self.superseded += other.superseded
        self.quarantined += other.quarantined
        self.failed += other.failed
        self.deferred += other.deferred
        self.changed_users |= other.changed_users


class _StoreFailed(Exception):
    """The database failed while a transaction was opened, claimed or committed."""


class _BatchFailed(Exception):
    """Applying a claimed batch failed: its events are tried one at a time."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(f"a batch of {len(ids)} events failed to apply")
        self.ids = ids


def apply_batch(
    db: Session,
    services: Services,
    event_ids: list[int],
    stats: DrainStats,
    *,
    replay: bool = False,
) -> None:
    """Re-parse and apply these events in the caller's transaction, counting into `stats`.

    What the worker runs on a claimed batch, and what a replay runs (`replay=True`: its audit
    entries have source `replay`). An event that does not parse is quarantined; a missing key
    raises DecryptionError. The audit head is locked last. Nothing is committed here, so no
    metric is counted either: the caller counts `stats` (`record_applied`) once it commits.
    """
    query = select(InboundEvent).where(col(InboundEvent.id).in_(event_ids))
    events = db.execute(query).scalars()
    parsed: dict[int, tuple[InboundEvent, Parsed]] = {}
    for event in events:
        assert event.id is not None  # a stored row
        outcome = reparse(services, event)
        if isinstance(outcome, Unparsable):
            _report_unparsable(event, outcome, count_unknown=not replay)
            _quarantine(db, event, outcome.reason)
            stats.quarantined += 1
        else:
            parsed[event.id] = (event, outcome)
    result = apply_parsed(
        db,
        parsed,
        keyring=services.keyring,
        actor=WORKER_ACTOR,
        policies=policies(services.settings),
        replay=replay,
        notify=bool(services.settings.notify_url),
    )
    append_audit(db, result.audit)
    stats.received_at.extend(
        event.received_at
        for event_id, (event, _) in parsed.items()
        if event_id in set(result.applied) | set(result.superseded)
    )
    stats.applied += len(result.applied)
    stats.superseded += len(result.superseded)
    stats.deferred += len(result.deferred)
    if result.deferred and not (result.applied or result.superseded):
        time.sleep(DEFERRED_PAUSE_SECONDS)  # every session is busy in another worker
    stats.changed_users |= result.changed_users


@dataclass(frozen=True)
class Unparsable:
    """Why a stored event cannot be applied with today's code: it is quarantined with `reason`."""

    reason: str
    unknown_field: str | None = None
    """The field holding a value the provider's documents do not define (counted)."""
    crash_site: str | None = None
    """Where the parser crashed (logged)."""


def reparse(services: Services, event: InboundEvent) -> Parsed | Unparsable:
    """Re-parse one stored event with today's code, or say why it must be quarantined.

    Whatever goes wrong with one event stays with that event: a ParseError or an unexpected
    exception from the parser (pure: re-running it on the same bytes fails the same way)
    quarantines it. Only DecryptionError propagates: a missing key is the deployment's problem,
    so the event fails and is retried (one by one, with backoff) once the key is back. Counts
    and logs nothing: the worker does (`apply_batch`); a replay's look ahead does not.
    """
    provider = services.providers.get(event.provider)
    if provider is None:
        return Unparsable(f"provider {event.provider!r} is not configured any more")
    try:
        return parse_event(event, provider, services.keyring)
    except UnknownValueError as exc:  # a poll answer the provider's documents do not define
        return Unparsable(str(exc), unknown_field=exc.field)
    except ParseError as exc:
        return Unparsable(str(exc))
    except DecryptionError:
        raise
    except Exception as exc:
        site = crash_site(exc)
        return Unparsable(f"unexpected {site} while parsing", crash_site=site)


def _report_unparsable(event: InboundEvent, why: Unparsable, *, count_unknown: bool) -> None:
    """Count an undefined value (`count_unknown`: not on replay) and log a parser crash."""
    if why.unknown_field is not None and count_unknown:
        inc(UNKNOWN_VALUES, event.provider, why.unknown_field)
    if why.crash_site is not None:
        log.error(
            "parser failed on a stored event; quarantining",
            extra={"event_id": event.id, "reason": why.crash_site},
        )


def _quarantine(db: Session, event: InboundEvent, error: str) -> None:
    now = utcnow()
    db.execute(
        update(InboundEvent)
        .where(col(InboundEvent.id) == event.id)
        .values(state=EventState.QUARANTINED.value, parse_error=error[:2000], updated_at=now)
    )
    db.execute(table_of(OutboxEntry).delete().where(col(OutboxEntry.event_id) == event.id))


def _record_failure(services: Services, event_id: int, error: Exception) -> bool:
    """Mark one event failed; keep its outbox row for a later retry unless out of attempts."""
    message = f"{type(error).__name__}: {str(error)[:500]}"
    now = utcnow()
    with transaction(services.engine) as db:
        event = db.get(InboundEvent, event_id)
        if event is None:
            return False
        event.attempts += 1
        event.state, event.last_error, event.updated_at = EventState.FAILED.value, message, now
        db.add(event)
        entry = db.get(OutboxEntry, event_id)
        exhausted = event.attempts >= services.settings.apply_max_attempts
        if entry is not None and exhausted:
            db.delete(entry)
        elif entry is not None:
            entry.attempts = event.attempts
            entry.available_at = now + timedelta(seconds=backoff_seconds(event.attempts))
            db.add(entry)
    log.warning(
        "event failed to apply",
        extra={"event_id": event_id, "count": event.attempts, "reason": type(error).__name__},
    )
    return True


def record_applied(stats: DrainStats) -> None:
    """Count committed applications in `verihook_events_applied_total` (by outcome)."""
    inc(APPLIED, "applied", amount=stats.applied)
    inc(APPLIED, "superseded", amount=stats.superseded)


def drain_ready_events(services: Services, *, max_seconds: float = 60.0) -> DrainStats:
    """Apply ready events batch after batch until none is ready or `max_seconds` pass.

    Stops early (`store_unavailable`) when the database keeps failing; the events stay in the
    outbox. Counts only what was committed.
    """
    stats = DrainStats()
    deadline = time.monotonic() + max_seconds
    size = services.settings.apply_batch_size
    store_failures = 0
    while time.monotonic() < deadline:
        services.statistics.refresh()  # the tables grow as we drain: keep the plans right
        try:
            try:
                batch = _claim_and_apply(services, size)
            except _BatchFailed as failed:  # the batch boundary: isolate the poison event(s)
                log.error(
                    "batch failed; applying its events one at a time", exc_info=failed.__cause__
                )
                _apply_one_by_one(services, failed.ids, stats)
            else:
                if batch is None:
                    break
                stats.batches += 1
                _count_committed(stats, batch)
        except _StoreFailed as down:
            store_failures += 1
            pause = exponential_backoff(
                store_failures - 1, base=STORE_RETRY_BASE_SECONDS, cap=STORE_RETRY_MAX_SECONDS
            )
            reason = type(down.__cause__).__name__
            if store_failures > STORE_RETRIES or time.monotonic() + pause >= deadline:
                log.warning(
                    "database unavailable; the drain stops, the outbox keeps the events",
                    extra={"reason": reason, "count": store_failures},
                )
                stats.store_unavailable = True
                break
            log.warning(
                "database unavailable; trying again shortly",
                extra={"reason": reason, "count": store_failures},
            )
            time.sleep(pause)
            continue
        store_failures = 0
        _wake_notifier(services, stats)
    _wake_notifier(services, stats)  # for what committed before the database went away
    return stats


def _wake_notifier(services: Services, stats: DrainStats) -> None:
    """Wake the notifier for the users whose status changed in committed work (Redis only)."""
    if stats.changed_users and services.settings.notify_url:
        notify.wake_notifier(services, stats.changed_users)
        stats.notified_users |= stats.changed_users
        stats.changed_users = set()


def _claim_and_apply(services: Services, size: int) -> DrainStats | None:
    """Claim up to `size` ready events and apply them in one transaction; return their counts
    once committed (None: nothing was ready).

    Raises _StoreFailed when the database fails to open the transaction, to claim or to commit
    (a failure at the commit that is not the database's unavailability, such as a constraint
    checked there, counts as the batch's own), and _BatchFailed when applying the batch fails.
    """
    batch = DrainStats()
    ids: list[int] = []
    applying = False
    try:
        with transaction(services.engine) as db:
            ids = claim_ready(db, size)
            if ids:
                applying = True
                apply_batch(db, services, ids, batch)
                applying = False
    except Exception as exc:
        if applying or (ids and not isinstance(exc, UNAVAILABLE_ERRORS)):
            raise _BatchFailed(ids) from exc
        if isinstance(exc, UNAVAILABLE_ERRORS):
            raise _StoreFailed() from exc
        raise  # claiming failed for another reason: a bug, not an outage
    return batch if ids else None


def _count_committed(stats: DrainStats, unit: DrainStats) -> None:
    """Take a committed batch (or event) into `stats`, the applied counter and the latency
    (`unit.received_at` is observed, not kept)."""
    stats.add(unit)
    record_applied(unit)
    _observe_applied(unit)


def _observe_applied(stats: DrainStats) -> None:
    """Record receipt→applied latency for the events just committed."""
    now = utcnow()
    for received in stats.received_at:
        RECEIPT_TO_APPLIED.observe(max(0.0, (now - utc(received)).total_seconds()))
    stats.received_at.clear()


def _apply_one_by_one(services: Services, ids: list[int], stats: DrainStats) -> None:
    """Apply each event in a transaction of its own; record the failure of one that fails.

    Raises _StoreFailed, leaving the rest in the outbox, when the database fails to open, claim
    or commit, or to record a failure."""
    for event_id in ids:
        single = DrainStats()
        applying = False
        try:
            with transaction(services.engine) as db:
                if claim_one(db, event_id):
                    applying = True
                    apply_batch(db, services, [event_id], single)
                    applying = False
        except Exception as exc:  # a job boundary: record on our row, never mark done
            if not applying and isinstance(exc, UNAVAILABLE_ERRORS):
                raise _StoreFailed() from exc
            try:
                recorded = _record_failure(services, event_id, exc)
            except UNAVAILABLE_ERRORS as lost:
                raise _StoreFailed() from lost
            if recorded:
                stats.failed += 1
                inc(APPLY_FAILURES)
            continue
        _count_committed(stats, single)


def claim_one(db: Session, event_id: int) -> bool:
    """Lock one event's outbox row if it is still there and not locked by another worker."""
    query = (
        select(col(OutboxEntry.event_id))
        .where(col(OutboxEntry.event_id) == event_id)
        .with_for_update(skip_locked=True)
    )
    return db.execute(query).scalar_one_or_none() is not None
