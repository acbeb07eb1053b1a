"""Pure poll planning: when is a session due, and what to do when it is. No I/O.

Three provider modes:
- `poll` (docverify, nevis: no webhooks): poll from creation with exponential backoff until the
  session is terminal; past its TTL it becomes `expired`.
- `fallback` (contiguity, idenfy: webhooks, no guaranteed retries): never poll while webhooks
  flow; each webhook pushes the next check to one deadline later; once a deadline passes without
  a final event, poll (backoff), at most `max_fallback_polls` times (iDenfy asks for rare polls).
- `none` (idvapi: no status endpoint): once the deadline passes without a final event the session
  is flagged overdue for people to chase.
A redirect callback makes a session due now (the apply path sets `next_check_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from receiver.canonical import Status, is_terminal
from reconciler.backoff import exponential_backoff


class Mode(StrEnum):
    """How a provider's sessions are reconciled."""

    POLL = "poll"
    FALLBACK = "fallback"
    NONE = "none"


class Action(StrEnum):
    """What a due session needs."""

    POLL = "poll"
    EXPIRE = "expire"
    OVERDUE = "overdue"
    STOP = "stop"


@dataclass(frozen=True)
class Policy:
    """A provider's reconciliation settings (seconds)."""

    mode: Mode
    poll_interval: float
    webhook_deadline: float
    ttl: float
    max_interval: float = 3600.0
    max_fallback_polls: int = 4


@dataclass(frozen=True)
class SessionFacts:
    """What the planner needs to know about one session."""

    status: Status
    created_at: datetime
    poll_attempts: int
    overdue: bool = False
    settled: bool = False
    """The provider said nothing more will change (a terminal status, or a final review)."""

    @property
    def done(self) -> bool:
        """Nothing left to reconcile."""
        return self.settled or is_terminal(self.status)


MODES: dict[str, Mode] = {
    "docverify": Mode.POLL,
    "nevis": Mode.POLL,
    "contiguity": Mode.FALLBACK,
    "idenfy": Mode.FALLBACK,
    "idvapi": Mode.NONE,
}
"""Each provider's mode (a sixth provider adds one line)."""

DEFAULT_WEBHOOK_DEADLINES: dict[str, float] = {"idenfy": 1200.0}
"""Deadlines that differ from the settings default (iDenfy: poll once after ~20 min at most)."""


def policy_for(
    provider: str,
    *,
    poll_interval: float,
    webhook_deadline: float | None,
    ttl: float,
    max_interval: float,
    max_fallback_polls: int,
) -> Policy:
    """A provider's policy from its settings."""
    deadline = webhook_deadline or DEFAULT_WEBHOOK_DEADLINES.get(provider, 900.0)
    return Policy(
        mode=MODES[provider],
        poll_interval=poll_interval,
        webhook_deadline=deadline,
        ttl=ttl,
        max_interval=max_interval,
        max_fallback_polls=max_fallback_polls,
    )


def backoff(policy: Policy, attempts: int) -> timedelta:
    """The wait after `attempts` polls: interval × 2^attempts, capped at max_interval."""
    seconds = exponential_backoff(attempts, base=policy.poll_interval, cap=policy.max_interval)
    return timedelta(seconds=seconds)


def first_check(policy: Policy, created_at: datetime) -> datetime:
    """When a new session is first due."""
    if policy.mode is Mode.POLL:
        return created_at + timedelta(seconds=policy.poll_interval)
    return created_at + timedelta(seconds=policy.webhook_deadline)


def after_event(
    policy: Policy, facts: SessionFacts, now: datetime, current: datetime | None
) -> datetime | None:
    """The next check after an observation was applied (webhook, poll or callback)."""
    if facts.done:
        return None
    if policy.mode is Mode.POLL:
        return current or first_check(policy, facts.created_at)
    deadline = now + timedelta(seconds=policy.webhook_deadline)
    return deadline if current is None or current > now else current


def decide(policy: Policy, facts: SessionFacts, now: datetime) -> Action:
    """What to do with a session that is due now."""
    if facts.done:
        return Action.STOP
    if policy.mode is Mode.NONE:
        return Action.STOP if facts.overdue else Action.OVERDUE
    if now >= facts.created_at + timedelta(seconds=policy.ttl):
        return Action.EXPIRE if policy.mode is Mode.POLL else Action.OVERDUE
    if policy.mode is Mode.FALLBACK and facts.poll_attempts >= policy.max_fallback_polls:
        return Action.OVERDUE
    return Action.POLL


def after_poll(policy: Policy, facts: SessionFacts, now: datetime) -> datetime | None:
    """The next check after a poll (`facts.poll_attempts` already counts it)."""
    if facts.done:
        return None
    return now + backoff(policy, facts.poll_attempts)


def after_failure(
    policy: Policy, attempts: int, now: datetime, retry_after: float | None
) -> datetime:
    """The next try after the provider failed to answer (honours Retry-After)."""
    wait = backoff(policy, attempts)
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    return now + wait


def overdue_reason(policy: Policy, facts: SessionFacts, now: datetime) -> str:
    """Why `decide` flags a session overdue (for people: the console's session page)."""
    if policy.mode is Mode.NONE:
        return (
            f"no final webhook within {policy.webhook_deadline:.0f} s of the last news, and "
            "this provider has no status endpoint to ask: chase it with the provider"
        )
    if now >= facts.created_at + timedelta(seconds=policy.ttl):
        return f"no verdict within the session's lifetime ({policy.ttl:.0f} s after creation)"
    if policy.mode is Mode.FALLBACK and facts.poll_attempts >= policy.max_fallback_polls:
        return (
            f"{facts.poll_attempts} status polls after the webhook deadline brought no final "
            f"answer (at most {policy.max_fallback_polls} are made)"
        )
    return "flagged overdue earlier; by today's policy it would be polled again"
