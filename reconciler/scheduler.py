"""`verihook scheduler`: the one active leader polls due sessions and runs the sweepers.

Every instance runs the same APScheduler jobs; each job first makes sure this instance holds the
leader lock, and does nothing otherwise. A tick selects due sessions by the `next_check_at` index
(its cost grows with due sessions, not with all sessions), respects per-provider rate limits, and
reconciles them on a small thread pool.
"""

from __future__ import annotations

import logging
import signal
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from apscheduler.schedulers.blocking import BlockingScheduler

from receiver.health_server import Heartbeat
from receiver.logs import crash_site
from receiver.metrics import HEALS, LEADER, POLLS, inc
from receiver.outbox import flush_outbox
from receiver.providers.http import new_client
from receiver.queue import wake_workers
from receiver.services import Services
from receiver.store.models import VerificationSession, utcnow
from reconciler import notify
from reconciler.audit.watch import AuditWatch
from reconciler.leader import LeaderLock
from reconciler.planner import Action, decide
from reconciler.policies import policies
from reconciler.poller import PollOutcome, _facts, claim, due_sessions, reconcile
from reconciler.privacy.lifecycle import purge_expired
from reconciler.ratelimit import TokenBucket
from reconciler.replay.queueing import resume_stale_replays

log = logging.getLogger(__name__)


@dataclass
class TickStats:
    """What one tick did: outcomes by name, and status calls made."""

    due: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    status_calls: int = 0


class Reconciler:
    """The polling machinery of one scheduler instance (usable without APScheduler in tests)."""

    def __init__(self, services: Services, http: httpx.Client | None = None) -> None:
        self.services = services
        self.http = http or new_client()
        self.policies = policies(services.settings)
        self.buckets = {
            name: TokenBucket(services.settings.provider(name).rate_limit_per_second)
            for name in self.policies
        }

    def tick(self, now: datetime | None = None) -> TickStats:
        """Reconcile every due session this tick can afford."""
        now = now or utcnow()
        settings = self.services.settings
        stats = TickStats()
        claimed = []
        for row in due_sessions(self.services, now, settings.poll_batch_size):
            stats.due += 1
            policy = self.policies[row.provider]
            polls = decide(policy, _facts(row), now) is Action.POLL
            if polls and not self.buckets[row.provider].try_take():
                stats.outcomes["rate_limited"] += 1
                continue
            if claim(self.services, row, now):
                claimed.append(row)
        with ThreadPoolExecutor(max_workers=settings.poll_concurrency) as pool:
            for outcome in pool.map(lambda r: self._reconcile_one(r, now), claimed):
                stats.outcomes[outcome.result] += 1
                stats.status_calls += outcome.status_calls
                inc(POLLS, outcome.provider, outcome.result)
                if outcome.result == "changed":
                    inc(HEALS, outcome.provider)
        if stats.outcomes["changed"] or stats.outcomes["expired"] or stats.outcomes["quarantined"]:
            wake_workers(self.services.redis, settings.queue_name)
        return stats

    def _reconcile_one(self, row: VerificationSession, now: datetime) -> PollOutcome:
        """Reconcile one claimed session; an unexpected failure stays with that session.

        Its claim is left in place, so it is tried again when the lease
        (VERIHOOK_POLL_LEASE_SECONDS) runs out; the tick goes on with the others.
        """
        try:
            return reconcile(self.services, self.http, row, self.policies[row.provider], now)
        except Exception as exc:
            log.error(
                "reconciling a session failed; retried after its lease",
                extra={"provider": row.provider, "reason": crash_site(exc)},
            )
            return PollOutcome(row.provider, row.session_id, "error")

    def sweep(self) -> None:
        """Wake workers for outbox rows whose wake-up was lost; retry due notifications."""
        settings = self.services.settings
        flush_outbox(
            self.services.engine,
            self.services.redis,
            settings.queue_name,
            grace_seconds=settings.outbox_grace_seconds,
        )
        if settings.notify_url:
            notify.sweep_due_notifications(self.services)
        resume_stale_replays(self.services)


@dataclass
class _Leadership:
    """The leader lock as the scheduler's jobs see it: a heartbeat, and jobs that run only while
    this instance leads. `alive` beats at every lock heartbeat while follower."""

    lock: LeaderLock
    alive: Heartbeat

    def heartbeat(self) -> None:
        """Refresh (or try to take) the lock; log a change of leader."""
        was = self.lock.is_leader
        LEADER.set(1 if self.lock.refresh() else 0)
        if self.lock.is_leader != was:
            log.info("scheduler leadership changed", extra={"state": str(self.lock.is_leader)})
        if not self.lock.is_leader:
            self.alive.beat()

    def as_leader(self, job: Callable[[], object]) -> Callable[[], None]:
        """`job`, run only while leader; a failure is logged and the scheduler goes on."""

        def run() -> None:
            if not self.lock.is_leader:
                return
            try:
                job()
            except Exception:  # a job boundary: log, keep the scheduler alive
                log.exception("scheduler job failed")

        return run


def run_scheduler(services: Services, alive: Heartbeat | None = None) -> None:
    """Run forever: heartbeat the leader lock; while leader tick, sweep, purge and verify the
    audit chain (reconciler/audit/watch.py).

    `alive` (the `/healthz` of receiver/health_server.py) beats after every finished tick while
    leader, and at every lock heartbeat while follower: a leader whose tick hangs stops beating.
    """
    settings = services.settings
    lock = LeaderLock(services.redis, settings.queue_name, settings.leader_lock_seconds)
    scheduler = BlockingScheduler(timezone="UTC")
    _add_jobs(scheduler, services, _Leadership(lock, alive or Heartbeat()))

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)  # caught below: the lock is released, a follower takes over at once

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if scheduler.running:
            scheduler.shutdown(wait=False)
        lock.release()


def _add_jobs(scheduler: BlockingScheduler, services: Services, leadership: _Leadership) -> None:
    """The lock's heartbeat (from now, thrice per lock lifetime) and, while leader, the tick,
    the hourly purge, the sweeps and the audit verification (after one lock lifetime)."""
    settings = services.settings
    machinery = Reconciler(services)
    audit_watch = AuditWatch(services.engine, settings.audit_full_verify_seconds)
    as_leader = leadership.as_leader
    now = datetime.now().astimezone()

    def tick() -> None:
        try:
            machinery.tick()
        finally:
            leadership.alive.beat()

    def every(job: Callable[[], None], **trigger: object) -> None:
        scheduler.add_job(job, "interval", max_instances=1, coalesce=True, **trigger)

    every(leadership.heartbeat, seconds=settings.leader_lock_seconds / 3, next_run_time=now)
    every(as_leader(tick), seconds=settings.scheduler_tick_seconds)
    every(as_leader(lambda: purge_expired(services, days=settings.retention_days)), hours=1)
    every(as_leader(machinery.sweep), seconds=settings.scheduler_sweep_seconds)
    every(
        as_leader(audit_watch.run),
        seconds=settings.audit_verify_seconds,
        next_run_time=now + timedelta(seconds=settings.leader_lock_seconds),
    )
