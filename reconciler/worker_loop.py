"""`verihook worker`'s loop: an RQ `SimpleWorker` that outlives Redis outages.

RQ's `Worker.work()` retries a lost connection only while it waits for a job (here at most
every 5 s rather than RQ's 60 s). A Redis error anywhere else (registering the worker, marking
a job finished, its heartbeat, its maintenance) makes it log "found an unhandled exception,
quitting..." and return, or raise from its teardown when Redis is still away. `run_worker` wraps
it: when a run ends on a Redis error it logs, retires what the dead run left behind, waits
(0.5 s doubling to 5 s, reset after a run that lasted 30 s) and starts a new worker (a new RQ
name: the old one may still be registered). Jobs need no care: a drain job cut short leaves its
events in the outbox, and the scheduler's sweep wakes the workers again.

SIGTERM/SIGINT still stop it promptly: during a run RQ's own handlers do the warm shutdown (the
job in progress finishes; before RQ installs them, the process's default handlers apply); between
runs a signal ends the wait at once. A run that ends on
anything but a Redis error ends `verihook worker` with exit status 1, for its supervisor.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.exceptions import StopRequested

from receiver.health_server import Heartbeat
from receiver.services import Services

log = logging.getLogger(__name__)

RESTART_PAUSE_SECONDS = 0.5
"""The first wait before a new run after a Redis error; it doubles up to the maximum."""
MAX_RESTART_PAUSE_SECONDS = 5.0
STEADY_RUN_SECONDS = 30.0
WORKER_TTL_SECONDS = 60
"""RQ's worker TTL; an idle worker waits for a job at most this minus 15 s before its loop goes
round (and beats). RQ's default, 420 s, would make a live idle worker look stalled."""
"""A run that lasted this long resets the wait to its first value."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """Whether SIGTERM/SIGINT asked this process to stop (set by either set of handlers)."""

    def __init__(self) -> None:
        self.requested = False
        self.original = {number: signal.getsignal(number) for number in STOP_SIGNALS}

    def handle(self, signum: int, frame: Any) -> None:
        """The handler between runs: remember the request and end whatever waits."""
        self.requested = True
        raise StopRequested()

    def install(self) -> None:
        """Between runs: make `handle` the SIGTERM/SIGINT handler."""
        for number in STOP_SIGNALS:
            signal.signal(number, self.handle)

    def restore(self) -> None:
        """For a run, and at the end: the process's own handlers. RQ installs its own once the
        worker has started; the scheduler process it forks before that must not inherit
        `handle` (a SIGTERM from RQ's teardown would raise in it instead of ending it)."""
        for number, handler in self.original.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


PUBSUB_POLL_SECONDS = 1.0
"""How long RQ's command-channel thread waits for a message before it checks whether to stop."""


class PromptWorker(SimpleWorker):
    """RQ's `SimpleWorker`, whose command-channel thread looks up every second.

    RQ's own thread waits up to 60 s (for a message, or for the subscription when the worker
    stops before it was confirmed) and `unsubscribe` joins it, so a stopping worker (a burst run
    ending, SIGTERM) could take a minute to exit.
    """

    def subscribe(self) -> None:
        """RQ's subscribe, with a thread that waits at most PUBSUB_POLL_SECONDS at a time."""
        self.log.debug("Worker %s: subscribing to %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # rq declares it None
            sleep_time=PUBSUB_POLL_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )


class VerihookWorker(PromptWorker):
    """A `SimpleWorker` that reports a stop request to its `StopFlag` and remembers the error
    that ended its work loop (`loop_error`)."""

    max_connection_wait_time = MAX_RESTART_PAUSE_SECONDS
    """RQ's own retry while it waits for a job: 1 s doubling to this (RQ's default is 60 s, so
    an idle worker could notice Redis's return a minute late)."""

    def __init__(
        self, *args: Any, stop: StopFlag, heartbeat: Heartbeat | None = None, **kwargs: Any
    ) -> None:
        self.stop = stop
        self.heartbeat_of_loop = heartbeat or Heartbeat()
        self.loop_error: BaseException | None = None
        kwargs.setdefault("worker_ttl", WORKER_TTL_SECONDS)
        super().__init__(*args, **kwargs)

    def request_stop(self, signum: int, frame: Any) -> None:
        """RQ's warm shutdown, noted first (it may itself fail when Redis is away)."""
        self.stop.requested = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # rq: unannotated

    def _noting(self, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = step(*args, **kwargs)
        except StopRequested:
            raise
        except Exception as exc:  # noted for run_worker, then RQ's loop handles it
            self.loop_error = exc
            raise
        self.loop_error = None  # RQ recovered (it retries a lost connection while it waits)
        self.heartbeat_of_loop.beat()
        return result

    # The steps of RQ's work loop; an exception escaping one of them ends the loop.
    def check_for_suspension(self, burst: bool) -> None:
        """RQ's step, noting the error that ends the loop."""
        self._noting(super().check_for_suspension, burst)

    def run_maintenance_tasks(self) -> None:
        """RQ's step, noting the error that ends the loop."""
        self._noting(super().run_maintenance_tasks)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        """RQ's step, noting the error that ends the loop."""
        return self._noting(super().dequeue_job_and_maintain_ttl, timeout, max_idle_time)

    def execute_job(self, job: Any, queue: Any) -> None:
        """RQ's step, noting the error that ends the loop."""
        self._noting(super().execute_job, job, queue)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's step, noting the error that ends the loop."""
        self._noting(super().heartbeat, timeout, pipeline)


def redis_error(exc: BaseException | None) -> RedisError | None:
    """The RedisError among an exception and its causes/contexts, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, RedisError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def retire(worker: VerihookWorker | None) -> None:
    """Best effort, what RQ's teardown could not do with Redis away: register the worker's
    death (else it stays listed until its key expires) and stop its pub/sub thread (it closes
    its connection when its current wait ends)."""
    if worker is None:
        return
    try:
        worker.register_death()  # type: ignore[no-untyped-call]  # rq: unannotated
    except RedisError:
        pass
    if worker.pubsub_thread is not None:
        worker.pubsub_thread.stop()


def wait(seconds: float, stop: StopFlag) -> None:
    """Sleep, ending early (StopRequested) when a stop is requested."""
    deadline = time.monotonic() + seconds
    while not stop.requested and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))
    if stop.requested:
        raise StopRequested()


def run_worker(
    services: Services,
    *,
    worker_class: type[VerihookWorker] = VerihookWorker,
    sleep: Callable[[float, StopFlag], None] = wait,
    heartbeat: Heartbeat | None = None,
) -> int:
    """Work the queue until SIGTERM/SIGINT; start again after a Redis error. Returns the exit
    status: 0 when stopped on request, 1 when a run ended on any other error. `heartbeat` beats
    at every step of RQ's loop and every restart (the `/healthz` of receiver/health_server.py)."""
    stop = StopFlag()
    heartbeat = heartbeat or Heartbeat()
    pause = RESTART_PAUSE_SECONDS
    queue = services.settings.queue_name
    try:
        while not stop.requested:
            worker: VerihookWorker | None = None
            began, error, finished = time.monotonic(), None, False
            try:
                stop.restore()
                heartbeat.beat()
                worker = worker_class(
                    [queue], connection=services.redis, stop=stop, heartbeat=heartbeat
                )
                worker.work(with_scheduler=True)
                finished, error = True, worker.loop_error
            except StopRequested:
                pass
            except Exception as exc:  # a RedisError from RQ's start or teardown; others below
                error = exc
            stop.install()
            if not finished:
                retire(worker)
            if stop.requested or error is None:  # stopped, or RQ's loop ended by itself
                break
            if redis_error(error) is None:
                log.error(
                    "worker loop ended on an unexpected error; exiting",
                    exc_info=(type(error), error, error.__traceback__),
                )
                return 1
            if time.monotonic() - began >= STEADY_RUN_SECONDS:
                pause = RESTART_PAUSE_SECONDS
            log.warning(
                "worker lost Redis (%s: %s); starting again in %.1f s",
                type(error).__name__,
                error,
                pause,
                extra={"reason": type(error).__name__},
            )
            sleep(pause, stop)
            pause = min(pause * 2, MAX_RESTART_PAUSE_SECONDS)
    except StopRequested:
        pass
    finally:
        stop.restore()
    log.info("worker stopped")
    return 0
