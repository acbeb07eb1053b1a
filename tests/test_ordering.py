"""Property and example tests for the ordering rule (reconciler/ordering.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.canonical import DecidedBy, Observation, Source, Status
from reconciler.ordering import (
    SessionMerge,
    SessionStatus,
    apply_observation,
    disposition_of,
    merge_session,
    ordering_key,
    session_status,
    status_changed,
    user_status,
)

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=200, deadline=None)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# A small set of instants (some spelled in another zone or naive) so equal timestamps are common.
TIMES = [
    T0,
    T0 + timedelta(seconds=1),
    T0 + timedelta(seconds=2),
    (T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2))),
    (T0 + timedelta(seconds=2)).replace(tzinfo=None),
]

observations = st.builds(
    Observation,
    provider=st.just("p"),
    session_id=st.just("s"),
    status=st.sampled_from(list(Status)),
    occurred_at=st.sampled_from(TIMES),
    source=st.sampled_from(list(Source)),
    decided_by=st.sampled_from(list(DecidedBy)),
    provider_status=st.sampled_from(["", "A", "B"]),
    reasons=st.sampled_from([(), ("x",), ("x", "y"), ("y", "x")]),
)


def obs(
    status: Status,
    seconds: int,
    by: DecidedBy = DecidedBy.AUTO,
    ps: str = "",
    session: str = "s",
    provider: str = "p",
) -> Observation:
    return Observation(
        provider,
        session,
        status,
        T0 + timedelta(seconds=seconds),
        Source.WEBHOOK,
        decided_by=by,
        provider_status=ps,
    )


def summary(m: SessionMerge) -> tuple[str | None, frozenset[str]]:
    return m.applied_key, m.superseded_keys


def fold(items: list[Observation]) -> SessionMerge:
    return reduce(apply_observation, items, merge_session([]))


@st.composite
def shuffled_with_duplicates(draw: st.DrawFn) -> tuple[list[Observation], list[Observation]]:
    items = draw(st.lists(observations, min_size=1, max_size=8))
    shuffled = list(draw(st.permutations(items)))
    for dup in draw(st.lists(st.sampled_from(items), max_size=5)):
        shuffled.insert(draw(st.integers(0, len(shuffled))), dup)
    return items, shuffled


@SETTINGS
@given(shuffled_with_duplicates())
def test_merge_is_independent_of_order_and_duplicates(case):
    items, shuffled = case
    expected = merge_session(items)
    assert summary(merge_session(shuffled)) == summary(expected)
    assert summary(fold(shuffled)) == summary(expected)
    assert expected.current is not None and expected.current.key == expected.applied_key
    assert expected.applied_key not in expected.superseded_keys
    assert {o.key for o in items} == expected.superseded_keys | {expected.applied_key}
    assert all(ordering_key(o) <= ordering_key(expected.current) for o in items)
    # Independent oracle: the highest class, then the latest instant (compared in UTC).
    top = max(o.status_class for o in items)

    def as_utc(ts: datetime) -> datetime:
        return ts.replace(tzinfo=ts.tzinfo or UTC)

    latest = max(as_utc(o.occurred_at) for o in items if o.status_class == top)
    assert expected.current.status_class == top
    assert as_utc(expected.current.occurred_at) == latest


@SETTINGS
@given(st.lists(observations, max_size=8), st.data())
def test_replaying_a_prefix_changes_nothing(items, data):
    cut = data.draw(st.integers(0, len(items)))
    replayed = items[:cut] + items[:cut] + items[cut:]
    assert summary(merge_session(replayed)) == summary(merge_session(items))


@SETTINGS
@given(st.lists(observations, max_size=10))
def test_incremental_merge_equals_whole_set(items):
    state = merge_session([])
    for i, new in enumerate(items):
        state = apply_observation(state, new)
        assert summary(state) == summary(merge_session(items[: i + 1]))
        assert disposition_of(new.key, state) in ("applied", "superseded")
    # The worker's view: previous current + new observation, superseded keys carried along.
    state = merge_session([])
    for new in items:
        step = merge_session([o for o in (state.current, new) if o is not None])
        carried = (state.superseded_keys | step.superseded_keys) - {step.applied_key}
        state = SessionMerge(step.current, step.applied_key, carried)
    assert summary(state) == summary(merge_session(items))


def test_empty_merge():
    m = merge_session([])
    assert m == SessionMerge(None, None, frozenset())
    assert session_status(m) is None
    assert disposition_of("anything", m) == "superseded"


def test_manual_beats_later_auto_idenfy():
    denied = obs(Status.REJECTED, 0, ps="DENIED")
    approved = obs(Status.VERIFIED, 60, DecidedBy.MANUAL, ps="APPROVED")
    late_auto = [obs(Status.VERIFIED, 120, ps="APPROVED"), obs(Status.REJECTED, 180, ps="DENIED")]
    for items in ([denied, approved, *late_auto], [*late_auto, approved, denied]):
        m = merge_session(items)
        assert m.current == approved
        assert (m.current.status, m.current.decided_by) == (Status.VERIFIED, DecidedBy.MANUAL)
        assert disposition_of(approved.key, m) == "applied"
        assert all(disposition_of(o.key, m) == "superseded" for o in [denied, *late_auto])


def test_late_processing_after_verified_is_superseded():
    verified = obs(Status.VERIFIED, 0)
    late = obs(Status.PROCESSING, 300)
    m = fold([verified, late])
    assert m.applied_key == verified.key and disposition_of(late.key, m) == "superseded"


def test_contiguity_requires_input_then_verified():
    ps = "identity.verification_session."
    m = fold(
        [
            obs(Status.REQUIRES_INPUT, 0, ps=ps + "requires_input"),
            obs(Status.VERIFIED, 30, ps=ps + "verified"),
        ]
    )
    assert m.current is not None and m.current.status is Status.VERIFIED


def test_equal_class_and_time_ties_do_not_depend_on_order():
    a, b = obs(Status.VERIFIED, 5, ps="A"), obs(Status.REJECTED, 5, ps="B")
    assert merge_session([a, b]).applied_key == merge_session([b, a]).applied_key
    assert fold([a, b]).applied_key == fold([b, a]).applied_key == max(a.key, b.key)


def test_later_instant_wins_across_zones():
    early = obs(Status.REJECTED, 10)  # 12:00:10 UTC
    later = Observation(
        "p",
        "s",
        Status.VERIFIED,  # 08:00:20-04:00 == 12:00:20 UTC
        (T0 + timedelta(seconds=20)).astimezone(timezone(timedelta(hours=-4))),
        Source.POLL,
    )
    assert merge_session([early, later]).current == later
    assert fold([later, early]).current == later


def test_same_instant_in_other_zones_is_one_observation():
    a = obs(Status.VERIFIED, 0)
    b = Observation(
        "p", "s", Status.VERIFIED, T0.astimezone(timezone(timedelta(hours=-5))), Source.POLL
    )
    c = Observation("p", "s", Status.VERIFIED, T0.replace(tzinfo=None), Source.CALLBACK)
    assert merge_session([a, b, c]) == SessionMerge(a, a.key, frozenset())


# --- user rule -------------------------------------------------------------------------------

session_statuses = st.builds(
    SessionStatus,
    provider=st.sampled_from(["idenfy", "nevis"]),
    session_id=st.sampled_from(["s1", "s2", "s3"]),
    status=st.sampled_from(list(Status)),
    decided_by=st.sampled_from(list(DecidedBy)),
    observed_at=st.sampled_from(TIMES),
    observation_key=st.sampled_from(["k1", "k2"]),
)


def current(o: Observation) -> SessionStatus:
    status = session_status(merge_session([o]))
    assert status is not None
    return status


@SETTINGS
@given(
    st.lists(session_statuses, max_size=6).flatmap(
        lambda xs: st.tuples(st.just(xs), st.permutations(xs))
    )
)
def test_user_status_is_independent_of_order(case):
    items, shuffled = case
    assert user_status(shuffled) == user_status(items) == user_status(shuffled + items)
    result = user_status(items)
    if not items:
        assert result is None
        return
    assert result is not None
    verified = [s for s in items if s.status is Status.VERIFIED]
    assert (result.verified_at is None) == (not verified)


def test_user_status_empty():
    assert user_status([]) is None


def test_manual_rejection_in_old_session_beats_later_auto_verification():
    rejected = current(obs(Status.REJECTED, 0, DecidedBy.MANUAL, session="old"))
    verified = current(obs(Status.VERIFIED, 86400, session="new"))
    u = user_status([verified, rejected])
    assert u is not None
    assert (u.status, u.decided_by, u.session_id) == (Status.REJECTED, DecidedBy.MANUAL, "old")
    assert u.verified_at == verified.observed_at


def test_in_flight_session_does_not_hide_verified_one():
    verified = current(obs(Status.VERIFIED, 0, session="old", provider="nevis"))
    pending = current(obs(Status.PENDING, 3600, session="new", provider="idenfy"))
    u = user_status([pending, verified])
    assert u is not None and (u.status, u.session_id) == (Status.VERIFIED, "old")
    assert u.verified_at == T0
    only_pending = user_status([pending])
    assert only_pending is not None and only_pending.status is Status.PENDING
    assert only_pending.verified_at is None


def test_latest_auto_decision_wins_and_verified_at_is_kept():
    verified = current(obs(Status.VERIFIED, 0, session="a"))
    rejected = current(obs(Status.REJECTED, 10, session="b"))
    u = user_status([verified, rejected])
    assert u is not None and u.status is Status.REJECTED and u.verified_at == T0


def test_status_changed():
    a = current(obs(Status.PROCESSING, 0))
    b = current(obs(Status.PROCESSING, 5, ps="other"))
    c = current(obs(Status.VERIFIED, 5))
    assert not status_changed(a, b)
    assert status_changed(a, c)
    assert status_changed(None, a) and status_changed(a, None)
    assert not status_changed(None, None)


DECISIONS = {Status.VERIFIED, Status.REJECTED, Status.REVIEW}
ENDED = {Status.CANCELED, Status.EXPIRED}


@SETTINGS
@given(shuffled_with_duplicates())
def test_an_expiry_or_cancellation_never_replaces_a_verdict(case):
    """DESIGN §2 (revised): ended ranks below every decision, whatever the times and the order."""
    items, shuffled = case
    current = merge_session(shuffled).current
    assert current is not None
    if any(o.status in DECISIONS for o in items):
        assert current.status in DECISIONS
    elif any(o.status in ENDED for o in items):
        assert current.status in ENDED  # and an ended session is not in flight any more


@pytest.mark.parametrize("ended", sorted(ENDED))
@pytest.mark.parametrize("verdict", [Status.VERIFIED, Status.REJECTED, Status.REVIEW])
def test_a_late_expiry_after_a_decision_keeps_the_decision(verdict, ended):
    """iDenfy's expiry webhook comes after the token's lifetime: later, and it must not win."""
    decided, late = obs(verdict, 0), obs(ended, 3600)
    for order in ([decided, late], [late, decided]):
        assert merge_session(order).current == decided
        assert fold(order).current == decided


@SETTINGS
@given(st.lists(observations, min_size=1, max_size=8))
def test_a_user_with_a_decided_session_never_shows_an_ended_one(items):
    sessions = [
        session_status(merge_session([o]))
        for o in (
            Observation(o.provider, f"s{n}", o.status, o.occurred_at, o.source, o.decided_by)
            for n, o in enumerate(items)
        )
    ]
    shown = user_status(s for s in sessions if s is not None)
    assert shown is not None
    if any(o.status in DECISIONS for o in items):
        assert shown.status in DECISIONS
