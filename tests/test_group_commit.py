"""The group committer: every submitted row is written exactly once, its caller gets its own
result only after the batch holding it was written, and a failed batch fails each of its rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.group_commit import GroupCommitter

pytestmark = pytest.mark.unit


class Recorder:
    """A write_batch that records its batches (and can be slow, or fail some batches)."""

    def __init__(self, delay: float = 0.0, failing: set[int] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay, self.failing = delay, failing or set()
        self.lock = threading.Lock()
        self.writing = 0
        self.overlapped = False

    def __call__(self, rows: Sequence[int]) -> list[str]:
        with self.lock:
            self.writing += 1
            self.overlapped |= self.writing > 1
            self.batches.append(list(rows))
        try:
            time.sleep(self.delay)
            if self.failing & set(rows):
                raise ConnectionError(f"batch {list(rows)} failed")
            return [f"stored {row}" for row in rows]
        finally:
            with self.lock:
                self.writing -= 1


def submit_all(committer: GroupCommitter, rows: list[int]) -> dict[int, object]:
    """Submit every row from its own thread, released together; return each row's outcome."""
    outcomes: dict[int, object] = {}
    barrier = threading.Barrier(len(rows))

    def submit(row: int) -> None:
        barrier.wait(timeout=10)
        try:
            outcomes[row] = committer.submit(row)
        except Exception as exc:
            outcomes[row] = exc

    threads = [threading.Thread(target=submit, args=(row,)) for row in rows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_a_lone_row_is_written_at_once_in_a_batch_of_one() -> None:
    recorder = Recorder()
    assert GroupCommitter(recorder).submit(7) == ("stored 7", 1)
    assert recorder.batches == [[7]]


def test_concurrent_rows_share_batches_and_each_gets_its_own_result() -> None:
    recorder = Recorder(delay=0.02)
    outcomes = submit_all(GroupCommitter(recorder, max_batch=8), list(range(40)))
    assert {row: result for row, (result, _) in outcomes.items()} == {
        row: f"stored {row}" for row in range(40)
    }
    written = [row for batch in recorder.batches for row in batch]
    assert sorted(written) == list(range(40))  # each row exactly once
    assert max(len(batch) for batch in recorder.batches) > 1  # they were grouped
    assert all(len(batch) <= 8 for batch in recorder.batches)
    assert not recorder.overlapped  # one batch at a time: one writer per process
    for row, (_, size) in outcomes.items():
        assert size == len(next(b for b in recorder.batches if row in b))


def test_a_failed_batch_fails_every_row_in_it_and_only_those() -> None:
    recorder = Recorder(delay=0.02, failing={13})
    outcomes = submit_all(GroupCommitter(recorder, max_batch=4), list(range(20)))
    failed_batch = next(batch for batch in recorder.batches if 13 in batch)
    for row, outcome in outcomes.items():
        if row in failed_batch:
            assert isinstance(outcome, ConnectionError), (row, outcome)
        else:
            assert outcome[0] == f"stored {row}"  # type: ignore[index]


def test_a_wrong_number_of_results_is_an_error_not_a_silent_mismatch() -> None:
    committer = GroupCommitter(lambda rows: [])
    with pytest.raises(RuntimeError, match="0 results for 1"):
        committer.submit(1)


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommitter(lambda rows: rows, max_batch=0)


@settings(max_examples=25, deadline=None)
@given(
    threads=st.integers(min_value=1, max_value=24),
    max_batch=st.integers(min_value=1, max_value=10),
    failing=st.sets(st.integers(min_value=0, max_value=23), max_size=3),
)
def test_every_row_is_written_once_and_answered_by_its_own_batch(
    threads: int, max_batch: int, failing: set[int]
) -> None:
    recorder = Recorder(delay=0.001, failing=failing)
    outcomes = submit_all(GroupCommitter(recorder, max_batch=max_batch), list(range(threads)))
    written = [row for batch in recorder.batches for row in batch]
    assert sorted(written) == list(range(threads))
    assert not recorder.overlapped
    for row, outcome in outcomes.items():
        batch = next(b for b in recorder.batches if row in b)
        if failing & set(batch):
            assert isinstance(outcome, ConnectionError)
        else:
            assert outcome == (f"stored {row}", len(batch))
