"""Waking the workers after a commit, by dotted job name (the receiver never imports reconciler).

Workers drain every ready event in batches, so one queued drain job serves many events. A wake
flag in Redis coalesces wake-ups: a receiver enqueues a drain job only when none is queued yet;
the job clears the flag when it starts, before it looks for ready events, so no wake-up is lost.
When Redis is down the request still succeeds: the outbox row stays, and the sweeper
(`verihook outbox flush`, and the scheduler) wakes the workers later.
"""

from __future__ import annotations

import logging
import uuid

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

log = logging.getLogger(__name__)

DRAIN_JOB = "reconciler.jobs.apply_ready_events"
"""The job that applies every ready event (dotted name: the ingest path imports no reconciler)."""

WAKE_FLAG_KEY = "verihook:{queue}:drain-pending"
"""Set while a drain job is queued and not yet started."""

WAKE_FLAG_TTL_SECONDS = 30
"""A lost flag (enqueue failed after setting it) stops coalescing for at most this long."""

DRAIN_JOB_TIMEOUT_SECONDS = 600


def connect(url: str) -> Redis:
    """A Redis client with short timeouts, so a dead Redis cannot stall a request."""
    return Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=2.0, health_check_interval=30
    )


def wake_flag(queue_name: str) -> str:
    """The wake flag's key for a queue."""
    return WAKE_FLAG_KEY.format(queue=queue_name)


def enqueue_drain(redis: Redis, queue_name: str) -> str:
    """Enqueue one drain job unconditionally; return its id."""
    job = Queue(queue_name, connection=redis).enqueue_call(
        DRAIN_JOB,
        job_id=f"drain-{uuid.uuid4().hex}",
        timeout=DRAIN_JOB_TIMEOUT_SECONDS,
        result_ttl=60,
        failure_ttl=86_400,
    )
    return job.id


def wake_workers(redis: Redis, queue_name: str) -> bool:
    """Make sure a drain job is queued; False (logged) when Redis is unreachable."""
    flag = wake_flag(queue_name)
    try:
        if not redis.set(flag, "1", nx=True, ex=WAKE_FLAG_TTL_SECONDS):
            return True
        try:
            enqueue_drain(redis, queue_name)
        except RedisError:
            redis.delete(flag)
            raise
        return True
    except RedisError as exc:
        log.warning("could not wake workers, the outbox sweeper will: %s", type(exc).__name__)
        return False


def clear_wake_flag(redis: Redis, queue_name: str) -> None:
    """Called by a drain job as it starts, before it selects ready events."""
    redis.delete(wake_flag(queue_name))
