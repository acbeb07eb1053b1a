"""Off the request path: the coalescing wake-up of the workers (real Redis) and the delivery log
lines sampled under load."""

from __future__ import annotations

import logging
import time

from rq import Queue

from receiver.delivery_log import DeliveryLog
from receiver.queue import Waker, clear_wake_flag
from tests.support.redis_server import RedisServer


def drain_jobs(redis, queue_name: str) -> int:  # type: ignore[no-untyped-def]
    return Queue(queue_name, connection=redis).count


def wait_for(condition, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_burst_of_requests_queues_one_drain_job(services) -> None:  # type: ignore[no-untyped-def]
    redis, queue = services.redis, services.settings.queue_name
    waker = Waker(lambda: redis, queue)
    for _ in range(500):
        waker.request()
    assert wait_for(lambda: drain_jobs(redis, queue) >= 1)
    time.sleep(0.1)
    assert drain_jobs(redis, queue) == 1  # coalesced: a queued drain job serves them all


def test_a_request_after_the_drain_job_started_queues_another(services) -> None:  # type: ignore[no-untyped-def]
    """The job clears the wake flag as it starts; a commit after that must not be left behind."""
    redis, queue = services.redis, services.settings.queue_name
    waker = Waker(lambda: redis, queue, interval=0.0)
    waker.request()
    assert wait_for(lambda: drain_jobs(redis, queue) == 1)
    Queue(queue, connection=redis).empty()
    clear_wake_flag(redis, queue)  # what a starting drain job does
    waker.request()
    assert wait_for(lambda: drain_jobs(redis, queue) == 1)


def test_a_dead_redis_costs_one_warning_and_recovery_one_line(services, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="receiver.queue")
    server = RedisServer().start()
    from receiver.queue import connect

    redis = connect(server.url)
    waker = Waker(lambda: redis, "waker-test", interval=0.0)
    server.kill()
    for _ in range(50):
        waker.request()
        time.sleep(0.002)
    assert wait_for(lambda: any("unreachable" in r.getMessage() for r in caplog.records))
    time.sleep(0.1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    restarted = RedisServer(port=server.port).start()
    try:
        waker.request()
        assert wait_for(lambda: any("answers again" in r.getMessage() for r in caplog.records))
        assert wait_for(lambda: drain_jobs(redis, "waker-test") == 1)
    finally:
        redis.close()
        restarted.kill()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def delivery(outcome: str = "accepted") -> dict[str, object]:
    return {"provider": "contiguity", "outcome": outcome, "event_id": 1}


LINE = ("POST", "/webhooks/contiguity", 200, 1.5)


def test_every_delivery_is_logged_below_the_limit_and_the_rest_summarised(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="verihook.access")
    clock = Clock()
    log = DeliveryLog(per_second=3, clock=clock)
    for outcome in ("accepted", "accepted", "duplicate", "accepted", "unauthenticated", "accepted"):
        log.delivery(LINE, delivery(outcome))
    assert len(caplog.records) == 3
    clock.now += 1
    log.delivery(LINE, delivery())
    messages = [r.getMessage() for r in caplog.records]
    assert messages[3] == (
        "3 deliveries not logged in the last second: 2 accepted, 1 unauthenticated"
    )
    assert caplog.records[3].count == 3  # type: ignore[attr-defined]
    assert messages[4] == "POST /webhooks/contiguity 200 1.5ms: accepted contiguity delivery"
    assert caplog.records[4].event_id == 1  # type: ignore[attr-defined]


def test_a_limit_of_zero_logs_every_delivery(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="verihook.access")
    log = DeliveryLog(per_second=0, clock=Clock())
    for _ in range(250):
        log.delivery(LINE, delivery())
    assert len(caplog.records) == 250
