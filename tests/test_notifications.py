"""Backend notifications end to end: real HTTP backend, real Redis and RQ, both databases.

Every delivery the backend receives is checked with the independent `standardwebhooks` library.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select, update
from sqlmodel import Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app import create_app
from receiver.store.models import utcnow
from receiver.store.notification_models import Notification, NotificationAttempt
from reconciler import backoff, jobs, notify
from reconciler.cli import notifications as notify_cli
from reconciler.drain import drain_ready_events
from reconciler.worker_loop import PromptWorker
from tests.support.notify_receiver import NotifyReceiver, Received
from tests.support.redis_server import free_port
from tests.support.signing import contiguity_event, contiguity_header

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
T0 = 1_700_000_000


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    """The product backend: a real HTTP server on a free port."""
    with NotifyReceiver() as server:
        yield server


@pytest.fixture
def notifying(make_services, receiver):  # type: ignore[no-untyped-def]
    """Services that notify `receiver`, on a flushed Redis, installed for jobs."""
    services = make_services(notify_url=receiver.url, notify_secret=SECRET)
    services.redis.flushdb()
    jobs.use_services(services)
    return services


@pytest.fixture
def client(notifying):  # type: ignore[no-untyped-def]
    """The receiver app on the notifying services."""
    return create_app(services=notifying).test_client()


def change_status(client, services, kind: str, user_ref: str, at: int) -> None:  # type: ignore[no-untyped-def]
    """Deliver a signed Contiguity webhook through HTTP, then apply it."""
    body = contiguity_event(kind, f"vs_{user_ref}", user_ref=user_ref, timestamp=at)
    answer = client.post(
        "/webhooks/contiguity",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Contiguity-Signature": contiguity_header(body),
        },
    )
    assert answer.status_code == 200, answer.get_json()
    assert drain_ready_events(services).applied == 1


def run_worker(services) -> None:  # type: ignore[no-untyped-def]
    """One burst of an RQ worker whose scheduler first enqueues due scheduled jobs (verihook's
    PromptWorker, as `verihook worker --burst` runs: RQ's own may take 60 s to stop)."""
    PromptWorker([services.settings.queue_name], connection=services.redis).work(
        burst=True, with_scheduler=True
    )


def rows(engine, user_ref: str) -> list[Notification]:  # type: ignore[no-untyped-def]
    """A user's notifications in creation order."""
    with Session(engine) as db:
        return list(
            db.execute(
                select(Notification)
                .where(Notification.user_ref == user_ref)
                .order_by(Notification.id)
            ).scalars()
        )


def attempts_of(engine, notification_id: int) -> list[NotificationAttempt]:  # type: ignore[no-untyped-def]
    """A notification's recorded attempts in order."""
    with Session(engine) as db:
        return list(
            db.execute(
                select(NotificationAttempt)
                .where(NotificationAttempt.notification_id == notification_id)
                .order_by(NotificationAttempt.id)
            ).scalars()
        )


def verified(received: Received) -> dict:  # type: ignore[type-arg]
    """The payload, after standardwebhooks has verified the signature and timestamp."""
    return Webhook(SECRET).verify(received.body, received.headers)


def test_status_change_is_notified_signed(client, notifying, receiver, engine):  # type: ignore[no-untyped-def]
    change_status(client, notifying, "verified", "user-n1", T0)
    run_worker(notifying)

    assert len(receiver.received) == 1
    got = receiver.received[0]
    payload = verified(got)
    assert payload["type"] == "verification.user_status.changed"
    assert payload["data"]["user_ref"] == "user-n1"
    assert payload["data"]["status"] == "verified"
    assert payload["data"]["previous_status"] is None
    assert got.headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(os.urandom(32)).decode()).verify(got.body, got.headers)
    [row] = rows(engine, "user-n1")
    assert (row.state, row.attempts, row.webhook_id) == ("delivered", 1, got.webhook_id)
    assert [a.status_code for a in attempts_of(engine, row.id)] == [200]


