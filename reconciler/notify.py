"""Backend notifications: each user's status changes, POSTed in order as Standard Webhooks.

One RQ job per user (`wake_notifier`) holds that user's Redis lock and POSTs the user's due pending
notifications oldest first. A failed POST stops the user's line, so a later notification never
overtakes an earlier one; it is retried after BACKOFF_BASE_SECONDS * 2**(attempts - 1) seconds,
capped at BACKOFF_MAX_SECONDS (or a longer `retry-after`; reconciler/backoff.py, shared with the
drain), by a scheduled RQ job and by `sweep_due_notifications` (which reads `next_attempt_at`).
After MAX_ATTEMPTS it is `failed` (see `resend`) and the line moves on. Redis trouble never fails
`wake_notifier`: the sweep recovers.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from datetime import timedelta

import httpx
from redis.exceptions import LockError, RedisError
from redis.lock import Lock
from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import exists, select
from sqlalchemy.orm import aliased
from sqlmodel import col

from receiver.canonical import utc
from receiver.exceptions import ConfigurationError
from receiver.metrics import NOTIFICATION_ATTEMPTS, NOTIFICATIONS_EXHAUSTED, inc
from receiver.services import Services
from receiver.signatures import sign_standard_webhook
from receiver.store.db import transaction
from receiver.store.models import utcnow
from receiver.store.notification_models import Notification, NotificationAttempt
from reconciler.backoff import BACKOFF_MAX_SECONDS, backoff_seconds
from reconciler.job_services import services as job_services

log = logging.getLogger(__name__)

JOB = "reconciler.notify.deliver_user_notifications"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MAX_ATTEMPTS = 8
"""Attempts before a notification is `failed`: 2 + 4 + … + 128 s ≈ 4 minutes of retries."""
HTTP_TIMEOUT_SECONDS = 10.0
LOCK_TIMEOUT_SECONDS = 60
"""Lifetime of a user's delivery lock; renewed before every POST."""
BUDGET_SECONDS = 40.0
"""After delivering for this long a job hands the rest of the user's line to a fresh job."""
JOB_TIMEOUT_SECONDS = 120
FAILURE_TTL_SECONDS = 43_200
KEY_TTL_SECONDS = 86_400
KEY = "verihook:{queue}:notify-{kind}:{user}"


class NotificationNotFound(LookupError):
    """No notification has this id."""


def user_key(user_ref: str) -> str:
    """A Redis-key- and job-id-safe stand-in for a user ref."""
    return hashlib.sha256(user_ref.encode()).hexdigest()[:32]


def _key(services: Services, kind: str, user_ref: str) -> str:
    return KEY.format(queue=services.settings.queue_name, kind=kind, user=user_key(user_ref))


def wake_notifier(services: Services, user_refs: Iterable[str]) -> int:
    """Make sure a delivery job is queued for each user; how many (Redis errors are logged)."""
    woken = 0
    try:
        queue = Queue(services.settings.queue_name, connection=services.redis)
        for user_ref in sorted(set(user_refs)):
            _enqueue_once(services, queue, user_ref)
            woken += 1
    except RedisError as exc:
        log.warning("could not wake the notifier, the sweep will: %s", type(exc).__name__)
    return woken


def _enqueue_once(services: Services, queue: Queue, user_ref: str) -> None:
    """Queue the user's job unless one is queued and not started yet."""
    # A started or dead job keeps its id, and a job that started before our commit may not see
    # it: then bump the user's generation, which names the next job.
    generation_key = _key(services, "generation", user_ref)
    generation = int(services.redis.get(generation_key) or 0)
    for _ in range(3):
        job_id = f"notify-{user_key(user_ref)}-{generation}"
        try:
            queue.enqueue_call(
                JOB,
                args=(user_ref,),
                job_id=job_id,
                unique=True,
                result_ttl=0,
                timeout=JOB_TIMEOUT_SECONDS,
                failure_ttl=FAILURE_TTL_SECONDS,
            )
            return
        except DuplicateJobError:
            try:
                if Job.fetch(job_id, connection=queue.connection).get_status() == JobStatus.QUEUED:
                    return
            except NoSuchJobError:
                pass
        generation = services.redis.incr(generation_key)
        services.redis.expire(generation_key, KEY_TTL_SECONDS)


def deliver_user_notifications(
    user_ref: str,
    *,
    backoff_base: float | None = None,
    max_attempts: int | None = None,
    budget_seconds: float | None = None,
) -> int:
    """RQ job: deliver one user's due notifications in order, alone; how many were delivered."""
    services = job_services()
    if not services.settings.notify_url or services.settings.notify_secret is None:
        raise ConfigurationError("notifications need VERIHOOK_NOTIFY_URL and _NOTIFY_SECRET")
    limits = (
        backoff_base,
        max_attempts or MAX_ATTEMPTS,
        time.monotonic() + (BUDGET_SECONDS if budget_seconds is None else budget_seconds),
    )
    redis, dirty = services.redis, _key(services, "dirty", user_ref)
    delivered = 0
    while True:
        lock = redis.lock(
            _key(services, "lock", user_ref),
            timeout=LOCK_TIMEOUT_SECONDS,
            raise_on_release_error=False,
        )
        if not lock.acquire(blocking=False):
            redis.set(dirty, "1", ex=KEY_TTL_SECONDS)  # the holder looks again before it leaves
            if not lock.acquire(blocking=False):
                return delivered
        try:
            while True:
                redis.delete(dirty)
                count, hand_over = _deliver_line(services, user_ref, lock, *limits)
                delivered += count
                if hand_over or not redis.exists(dirty):
                    break
        finally:
            lock.release()
        if hand_over:
            wake_notifier(services, {user_ref})
        if hand_over or not redis.exists(dirty):
            return delivered


