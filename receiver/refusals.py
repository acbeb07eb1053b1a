"""Counting refused deliveries durably, off the request path.

A refusal must stay cheap (a wrong signature costs no database write: anyone can send one, as
fast as they like) and its 401 must not wait for, or depend on, the database. So a receiver
process counts refusals in memory (`record`: a dict update under a lock) and a background thread
adds them to `refusal_counts` at most once every REFUSAL_FLUSH_SECONDS, in one transaction,
however many arrived. A database that fails keeps the counts in memory until it answers again
(bounded: providers × reasons × the buckets of the days kept). gunicorn's `worker_exit` hook
writes what is left when a worker stops; a killed process loses at most its last second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from receiver.store.db import transaction
from receiver.store.refusals import (
    MAX_REASON_LENGTH,
    REFUSALS_KEEP_DAYS,
    Refusals,
    add_refusals,
    bucket_of,
    prune_refusals,
)

log = logging.getLogger(__name__)

REFUSAL_FLUSH_SECONDS = 1.0
"""A receiver process writes its refusal counts at most this often."""

PRUNE_EVERY_SECONDS = 3600.0
"""How often a process deletes the buckets older than REFUSALS_KEEP_DAYS (after a write)."""

Key = tuple[str, str, datetime]
"""(provider, reason, bucket start)."""


class RefusalLedger:
    """One process's refused deliveries, counted in memory and written by a background thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float = REFUSAL_FLUSH_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine, self._interval, self._clock = engine, interval, clock
        self._pending: dict[Key, tuple[int, datetime]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wanted = threading.Event()
        self._pid = 0
        self._start_lock = threading.Lock()
        self._writable = True
        self._pruned_at = float("-inf")

    def record(self, provider: str, reason: str) -> None:
        """Count one refusal (returns at once; never touches the database)."""
        now = self._clock()
        key = (provider, reason[:MAX_REASON_LENGTH], bucket_of(now))
        with self._lock:
            count, _ = self._pending.get(key, (0, now))
            self._pending[key] = (count + 1, now)
        self._wanted.set()
        if self._pid != os.getpid():
            self._start()

    def pending(self) -> int:
        """Refusals counted and not written yet."""
        with self._lock:
            return sum(count for count, _ in self._pending.values())

    def flush(self) -> bool:
        """Write what was counted, in one transaction; False (counts kept) if that failed.
        A flush waits for one in progress, so that everything counted before it was called is
        written (or kept) when it returns."""
        with self._flush_lock:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            taken, self._pending = self._pending, {}
        if not taken:
            return True
        try:
            with transaction(self._engine) as db:
                add_refusals(db, [Refusals(*key, *value) for key, value in taken.items()])
                if time.monotonic() - self._pruned_at >= PRUNE_EVERY_SECONDS:
                    prune_refusals(db, now=self._clock())
                    self._pruned_at = time.monotonic()
        except Exception as exc:  # the database's trouble: keep the counts, try again later
            self._put_back(taken)
            self._report(False, exc)
            return False
        self._report(True)
        return True

    def _put_back(self, taken: dict[Key, tuple[int, datetime]]) -> None:
        """Merge counts that could not be written back in, dropping buckets too old to keep."""
        cutoff = self._clock() - timedelta(days=REFUSALS_KEEP_DAYS)
        with self._lock:
            for key, (count, last_at) in taken.items():
                if key[2] < cutoff:
                    continue
                now_count, now_last = self._pending.get(key, (0, last_at))
                self._pending[key] = (now_count + count, max(now_last, last_at))

    def _report(self, writable: bool, exc: Exception | None = None) -> None:
        """One warning when writes start failing, one line when they work again."""
        if writable == self._writable:
            return
        self._writable = writable
        if writable:
            log.info("refusal counts are written again")
        else:
            name = type(exc).__name__ if exc is not None else "error"
            log.warning("could not write refusal counts (%s); kept in memory", name)

    def _start(self) -> None:
        """Start this process's thread (again after a fork: threads do not survive one)."""
        with self._start_lock:
            if self._pid == os.getpid():
                return
            thread = threading.Thread(target=self._run, name="verihook-refusals", daemon=True)
            thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            time.sleep(self._interval)  # what arrives meanwhile is written together
            self._wanted.clear()
            if not self.flush():
                self._wanted.set()  # try again after the next interval
