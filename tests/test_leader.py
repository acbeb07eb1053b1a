"""Leader election between real scheduler processes: one polls; kill -9 it, the other takes over."""

from __future__ import annotations

import os
import signal
import time

from redis import Redis

from reconciler.leader import LEADER_KEY, LeaderLock
from tests.support.processes import settings_env, verihook
from tests.support.world import start_world, stop_world

LOCK_SECONDS = 2.0


def holder_pid(redis: Redis, queue: str) -> int | None:
    value = redis.get(LEADER_KEY.format(queue=queue))
    return int(value.decode().split(":")[1]) if value else None


def wait_for(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def test_lock_is_exclusive_renewable_and_expires(services):  # type: ignore[no-untyped-def]
    first = LeaderLock(services.redis, "q", ttl_seconds=0.5)
    second = LeaderLock(services.redis, "q", ttl_seconds=0.5)
    assert first.refresh() and not second.refresh()
    time.sleep(0.3)
    assert first.refresh() and not second.refresh()  # renewed before expiry
    time.sleep(0.7)  # the first stopped renewing: it is as good as dead
    assert second.refresh() and second.is_leader
    assert not first.refresh()


def test_two_schedulers_one_polls_and_the_other_takes_over(make_services):  # type: ignore[no-untyped-def]
    world = start_world(
        make_services,
        policy={"poll_interval_seconds": 0.3, "max_poll_interval_seconds": 0.3},
        leader_lock_seconds=LOCK_SECONDS,
        scheduler_tick_seconds=0.1,
    )
    procs = []
    try:
        sim = world.sims["nevis"]
        sim.configure(callback_url=None)  # no redirects: only the schedulers' polls settle it
        created = [world.create("nevis", f"u-leader-{i}") for i in range(5)]
        env = settings_env(world.services.settings)
        procs = [verihook("scheduler", env=env) for _ in range(2)]
        redis, queue = world.services.redis, world.services.settings.queue_name
        wait_for(lambda: holder_pid(redis, queue) in {p.pid for p in procs}, 20)
        leader = holder_pid(redis, queue)
        time.sleep(1.5)
        polled = {s["session_id"]: world.sims["nevis"].truth(s["session_id"]) for s in created}
        assert all(truth is not None for truth in polled.values())
        calls_with_two = world.status_calls("nevis")
        # one leader, polling each session once per interval: ~1.5 s / 0.3 s ≈ 5 per session
        assert 0 < calls_with_two <= 5 * 8, calls_with_two
        os.kill(leader, signal.SIGKILL)
        took = wait_for(lambda: holder_pid(redis, queue) not in (None, leader), LOCK_SECONDS + 5)
        assert took <= LOCK_SECONDS + 1.0, took  # within one lock period (plus a heartbeat)
        before = world.status_calls("nevis")
        for item in created:
            sim.script(item["session_id"], "verified")
        sim.wait_idle(timeout=5)
        wait_for(lambda: world.status_calls("nevis") > before, 10)  # the new leader polls
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        stop_world(world)