def _deliver_line(
    services: Services,
    user_ref: str,
    lock: Lock,
    backoff_base: float | None,
    max_attempts: int,
    deadline: float,
) -> tuple[int, bool]:
    """POST the user's line until it is empty, not due or blocked; (delivered, hand over?)."""
    delivered = 0
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False) as http:
        while True:
            with transaction(services.engine) as db:
                head = (
                    db.execute(
                        select(Notification)
                        .where(
                            col(Notification.user_ref) == user_ref,
                            col(Notification.state) == PENDING,
                        )
                        .order_by(col(Notification.id))
                        .limit(1)
                    )
                    .scalars()
                    .first()
                )
            if head is None or utc(head.next_attempt_at) > utcnow():
                return delivered, False
            if time.monotonic() > deadline or not _renew(lock):
                return delivered, True
            code, error, retry_after = _post(services, http, head)
            delay = max(
                backoff_seconds(head.attempts + 1, backoff_base),
                min(retry_after, BACKOFF_MAX_SECONDS),
            )
            done = _record(services, head, code, error, delay, max_attempts)
            if done is None or done.state == FAILED:  # gone or exhausted: the line moves on
                continue
            if done.state == PENDING:  # the line waits for this one's retry
                _schedule_retry(services, done)
                return delivered, False
            delivered += 1


def _renew(lock: Lock) -> bool:
    try:
        return lock.reacquire()
    except LockError:
        log.warning("lost a notifier lock; handing the user over to a fresh job")
        return False


def _post(
    services: Services, http: httpx.Client, n: Notification
) -> tuple[int | None, str | None, float]:
    """POST one notification; (status code, error or None, retry-after seconds)."""
    assert services.settings.notify_secret is not None  # deliver() sends nothing without one
    secret = services.settings.notify_secret.get_secret_value()
    body, timestamp = n.payload.encode(), int(time.time())
    headers = {
        "webhook-id": n.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhook(secret, n.webhook_id, timestamp, body),
        "content-type": "application/json",
    }
    try:
        answer = http.post(services.settings.notify_url or "", content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], 0.0
    if answer.is_success:
        return answer.status_code, None, 0.0
    retry_after = answer.headers.get("retry-after", "")
    return (
        answer.status_code,
        f"HTTP {answer.status_code}",
        float(retry_after) if retry_after.isdigit() else 0.0,
    )


def _record(
    services: Services,
    head: Notification,
    code: int | None,
    error: str | None,
    delay: float,
    max_attempts: int,
) -> Notification | None:
    """Record one attempt and its outcome on the notification (None if it is gone)."""
    now = utcnow()
    with transaction(services.engine) as db:
        n = db.get(Notification, head.id)
        if n is None:
            return None
        db.add(
            NotificationAttempt(notification_id=head.id or 0, at=now, status_code=code, error=error)
        )
        n.attempts, n.last_error = n.attempts + 1, error
        if error is None:
            n.state, n.delivered_at = DELIVERED, now
        elif n.attempts >= max_attempts:
            n.state = FAILED
        else:
            n.next_attempt_at = now + timedelta(seconds=delay)
        db.add(n)
    inc(NOTIFICATION_ATTEMPTS, "delivered" if error is None else "failed")
    if n.state == FAILED:
        inc(NOTIFICATIONS_EXHAUSTED)
    log.log(
        logging.INFO if error is None else logging.WARNING,
        "notification %s: attempt %s %s",
        n.id,
        n.attempts,
        n.state,
        extra={"count": n.attempts, "state": n.state, "reason": (error or "")[:80]},
    )
    return n


def _schedule_retry(services: Services, n: Notification) -> None:
    """Queue the retry for `next_attempt_at` (the sweep finds it too if this fails)."""
    delay = max(utc(n.next_attempt_at) - utcnow(), timedelta(0))
    try:
        Queue(services.settings.queue_name, connection=services.redis).enqueue_in(
            delay,
            JOB,
            n.user_ref,
            job_id=f"notify-{user_key(n.user_ref)}-retry-{n.id}-{n.attempts}",
            unique=True,
            result_ttl=0,
            job_timeout=JOB_TIMEOUT_SECONDS,
            failure_ttl=FAILURE_TTL_SECONDS,
        )
    except DuplicateJobError:
        pass
    except RedisError as exc:
        log.warning("could not schedule a notification retry: %s", type(exc).__name__)


def sweep_due_notifications(services: Services) -> int:
    """Wake the notifier for every user whose oldest pending notification is due; how many."""
    earlier = aliased(Notification)
    with transaction(services.engine) as db:
        users = set(
            db.execute(
                select(col(Notification.user_ref))
                .where(
                    col(Notification.state) == PENDING,
                    col(Notification.next_attempt_at) <= utcnow(),
                    ~exists().where(
                        col(earlier.user_ref) == col(Notification.user_ref),
                        col(earlier.state) == PENDING,
                        col(earlier.id) < col(Notification.id),
                    ),
                )
                .distinct()
            ).scalars()
        )
    if users:
        wake_notifier(services, users)
    return len(users)


def resend(services: Services, notification_id: int) -> Notification:
    """Make a failed or delivered notification pending (history kept), or a pending one due now."""
    with transaction(services.engine) as db:
        n = db.get(Notification, notification_id)
        if n is None:
            raise NotificationNotFound(f"no notification with id {notification_id}")
        if n.state != PENDING:
            n.state, n.attempts, n.delivered_at, n.last_error = PENDING, 0, None, None
        n.next_attempt_at = utcnow()
        db.add(n)
    wake_notifier(services, {n.user_ref})
    return n