def test_retries_after_500s_keep_the_webhook_id(
    client,
    notifying,
    receiver,
    engine,  # type: ignore[no-untyped-def]
    monkeypatch,
):
    monkeypatch.setattr(backoff, "BACKOFF_BASE_SECONDS", 0.0)  # retries are due at once
    receiver.fail_next(2)
    change_status(client, notifying, "processing", "user-r1", T0)
    for _ in range(6):  # each burst: the scheduler enqueues the retry, the worker runs it
        run_worker(notifying)
        if receiver.delivered():
            break

    assert [r.status for r in receiver.received] == [500, 500, 200]
    [row] = rows(engine, "user-r1")
    assert {r.webhook_id for r in receiver.received} == {row.webhook_id}
    assert all(verified(r)["data"]["status"] == "processing" for r in receiver.received)
    assert (row.state, row.attempts, row.last_error) == ("delivered", 3, None)
    assert [a.status_code for a in attempts_of(engine, row.id)] == [500, 500, 200]


def test_failure_backs_off_and_the_sweep_finds_due_ones(client, notifying, receiver, engine):  # type: ignore[no-untyped-def]
    receiver.fail_next(1)
    change_status(client, notifying, "processing", "user-s1", T0)
    assert notify.deliver_user_notifications("user-s1") == 0
    [row] = rows(engine, "user-s1")
    [attempt] = attempts_of(engine, row.id)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HTTP 500")
    assert (attempt.status_code, attempt.error) == (500, "HTTP 500")
    assert row.next_attempt_at - attempt.at == timedelta(seconds=backoff.BACKOFF_BASE_SECONDS)
    scheduled = ScheduledJobRegistry(notifying.settings.queue_name, connection=notifying.redis)
    assert len(scheduled.get_job_ids()) == 1
    change_status(client, notifying, "verified", "user-s1", T0 + 10)  # due, but behind row
    assert notify.sweep_due_notifications(notifying) == 0  # the line's head is not due yet

    with Session(engine) as db:
        db.execute(
            update(Notification).where(Notification.id == row.id).values(next_attempt_at=utcnow())
        )
        db.commit()
    assert notify.sweep_due_notifications(notifying) == 1
    run_worker(notifying)
    assert [r.status for r in receiver.received] == [500, 200, 200]
    assert [r.webhook_id for r in receiver.received[1:]] == [
        n.webhook_id for n in rows(engine, "user-s1")
    ]
    assert [n.state for n in rows(engine, "user-s1")] == ["delivered", "delivered"]


def test_a_user_s_notifications_arrive_in_creation_order(client, notifying, receiver, engine):  # type: ignore[no-untyped-def]
    user = "user-o1"
    change_status(client, notifying, "processing", user, T0)
    first = rows(engine, user)[0].webhook_id
    receiver.fail_id(first, times=3)
    notify.deliver_user_notifications(user, backoff_base=0)
    change_status(client, notifying, "requires_input", user, T0 + 10)
    notify.deliver_user_notifications(user, backoff_base=0)
    change_status(client, notifying, "verified", user, T0 + 20)
    for _ in range(6):
        notify.deliver_user_notifications(user, backoff_base=0)
        if len(receiver.delivered()) == 3:
            break

    created = [n.webhook_id for n in rows(engine, user)]
    assert len(created) == 3
    assert [r.webhook_id for r in receiver.received] == [first] * 4 + created[1:]
    statuses = [verified(r)["data"] for r in receiver.delivered()]
    assert [(d["previous_status"], d["status"]) for d in statuses] == [
        (None, "processing"),
        ("processing", "requires_input"),
        ("requires_input", "verified"),
    ]
    assert [n.state for n in rows(engine, user)] == ["delivered"] * 3


