"""`run_worker` in process (reconciler/worker_loop.py): which endings start a new run, the
waits between runs, and the exit status. The real process is tested in test_process_chaos.py."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.exceptions import StopRequested

from reconciler.worker_loop import StopFlag, VerihookWorker, redis_error, run_worker

QUEUE = "verihook-worker-loop"


@pytest.fixture(autouse=True)
def keep_signal_handlers() -> Iterator[None]:
    """SIGTERM's default action while the test runs, as in `verihook worker` (an in-process RQ
    worker of an earlier test may have left its handler, which the scheduler process RQ forks
    would inherit: RQ's teardown could then not end it); pytest's handlers back afterwards."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


class Sleeps:
    """Records the waits between runs; asks for a stop after `runs` of them."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.pauses: list[float] = []

    def __call__(self, seconds: float, stop: StopFlag) -> None:
        self.pauses.append(seconds)
        if len(self.pauses) >= self.runs:
            stop.requested = True
            raise StopRequested()


def failing(error: Exception) -> type[VerihookWorker]:
    """A worker whose loop fails at its first step with `error` (Redis itself is fine)."""

    class Failing(VerihookWorker):
        started = 0

        def check_for_suspension(self, burst: bool) -> None:
            type(self).started += 1

            def fail() -> None:
                raise error

            self._noting(fail)

    return Failing


def test_a_run_ending_on_a_redis_error_starts_again_with_growing_waits(  # type: ignore[no-untyped-def]
    services,
) -> None:
    worker_class = failing(RedisConnectionError("gone"))
    sleeps = Sleeps(runs=6)
    assert run_worker(services, worker_class=worker_class, sleep=sleeps) == 0
    assert worker_class.started == 6
    assert sleeps.pauses == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_run_ending_on_another_error_exits_with_status_1(services) -> None:  # type: ignore[no-untyped-def]
    worker_class = failing(ValueError("a bug"))
    sleeps = Sleeps(runs=1)
    assert run_worker(services, worker_class=worker_class, sleep=sleeps) == 1
    assert worker_class.started == 1 and sleeps.pauses == []


def test_redis_error_is_found_among_causes() -> None:
    try:
        try:
            raise RedisConnectionError("gone")
        except RedisConnectionError as inner:
            raise RuntimeError("while finishing a job") from inner
    except RuntimeError as outer:
        error: Any = outer
    assert isinstance(redis_error(error), RedisConnectionError)
    assert redis_error(ValueError()) is None and redis_error(None) is None
