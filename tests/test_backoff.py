"""The one backoff formula and its three users: the drain's retry of a failed event, the
notifier's retry of a failed POST, and the planner's spacing of polls. Expected values are
written out by hand, not computed with the formula under test."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import drain, notify
from reconciler.backoff import exponential_backoff
from reconciler.planner import Mode, Policy, backoff

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (8, 256.0), (9, 300.0), (40, 300.0)],
)
def test_a_failed_event_and_a_failed_notification_wait_2_4_8_seconds_capped_at_300(
    attempts: int, seconds: float
) -> None:
    assert drain.backoff_seconds(attempts) == seconds
    assert notify.backoff_seconds(attempts) == seconds


def test_the_notifier_base_can_be_overridden() -> None:
    assert [notify.backoff_seconds(n, 0.5) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert notify.backoff_seconds(5, 0) == 0


def test_polls_are_spaced_interval_times_two_to_the_attempts_capped_at_max_interval() -> None:
    policy = Policy(
        Mode.POLL, poll_interval=30.0, webhook_deadline=900.0, ttl=1e6, max_interval=600.0
    )
    waits = [backoff(policy, n) for n in (-1, 0, 1, 2, 4, 5, 50)]
    assert waits == [timedelta(seconds=s) for s in (30, 30, 60, 120, 480, 600, 600)]


@given(
    step=st.integers(min_value=-5, max_value=60),
    base=st.floats(min_value=0, max_value=1e3),
    cap=st.floats(min_value=0, max_value=1e6),
)
def test_the_wait_never_exceeds_the_cap_and_never_shrinks_with_more_steps(
    step: int, base: float, cap: float
) -> None:
    wait = exponential_backoff(step, base=base, cap=cap)
    assert 0 <= wait <= cap
    assert wait <= exponential_backoff(step + 1, base=base, cap=cap)