def test_exhausted_delivery_is_failed_visible_and_resendable(
    client,
    notifying,
    receiver,  # type: ignore[no-untyped-def]
    engine,
    monkeypatch,
):
    user = "user-f1"
    change_status(client, notifying, "processing", user, T0)
    doomed = rows(engine, user)[0]
    receiver.fail_id(doomed.webhook_id)  # until healed
    change_status(client, notifying, "verified", user, T0 + 10)
    exhausted = "verihook_notifications_exhausted_total"
    exhausted_before = REGISTRY.get_sample_value(exhausted) or 0.0
    for _ in range(3):
        notify.deliver_user_notifications(user, backoff_base=0, max_attempts=3)

    failed, later = rows(engine, user)
    assert (failed.state, failed.attempts, failed.last_error) == ("failed", 3, "HTTP 500")
    assert REGISTRY.get_sample_value(exhausted) == exhausted_before + 1  # the alert's counter
    assert later.state == "delivered"  # an exhausted one no longer holds the line

    monkeypatch.setattr(notify_cli, "services_or_exit", lambda: notifying)
    cli = CliRunner()
    listed = cli.invoke(notify_cli.notifications, ["list", "--state", "failed"])
    assert listed.exit_code == 0, listed.output
    [header, *table] = [line.split() for line in listed.output.splitlines()]
    assert header == ["id", "user_ref", "state", "attempts", "last_error", "created"]
    assert [line[:6] for line in table] == [[str(failed.id), user, "failed", "3", "HTTP", "500"]]
    missing = cli.invoke(notify_cli.notifications, ["resend", "999999"])
    assert missing.exit_code == 1 and "no notification with id 999999" in missing.output

    receiver.heal()
    resent = cli.invoke(notify_cli.notifications, ["resend", str(failed.id)])
    assert resent.exit_code == 0, resent.output
    assert rows(engine, user)[0].state == "pending"
    run_worker(notifying)  # resend woke the notifier

    again = rows(engine, user)[0]
    assert (again.state, again.attempts, again.last_error) == ("delivered", 1, None)
    assert [a.status_code for a in attempts_of(engine, failed.id)] == [500, 500, 500, 200]
    assert receiver.received[-1].webhook_id == failed.webhook_id
    assert verified(receiver.received[-1])["data"]["status"] == "processing"
    mine = cli.invoke(notify_cli.notifications, ["list", "--user", user])
    assert [line.split()[2] for line in mine.output.splitlines()[1:]] == ["delivered"] * 2
    swept = cli.invoke(notify_cli.notifications, ["sweep"])
    assert swept.exit_code == 0 and "woke the notifier for 0 user(s)" in swept.output


def test_redis_down_never_fails_the_caller(make_services, receiver, engine):  # type: ignore[no-untyped-def]
    dead = make_services(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        notify_url=receiver.url,
        notify_secret=SECRET,
    )
    started = time.monotonic()
    assert notify.wake_notifier(dead, {"user-d1", "user-d2"}) == 0
    assert notify.sweep_due_notifications(dead) == 0
    assert time.monotonic() - started < 5


def test_wake_ups_coalesce_but_a_running_job_gets_a_follow_up(notifying):  # type: ignore[no-untyped-def]
    queue = Queue(notifying.settings.queue_name, connection=notifying.redis)
    assert notify.wake_notifier(notifying, ["user-w1", "user-w1"]) == 1
    assert notify.wake_notifier(notifying, {"user-w1"}) == 1
    [job_id] = queue.get_job_ids()
    Job.fetch(job_id, connection=notifying.redis).set_status(JobStatus.STARTED)
    notify.wake_notifier(notifying, {"user-w1"})
    assert len(queue.get_job_ids()) == 2 and queue.get_job_ids()[0] == job_id


def test_a_busy_user_is_left_to_the_lock_holder(notifying, receiver):  # type: ignore[no-untyped-def]
    lock = notifying.redis.lock(notify._key(notifying, "lock", "user-b1"), timeout=10)
    assert lock.acquire(blocking=False)
    try:
        assert notify.deliver_user_notifications("user-b1") == 0
        assert notifying.redis.exists(notify._key(notifying, "dirty", "user-b1"))
    finally:
        lock.release()
    assert receiver.received == []


def test_concurrent_jobs_for_one_user_never_overlap(client, notifying, receiver, engine):  # type: ignore[no-untyped-def]
    user = "user-c1"
    for offset, kind in enumerate(("processing", "requires_input", "verified")):
        change_status(client, notifying, kind, user, T0 + 10 * offset)
    receiver.delay_seconds = 0.1
    runs = [
        threading.Thread(target=notify.deliver_user_notifications, args=(user,)) for _ in range(4)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=10)

    assert receiver.max_in_flight == 1
    assert [r.webhook_id for r in receiver.received] == [n.webhook_id for n in rows(engine, user)]
    assert [n.state for n in rows(engine, user)] == ["delivered"] * 3
