"""A timer queue: one daemon thread running submitted callables when due, earliest first."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Action = Callable[[], None]


class TimerQueue:
    """Runs callables on one daemon thread once due; equal due times run in submission order."""

    def __init__(self, name: str) -> None:
        self._heap: list[tuple[float, int, Action]] = []
        self._sequence = itertools.count()
        self._cond = threading.Condition()
        self._running = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, delay: float, action: Action) -> None:
        """Run action after delay seconds (ignored once the queue is stopped)."""
        with self._cond:
            if self._stopped:
                return
            due = time.monotonic() + max(0.0, delay)
            heapq.heappush(self._heap, (due, next(self._sequence), action))
            self._cond.notify_all()

    def is_idle(self) -> bool:
        """True when nothing is queued or running."""
        with self._cond:
            return not self._heap and not self._running

    def wait_idle(self, deadline: float) -> bool:
        """Block until idle or until time.monotonic() reaches deadline; return whether idle."""
        with self._cond:
            while self._heap or self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
            return True

    def clear(self) -> None:
        """Drop everything queued (a running action finishes)."""
        with self._cond:
            self._heap.clear()
            self._cond.notify_all()

    def stop(self, timeout: float = 2.0) -> None:
        """Drop queued work, stop the thread and wait up to timeout for it."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _next_action(self) -> Action | None:
        """Wait for the next due action; None when stopped."""
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait(1.0)
                    continue
                wait_for = self._heap[0][0] - time.monotonic()
                if wait_for > 0:
                    self._cond.wait(min(wait_for, 1.0))
                    continue
                self._running = True
                return heapq.heappop(self._heap)[2]
            return None

    def _loop(self) -> None:
        """Thread body: run due actions until stopped."""
        while (action := self._next_action()) is not None:
            try:
                action()
            except Exception:  # thread boundary: log and keep the queue alive
                log.exception("simulator timer action failed")
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
