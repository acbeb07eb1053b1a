"""Prometheus metrics (prometheus-client), safe under gunicorn's many processes.

Counters and histograms are recorded where things happen, in whichever process (receiver,
worker, scheduler). With `PROMETHEUS_MULTIPROC_DIR` set (deploy/gunicorn.conf.py and `verihook up`
set it) every process writes there and `/metrics` aggregates them. State that lives in the
database (queue depth, oldest ready event, events by state, overdue sessions) is read at scrape
time, so it is right however many machines run verihook.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlmodel import col

from receiver.store.models import InboundEvent, OutboxEntry, VerificationSession, utcnow

log = logging.getLogger(__name__)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # prometheus-client needs it to exist
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
APPLY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

DELIVERIES = Counter(
    "verihook_deliveries_total",
    "Inbound deliveries by provider and answer "
    "(accepted, duplicate, quarantined, unauthenticated, too_large, "
    "unsupported_type, unknown_provider, unavailable, error)",
    ["provider", "answer"],
)
AUTH_FAILURES = Counter(
    "verihook_auth_failures_total",
    "Deliveries refused by authentication, by provider and reason",
    ["provider", "reason"],
)
INGEST_SECONDS = Histogram(
    "verihook_ingest_seconds",
    "Time to authenticate, store and answer one delivery",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
INGEST_BATCH_ROWS = Histogram(
    "verihook_ingest_batch_rows",
    "Deliveries stored per group commit (one transaction) on a receiver process",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
RECEIPT_TO_APPLIED = Histogram(
    "verihook_receipt_to_applied_seconds",
    "From receipt of an event to its application",
    buckets=APPLY_BUCKETS,
)
UNKNOWN_VALUES = Counter(
    "verihook_unknown_provider_values_total",
    "Deliveries and poll answers quarantined because a provider sent a value, shape or "
    "notification its documents do not define (never read as a verdict), by provider and field",
    ["provider", "field"],
)
APPLIED = Counter("verihook_events_applied_total", "Events applied, by outcome", ["outcome"])
APPLY_FAILURES = Counter("verihook_apply_failures_total", "Events that failed to apply")
POLLS = Counter(
    "verihook_polls_total", "Status polls by provider and outcome", ["provider", "outcome"]
)
HEALS = Counter(
    "verihook_heals_total", "Poll answers that changed a session's status", ["provider"]
)
NOTIFICATION_ATTEMPTS = Counter(
    "verihook_notification_attempts_total", "Backend notification attempts by outcome", ["outcome"]
)
LEADER = Gauge(
    "verihook_scheduler_leader",
    "1 while this scheduler instance holds the lead",
    multiprocess_mode="max",
)
NOTIFICATIONS_EXHAUSTED = Counter(
    "verihook_notifications_exhausted_total",
    "Backend notifications that used up their attempts and stay failed (resend by hand)",
)
HEARTBEAT = Gauge(
    "verihook_heartbeat_timestamp_seconds",
    "Unix time of this role's last sign of progress (worker: its loop went round; scheduler: "
    "a tick or lock heartbeat; web: a scrape answered)",
    ["role"],
    multiprocess_mode="max",
)
AUDIT_VERIFY_SUCCESS = Gauge(
    "verihook_audit_verify_last_success_timestamp_seconds",
    "Unix time of the scheduler leader's last audit chain verification that passed",
    multiprocess_mode="max",
)
AUDIT_VERIFY_FAILURE = Gauge(
    "verihook_audit_verify_last_failure_timestamp_seconds",
    "Unix time of the scheduler leader's last audit chain verification that found a break",
    multiprocess_mode="max",
)
AUDIT_VERIFY_ENTRIES = Gauge(
    "verihook_audit_verified_entries",
    "Audit entries covered by the last verification that passed (the chain's length then)",
    multiprocess_mode="max",
)


def inc(counter: Counter, *labels: str, amount: float = 1.0) -> None:
    """Increment a counter; metrics never fail the caller."""
    try:
        (counter.labels(*labels) if labels else counter).inc(amount)
    except Exception:  # a side effect that must not fail the caller
        log.debug("metric update failed", exc_info=True)


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Queue depth, oldest ready event age, events by state, overdue sessions."""
        try:
            with self.engine.connect() as conn:
                depth, oldest = conn.execute(
                    select(func.count(), func.min(OutboxEntry.created_at)).select_from(OutboxEntry)
                ).one()
                states = conn.execute(
                    select(col(InboundEvent.state), func.count()).group_by(col(InboundEvent.state))
                ).all()
                overdue = conn.execute(
                    select(func.count())
                    .select_from(VerificationSession)
                    .where(col(VerificationSession.overdue).is_(True))
                ).scalar()
        except Exception:  # scraping must not fail because the database is down
            log.warning("metrics could not read the database")
            return
        yield GaugeMetricFamily("verihook_queue_depth", "Events waiting to be applied", value=depth)
        age = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=utcnow().tzinfo)
            age = max(0.0, (utcnow() - oldest).total_seconds())
        yield GaugeMetricFamily(
            "verihook_oldest_ready_event_age_seconds",
            "Age of the oldest event waiting to be applied",
            value=age,
        )
        by_state = GaugeMetricFamily("verihook_events", "Stored events by state", labels=["state"])
        for state, count in states:
            by_state.add_metric([state], count)
        yield by_state
        yield GaugeMetricFamily(
            "verihook_overdue_sessions",
            "Sessions flagged overdue for people to chase",
            value=overdue,
        )


def render(engine: Engine) -> tuple[bytes, str]:
    """The /metrics body: this process (or all of them, in multiprocess mode) plus the DB."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    database = CollectorRegistry()
    database.register(DatabaseCollector(engine))
    return generate_latest(processes) + generate_latest(database), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """gunicorn child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
