"""The demo's plan and its verdict: which sessions to run, and how verihook did against the truth.

Pure bookkeeping shared by `verihook demo` (real processes) and the in-process chaos test: plan
sessions over the five providers (outcomes, and the providers' real-world variants mixed in: late
iDenfy expiries, Nevis redirects without the session's id, Contiguity report events, …), judge
verihook's sessions against the status DESIGN §2 gives each script (checked against each
simulator's truth), and sum up who settled what (webhook, poll, overdue) and what it cost in status
calls.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from receiver.store.models import VerificationSession, table_of

PROVIDERS = ("contiguity", "docverify", "idvapi", "idenfy", "nevis")
IN_FLIGHT = frozenset({"pending", "processing", "requires_input"})
POLL_CAPABLE = frozenset({"contiguity", "docverify", "idenfy", "nevis"})
"""Providers with a status source: each of their sessions must end equal to the truth."""

DEMO_CHAOS: dict[str, Any] = {"drop": 0.3, "duplicate": 0.2, "shuffle": 1.0, "delay_max": 0.3}
"""Chaos on every simulator: 30 % dropped, 20 % duplicated, every script's deliveries shuffled."""

MAX_SCRIPT_DELAY_SECONDS = 0.3
"""A session's script starts up to this long after its creation (the user takes a moment)."""

# (outcome, manual, provider_status) per provider, drawn uniformly
Script = tuple[str, bool, str | None]
DEMO_OUTCOMES: dict[str, tuple[Script, ...]] = {
    "contiguity": (
        ("verified", False, None),
        ("rejected", False, None),
        ("verified", True, None),
        ("rejected", True, None),
    ),
    "docverify": (
        ("verified", False, None),
        ("rejected", False, None),
        ("requires_input", False, "error"),  # `error` is incomplete, never a verdict
        ("review", False, None),
    ),
    "idvapi": (("verified", False, None), ("rejected", False, None)),
    "idenfy": (
        ("verified", False, None),
        ("rejected", False, None),
        ("verified", True, None),
        ("rejected", True, None),
        ("review", False, None),
        ("expired", False, None),
    ),
    "nevis": (("verified", False, None), ("rejected", False, None)),
}


# (variant, share, which scripts it goes with: "any" | "auto" | "manual" | "decision"), per
# provider; one draw per session picks at most one (the shares of a provider sum to <= 1)
Variant = tuple[str, float, str]
DEMO_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "contiguity": (
        # the docs: report.generated comes "in addition to identity.verification_session.completed"
        ("completed_event", 0.25, "any"),
        ("report_event", 0.2, "any"),
        ("anonymous_report_event", 0.1, "any"),
    ),
    "docverify": (),  # its variants are the result shape (asked for by verihook) and `error`
    "idvapi": (),
    "idenfy": (
        # every session whose expiry webhook is subscribed gets one, decided or not
        ("late_expiry", 0.3, "decision"),
        ("late_cancel", 0.05, "decision"),
        ("manual_prefilled", 0.3, "manual"),  # as gboddin/go-idenfy testdata/webhook.1.json
        ("legacy_shape", 0.1, "auto"),  # older accounts: one URL, no `final`
    ),
    "nevis": (
        # Nevis documents its redirect with no parameters: a `sessionId` is our assumption
        ("bare_redirect", 0.5, "any"),
        ("unknown_id_redirect", 0.1, "any"),
    ),
}
"""Real-world variants mixed into the demo, with a share each (see each simulator's docstring).
`legacy_shape` goes with automatic decisions only: with a manual review and no `final` field,
nothing tells verihook that a second callback is due, so a lost one could not be healed."""


def _fits(when: str, outcome: str, manual: bool) -> bool:
    """Whether a variant's "when" admits a script."""
    if when == "manual":
        return manual
    if when == "auto":
        return not manual
    if when == "decision":
        return outcome in ("verified", "rejected", "review")
    return True


def draw_variant(
    variants: tuple[Variant, ...], roll: float, outcome: str, manual: bool
) -> str | None:
    """The variant whose band of cumulative share holds roll, if it fits the script."""
    total = 0.0
    for name, share, when in variants:
        total += share
        if roll < total:
            return name if _fits(when, outcome, manual) else None
    return None


@dataclass
class PlannedSession:
    """One session the demo creates, and the outcome its simulator is scripted to."""

    provider: str
    user_ref: str
    outcome: str
    manual: bool = False
    provider_status: str | None = None
    after: float = 0.0
    session_id: str = ""
    variant: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(provider, session id), as verihook's sessions are keyed."""
        return self.provider, self.session_id

    @property
    def label(self) -> str:
        """The scripted outcome, e.g. `verified (manual) [late_expiry]`."""
        variant = f" [{self.variant}]" if self.variant else ""
        return self.outcome + (" (manual)" if self.manual else "") + variant


