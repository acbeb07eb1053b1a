"""The ordering rule (DESIGN §2): which observation is a session's status, and a user's.

Session rule. A session's current status is the observation with the greatest
`(status class, occurred_at in UTC, observation key)`, where the class orders a manual decision
(verified/rejected by a human) above an automatic decision (any other verified, rejected or
review) above ended (canceled, expired: the session stopped without a verdict) above in-flight
(pending, processing, requires_input). So an expiry or a cancellation never replaces a verdict,
whatever the times and the arrival order. The observation key is
the sha256 of (provider, session, status, decided_by, occurred_at, provider_status, sorted
reasons), so the tie-break depends only on what the provider said. The result is a function of
the *set* of keys: any arrival order and any number of duplicates give the same current status,
and every other distinct observation is `superseded`.

User rule. A user shows the current status of one of their sessions: the one with the greatest
`(status class, observed_at, provider, session_id, observation key)`. So a manual decision in any
session wins over everything else; otherwise the latest automatic decision wins; an ended session
(expired, canceled) never hides a decision; a session still in flight is shown only when no
session has a decision or has ended. `verified_at`
is the latest time any session was verified, kept even when another session's status is shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from receiver.canonical import DecidedBy, Observation, Status, StatusClass, status_class, utc

APPLIED = "applied"
SUPERSEDED = "superseded"


def ordering_key(obs: Observation) -> tuple[StatusClass, datetime, str]:
    """The session ordering key; the greatest observation is the session's current status."""
    return (obs.status_class, utc(obs.occurred_at), obs.key)


@dataclass(frozen=True)
class SessionMerge:
    """A session's current observation and the keys of every other observation seen."""

    current: Observation | None
    applied_key: str | None
    superseded_keys: frozenset[str]


def merge_session(observations: Iterable[Observation]) -> SessionMerge:
    """Merge a session's observations (any order, duplicates allowed) by the ordering rule."""
    by_key: dict[str, Observation] = {}  # equal keys collapse; the first one seen is kept
    for obs in observations:
        by_key.setdefault(obs.key, obs)
    if not by_key:
        return SessionMerge(None, None, frozenset())
    current = max(by_key.values(), key=ordering_key)
    return SessionMerge(current, current.key, frozenset(by_key) - {current.key})


def apply_observation(merge: SessionMerge, obs: Observation) -> SessionMerge:
    """Fold one more observation into a previous merge (equal to merging the whole set)."""
    if merge.current is None or ordering_key(obs) > ordering_key(merge.current):
        superseded = merge.superseded_keys | ({merge.applied_key} if merge.applied_key else set())
        return SessionMerge(obs, obs.key, frozenset(superseded - {obs.key}))
    if obs.key == merge.applied_key:
        return merge
    return SessionMerge(merge.current, merge.applied_key, merge.superseded_keys | {obs.key})


def disposition_of(obs_key: str, merge: SessionMerge) -> str:
    """'applied' if `obs_key` is the session's current observation, else 'superseded'."""
    return APPLIED if obs_key == merge.applied_key else SUPERSEDED


@dataclass(frozen=True)
class SessionStatus:
    """A session's current status, as the user rule sees it."""

    provider: str
    session_id: str
    status: Status
    decided_by: DecidedBy
    observed_at: datetime
    observation_key: str


@dataclass(frozen=True)
class UserStatus:
    """The status a user record shows, and which session it comes from."""

    status: Status
    decided_by: DecidedBy
    provider: str
    session_id: str
    observed_at: datetime
    verified_at: datetime | None


def session_status(merge: SessionMerge) -> SessionStatus | None:
    """The SessionStatus of a merge's current observation (None when nothing was observed)."""
    o = merge.current
    return (
        None
        if o is None
        else SessionStatus(
            o.provider, o.session_id, o.status, o.decided_by, utc(o.occurred_at), o.key
        )
    )


def user_key(s: SessionStatus) -> tuple[StatusClass, datetime, str, str, str, str, str]:
    """The user ordering key; the greatest session status is the one the user shows."""
    return (
        status_class(s.status, s.decided_by),
        utc(s.observed_at),
        s.provider,
        s.session_id,
        s.observation_key,
        str(s.status),
        str(s.decided_by),
    )


def user_status(sessions: Iterable[SessionStatus]) -> UserStatus | None:
    """The status a user shows under the user rule (None when the user has no session)."""
    if not (items := list(sessions)):
        return None
    best = max(items, key=user_key)
    verified = [utc(s.observed_at) for s in items if s.status == Status.VERIFIED]
    return UserStatus(
        best.status,
        best.decided_by,
        best.provider,
        best.session_id,
        utc(best.observed_at),
        max(verified, default=None),
    )


def _shown(s: SessionStatus | UserStatus | None) -> tuple[Status, DecidedBy] | None:
    return None if s is None else (s.status, s.decided_by)


def status_changed(
    before: SessionStatus | UserStatus | None, after: SessionStatus | UserStatus | None
) -> bool:
    """True when the shown (status, decided_by) differs between two statuses (None = none)."""
    return _shown(before) != _shown(after)
