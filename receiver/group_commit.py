"""Group commit: the deliveries that arrive together on one process share one transaction.

Each request thread hands its prepared row to `GroupCommitter.submit` and blocks until the
transaction holding that row has committed (or failed). There is no committer thread and no timer:
the first thread to find the committer idle becomes the *leader* and writes every row queued so far
(up to `max_batch`) in one call of `write_batch`; rows that arrive while that write is in flight
queue up and the next leader takes them all at once. So a lone request is written at once (no added
latency, which is what gunicorn's sync worker sees) and a burst shares one commit (what gthread and
gevent workers see), the batch growing with the load by itself.

Pure threading, no I/O of its own: `write_batch` is the only thing that touches the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

Row = TypeVar("Row")
Result = TypeVar("Result")

DEFAULT_MAX_BATCH = 64
"""Rows per transaction at most: large enough to amortise a commit, small enough that one
statement stays quick."""


@dataclass
class _Ticket(Generic[Row, Result]):
    """One submitted row and, once its batch is written, its result or the batch's error.

    `wake` is set once: when the row's batch is written, or earlier when its submitter is handed
    the lead (then `done` is still False). A row whose submitter leads at once never waits, so it
    gets no event (the common case of a lone request, every request on a sync worker)."""

    row: Row
    wake: threading.Event | None = None
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None
    batch_size: int = 0


class GroupCommitter(Generic[Row, Result]):
    """Writes rows submitted by concurrent threads in shared batches (see the module docstring).

    `write_batch(rows)` must return one result per row, in order, after the transaction holding
    them committed; if it raises, every row of that batch gets the exception. Each waiting thread
    is woken once, by its own event: when its row is written, or to lead the next batch.
    """

    def __init__(
        self,
        write_batch: Callable[[Sequence[Row]], Sequence[Result]],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch!r}")
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Ticket[Row, Result]] = []
        self._writing = False

    def submit(self, row: Row) -> tuple[Result, int]:
        """Block until `row` is committed; return its result and how many rows its batch held.

        Raises whatever `write_batch` raised for the batch holding `row`.
        """
        ticket: _Ticket[Row, Result] = _Ticket(row)
        with self._lock:
            leading = not self._writing
            if not leading:
                ticket.wake = threading.Event()
            self._queue.append(ticket)
            self._writing = True
        if ticket.wake is not None:
            ticket.wake.wait()
        while not ticket.done:  # leading: write batches until this row's is written
            with self._lock:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            try:
                self._write(batch)
            finally:
                if ticket.done:
                    self._hand_over()
        return self._outcome(ticket)

    def _hand_over(self) -> None:
        """Pass the lead to the oldest waiting row's thread, or stand down when none waits."""
        with self._lock:
            if self._queue:
                self._queue[0].wake.set()  # type: ignore[union-attr]  # queued while writing
            else:
                self._writing = False

    def _write(self, batch: list[_Ticket[Row, Result]]) -> None:
        """Write one batch (no lock held) and settle its tickets."""
        try:
            results = self._write_batch([ticket.row for ticket in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"write_batch answered {len(results)} results for {len(batch)}")
        except BaseException as exc:  # every waiter must learn the outcome, whatever it was
            for ticket in batch:
                ticket.error, ticket.done, ticket.batch_size = exc, True, len(batch)
                if ticket.wake is not None:
                    ticket.wake.set()
            return
        for ticket, result in zip(batch, results, strict=True):
            ticket.result, ticket.done, ticket.batch_size = result, True, len(batch)
            if ticket.wake is not None:
                ticket.wake.set()

    @staticmethod
    def _outcome(ticket: _Ticket[Row, Result]) -> tuple[Result, int]:
        if ticket.error is not None:
            raise ticket.error
        return cast(Result, ticket.result), ticket.batch_size  # done without error: set