def plan_sessions(
    count: int,
    seed: int,
    outcomes: Mapping[str, tuple[Script, ...]] = DEMO_OUTCOMES,
    variants: Mapping[str, tuple[Variant, ...]] = DEMO_VARIANTS,
) -> list[PlannedSession]:
    """`count` sessions round-robin over the providers, outcomes and variants drawn from a seeded
    stream (`variants={}` for none)."""
    rng = random.Random(seed)
    planned = []
    for index in range(count):
        provider = PROVIDERS[index % len(PROVIDERS)]
        outcome, manual, provider_status = rng.choice(outcomes[provider])
        after = round(rng.uniform(0.0, MAX_SCRIPT_DELAY_SECONDS), 3)
        variant = draw_variant(variants.get(provider, ()), rng.random(), outcome, manual)
        user_ref = f"demo-{seed}-{index:04d}"
        planned.append(
            PlannedSession(
                provider, user_ref, outcome, manual, provider_status, after, variant=variant
            )
        )
    return planned


def expected_by_design(item: PlannedSession) -> str:
    """`status/decided_by` verihook must end at for a planned session, by DESIGN §2, from the
    script alone (not from the simulator, which is checked against it).

    The outcomes are canonical statuses: docverify's `error` is scripted as `requires_input`
    (incomplete, never a verdict); a manual review is decided_by manual; an expiry nobody decided
    is `expired/auto`. No variant changes it: a late iDenfy expiry or cancellation never replaces
    a verdict (manual > auto decision > ended > in-flight, whatever the times and arrival order);
    a preliminary `final:false` result is only `review` until the final one; the older iDenfy
    shape ends at the same decision; a Nevis redirect with no parameters or a foreign id changes
    nothing (polling settles the session); a Contiguity report event changes no status, and a
    `completed` event restates the session's status (ASSUMED: its data is the session object)."""
    return f"{item.outcome}/{'manual' if item.manual else 'auto'}"


@dataclass(frozen=True)
class SessionResult:
    """One session: the simulator's truth against verihook's record of it."""

    provider: str
    session_id: str
    scripted: str
    expected: str  # "verified/auto", or "overdue" for an idvapi session that lost its webhook
    actual: str  # the same shape, from verihook
    source: str  # where verihook's deciding observation came from: webhook | poll | none
    overdue: bool
    status_calls: int  # status calls verihook made for this session (its poll_attempts)
    final_delivered: bool  # did the provider's final webhook/redirect reach verihook?
    variant: str | None = None  # the real-world variant the simulator played, if any

    @property
    def matches(self) -> bool:
        """True when verihook ended where the simulator says it should."""
        return self.expected == self.actual

    @property
    def outcome(self) -> str:
        """How the session was settled: webhook, healed (by a poll) or overdue."""
        if self.overdue:
            return "overdue"
        return "healed" if self.source == "poll" else self.source


def final_event(provider: str, truth: Mapping[str, Any]) -> str:
    """The simulator's name for the delivery that carries a session's final state."""
    if provider == "contiguity":
        return f"identity.verification_session.{truth['provider_status']}"
    if provider == "idenfy":  # the decision's notification, not a late expiry after it
        final = truth.get("final_notification")
        return str(final or (truth["notifications"][-1] if truth["notifications"] else ""))
    if provider == "idvapi":
        return f"verification.{truth['provider_status']}"
    return "redirect"


def judge(planned: PlannedSession, truth: Mapping[str, Any] | None, row: Any) -> SessionResult:
    """Compare one session's truth with verihook's row (None when verihook has no such row)."""
    truth = truth or {"canonical": "unknown", "decided_by": None, "deliveries": [], "final": False}
    delivered = truth.get("final", False) and any(
        entry["event"] == final_event(planned.provider, truth) and entry["result"] == "delivered"
        for entry in truth["deliveries"]
    )
    simulated = f"{truth['canonical']}/{truth['decided_by'] or 'auto'}"
    expected = expected_by_design(planned)
    if not truth.get("final") or truth.get("script_active"):
        expected = f"unfinished:{simulated}"
    elif simulated != expected:  # the simulator disagrees with DESIGN: nothing can match
        expected = f"{expected} (but the simulator's truth is {simulated})"
    elif planned.provider not in POLL_CAPABLE and not delivered:
        expected = "overdue"
    actual = "missing"
    if row is not None:
        lost = row.overdue and row.status in IN_FLIGHT and planned.provider not in POLL_CAPABLE
        actual = "overdue" if lost else f"{row.status}/{row.decided_by}"
    return SessionResult(
        provider=planned.provider,
        session_id=planned.session_id,
        scripted=planned.label,
        expected=expected,
        actual=actual,
        source=(row.last_source if row is not None else None) or "none",
        overdue=bool(row is not None and row.overdue),
        status_calls=row.poll_attempts if row is not None else 0,
        final_delivered=bool(delivered),
        variant=truth.get("variant"),
    )


def evaluate(
    engine: Engine, sims: Mapping[str, Any], planned: Iterable[PlannedSession]
) -> list[SessionResult]:
    """Judge every planned session (read-only: one SELECT, one truth look-up per session)."""
    with engine.connect() as connection:
        rows = {
            (row.provider, row.session_id): row
            for row in connection.execute(select(table_of(VerificationSession)))
        }
    return [
        judge(item, sims[item.provider].truth(item.session_id), rows.get(item.key))
        for item in planned
        if item.session_id
    ]
