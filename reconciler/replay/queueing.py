"""The RQ hand-off of bulk replays: queue a run, the job that works it for a while and hands the
rest to a fresh job, and the scheduler's resumption of runs whose worker died.

Upgrades: a job queued before replay became a package names `reconciler.replay.run_replay_job`,
which no longer imports; RQ fails it without touching the replay row, and the scheduler's sweep
(`resume_stale_replays`) queues the run again under `JOB` once it has been still for
`stale_after_seconds`. It resumes from its cursor, so nothing is applied twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from redis.exceptions import RedisError
from rq import Queue

from receiver.services import Services
from receiver.store.replay_models import Replay, ReplayState
from reconciler.event_queries import EventFilter
from reconciler.job_services import services as job_services
from reconciler.replay.execution import run_replay
from reconciler.replay.runs import create_replay, stale_replay_ids
from reconciler.replay.shaping import replay_json

JOB = "reconciler.replay.queueing.run_replay_job"
JOB_BUDGET_SECONDS = 300.0
"""A replay job works this long, then hands the rest to a fresh job (resuming at its cursor)."""
JOB_TIMEOUT_SECONDS = 900


class QueueUnavailable(RuntimeError):
    """The replay was stored but could not be queued (Redis unreachable)."""

    def __init__(self, replay_id: int) -> None:
        super().__init__(
            f"replay {replay_id} is stored but Redis is unreachable; "
            f"run `verihook replay --resume {replay_id}`"
        )
        self.replay_id = replay_id


def enqueue_replay(services: Services, replay_id: int) -> str:
    """Queue `run_replay_job(replay_id)`; QueueUnavailable when Redis cannot be reached."""
    try:
        job = Queue(services.settings.queue_name, connection=services.redis).enqueue_call(
            JOB,
            args=(replay_id,),
            job_id=f"replay-{replay_id}-{uuid.uuid4().hex[:12]}",
            timeout=JOB_TIMEOUT_SECONDS,
            result_ttl=3600,
            failure_ttl=86_400,
        )
    except RedisError as exc:
        raise QueueUnavailable(replay_id) from exc
    return str(job.id)


def start_replay(services: Services, flt: EventFilter, *, actor_name: str) -> Replay:
    """Create a bulk replay and queue it for a worker."""
    row = create_replay(services, flt, actor_name=actor_name)
    assert row.id is not None
    enqueue_replay(services, row.id)
    return row


def run_replay_job(replay_id: int, budget_seconds: float | None = None) -> dict[str, Any]:
    """RQ job: work a replay for a while; if it is not done, queue a fresh job to go on."""
    services = job_services()
    row = run_replay(
        services,
        replay_id,
        max_seconds=JOB_BUDGET_SECONDS if budget_seconds is None else budget_seconds,
    )
    if row.state == ReplayState.RUNNING:
        enqueue_replay(services, replay_id)
    return {k: v for k, v in replay_json(row).items() if k != "summary"}


def resume_stale_replays(services: Services, stale_after_seconds: float = 600.0) -> list[int]:
    """Queue a job for every pending or running replay nobody advanced for a while (its worker
    died); for the scheduler's sweep. Returns the ids queued."""
    ids = stale_replay_ids(services, stale_after_seconds)
    for replay_id in ids:
        enqueue_replay(services, replay_id)
    return ids
