"""RQ job entry points: module-level functions that build this process's services once."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from receiver.queue import clear_wake_flag
from reconciler.drain import DrainStats, drain_ready_events
from reconciler.job_services import services, use_services  # noqa: F401  (tests call jobs.use_services)

log = logging.getLogger(__name__)


def apply_ready_events() -> dict[str, int]:
    """Apply every ready event; clears the wake flag first so that no wake-up is lost.

    Redis going away as the job starts does not stop it: the events are in the database, and a
    flag left set expires by itself (WAKE_FLAG_TTL_SECONDS) while the outbox sweeper re-wakes."""
    current = services()
    try:
        clear_wake_flag(current.redis, current.settings.queue_name)
    except RedisError as exc:
        log.warning("could not clear the wake flag, draining anyway: %s", type(exc).__name__)
    stats: DrainStats = drain_ready_events(current)
    log.info("drained ready events", extra={"count": stats.applied + stats.superseded})
    return {
        "applied": stats.applied,
        "superseded": stats.superseded,
        "quarantined": stats.quarantined,
        "failed": stats.failed,
        "batches": stats.batches,
        "store_unavailable": int(stats.store_unavailable),
    }
