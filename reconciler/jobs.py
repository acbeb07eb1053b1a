"""RQ job entry points: module-level functions that build this process's services once."""

from __future__ import annotations

import logging

from receiver.queue import clear_wake_flag
from reconciler.drain import DrainStats, drain_ready_events
from reconciler.job_services import services, use_services  # noqa: F401  (tests call jobs.use_services)

log = logging.getLogger(__name__)


def apply_ready_events() -> dict[str, int]:
    """Apply every ready event; clears the wake flag first so that no wake-up is lost."""
    current = services()
    clear_wake_flag(current.redis, current.settings.queue_name)
    stats: DrainStats = drain_ready_events(current)
    log.info("drained ready events", extra={"count": stats.applied + stats.superseded})
    return {
        "applied": stats.applied,
        "superseded": stats.superseded,
        "quarantined": stats.quarantined,
        "failed": stats.failed,
        "batches": stats.batches,
    }
