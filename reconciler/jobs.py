"""RQ job entry points: module-level functions that build this process's services once."""

from __future__ import annotations

import logging

from receiver.queue import clear_wake_flag
from receiver.services import Services
from receiver.settings import load_settings
from reconciler.drain import DrainStats, drain_ready_events

log = logging.getLogger(__name__)
_services: Services | None = None


def services() -> Services:
    """This worker process's services (built on first use, then reused by every job)."""
    global _services
    if _services is None:
        _services = Services.build(load_settings())
    return _services


def use_services(value: Services | None) -> None:
    """Install the services jobs use (the worker command and tests call this)."""
    global _services
    _services = value


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
