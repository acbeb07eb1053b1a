"""Waking the workers after a commit, by dotted job name (the receiver never imports reconciler).

Workers drain every ready event in batches, so one queued drain job serves many events. A wake
flag in Redis coalesces wake-ups: a receiver enqueues a drain job only when none is queued yet;
the job clears the flag when it starts, before it looks for ready events, so no wake-up is lost.
When Redis is down the request still succeeds: the outbox row stays, and the sweeper
(`verihook outbox flush`, and the scheduler) wakes the workers later.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

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
    if _wake(redis, queue_name):
        return True
    log.warning("could not wake workers, the outbox sweeper will")
    return False


WAKE_INTERVAL_SECONDS = 0.05
"""A receiver process wakes the workers at most this often, however many deliveries it stores:
one Redis call costs the process about 100 µs of CPU (redis-py), so at 20 ms it was 36 µs per
delivery at 400 deliveries/s per process (bench/spy_ingest.py); a stored event waits at most this
much longer for a worker."""


class Waker:
    """Wakes the workers from a background thread, off the request path and coalesced.

    `request()` is called after a delivery's transaction committed; the thread then calls
    `wake_workers` (after that commit, so the wake flag's guarantee holds) once for every request
    made before it started that call, and at most once per `interval`. A Redis outage costs no
    request anything: the outbox sweeper wakes the workers for what was committed meanwhile. One
    warning when Redis stops answering, one line when it answers again.
    """

    def __init__(
        self,
        redis: Callable[[], Redis],
        queue_name: str,
        *,
        interval: float = WAKE_INTERVAL_SECONDS,
    ) -> None:
        self._redis, self._queue_name, self._interval = redis, queue_name, interval
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._reachable = True
        self._start_lock = threading.Lock()

    def request(self) -> None:
        """Ask for a wake-up (returns at once)."""
        self._wanted.set()
        if self._pid != os.getpid():
            self._start()

    def _start(self) -> None:
        """Start this process's thread (again after a fork: threads do not survive one)."""
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._thread = threading.Thread(target=self._run, name="verihook-waker", daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            self._wake_once()
            time.sleep(self._interval)

    def _wake_once(self) -> None:
        try:
            reachable = _wake(self._redis(), self._queue_name)
        except Exception:  # a background thread must outlive any error
            log.exception("waking the workers failed; the outbox sweeper will")
            reachable = False
        if reachable != self._reachable:
            self._reachable = reachable
            if reachable:
                log.info("Redis answers again: workers are woken at once")
            else:
                log.warning("Redis unreachable: stored events wait for the outbox sweeper")


def _wake(redis: Redis, queue_name: str) -> bool:
    """`wake_workers` without its per-call warning (the Waker reports state changes)."""
    flag = wake_flag(queue_name)
    try:
        if redis.set(flag, "1", nx=True, ex=WAKE_FLAG_TTL_SECONDS):
            try:
                enqueue_drain(redis, queue_name)
            except RedisError:
                redis.delete(flag)
                raise
        return True
    except RedisError:
        return False


def clear_wake_flag(redis: Redis, queue_name: str) -> None:
    """Called by a drain job as it starts, before it selects ready events."""
    redis.delete(wake_flag(queue_name))
