"""The scheduler's watch over the audit chain, exported for the alert rules.

Every VERIHOOK_AUDIT_VERIFY_SECONDS (300 s) the leader verifies the entries appended since the
last verification that passed, anchored on that entry's hash; every
VERIHOOK_AUDIT_FULL_VERIFY_SECONDS (daily), and after any failure, it verifies the whole chain.
The outcome sets `verihook_audit_verify_last_success_timestamp_seconds` or
`verihook_audit_verify_last_failure_timestamp_seconds` (and `verihook_audit_verified_entries`):
comparing the two timestamps stays right when the lead moves to another instance.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from receiver.metrics import AUDIT_VERIFY_ENTRIES, AUDIT_VERIFY_FAILURE, AUDIT_VERIFY_SUCCESS
from receiver.store import dialects
from reconciler.audit.chain import ChainReport, verify_chain

log = logging.getLogger(__name__)


def snapshot_session(engine: Engine) -> Session:
    """A session that reads one snapshot: the head row and the entries agree while appends go on
    (PostgreSQL: REPEATABLE READ; SQLite's transactions are snapshots already)."""
    return Session(dialects.snapshot(engine))


@dataclass
class AuditWatch:
    """Incremental and full verifications of the audit chain for one scheduler instance."""

    engine: Engine
    full_every_seconds: float
    verified: tuple[int, str] | None = None
    """(seq, hash) of the last entry covered by a verification that passed."""
    last_full: float | None = None
    """When the last full verification passed (monotonic clock)."""

    def is_full_due(self, now: float) -> bool:
        """True when the next verification must walk the whole chain."""
        return (
            self.verified is None
            or self.last_full is None
            or now - self.last_full >= self.full_every_seconds
        )

    def run(self) -> ChainReport:
        """Verify (in full when due, else incrementally) and record the outcome."""
        started = time.monotonic()
        full = self.is_full_due(started)
        with snapshot_session(self.engine) as db:
            report = verify_chain(db, after=None if full else self.verified)
        if report.ok:
            self.verified = (report.entries, report.head)
            self.last_full = started if full else self.last_full
            AUDIT_VERIFY_ENTRIES.set(report.entries)
            AUDIT_VERIFY_SUCCESS.set(time.time())
        else:
            self.verified = None  # the next verification walks the whole chain again
            AUDIT_VERIFY_FAILURE.set(time.time())
            log.error(
                "audit chain verification failed at entry %s: %s",
                report.first_bad,
                report.problem,
                extra={"reason": report.problem or "", "count": report.first_bad or 0},
            )
        return report
