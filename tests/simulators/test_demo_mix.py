"""The demo's mix of real-world variants, and a verdict that expects what DESIGN §2 says (pure)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from reconciler.demo.report import variant_notes
from reconciler.demo.verdict import (
    DEMO_OUTCOMES,
    DEMO_VARIANTS,
    PlannedSession,
    expected_by_design,
    judge,
    plan_sessions,
)
from reconciler.simulators.server import engine_class


def test_every_variant_is_mixed_in_and_fits_its_script() -> None:
    planned = plan_sessions(1000, seed=7)
    played = Counter((item.provider, item.variant) for item in planned if item.variant)
    assert set(played) == {
        (provider, name) for provider, variants in DEMO_VARIANTS.items() for name, _, _ in variants
    }
    for provider in DEMO_VARIANTS:
        engine = engine_class(provider)()
        try:
            for item in planned:
                if item.provider == provider and item.variant:
                    assert item.variant in engine.variants
                    problem = engine.variant_problem(
                        item.variant, item.outcome, item.manual, item.provider_status
                    )
                    assert problem is None, (item, problem)
        finally:
            engine.close()
    nevis = [item for item in planned if item.provider == "nevis"]
    share = sum(item.variant == "bare_redirect" for item in nevis) / len(nevis)
    assert 0.4 < share < 0.6  # DEMO_VARIANTS: 0.5


def test_no_variants_keeps_the_same_outcomes() -> None:
    mixed, plain = plan_sessions(100, seed=3), plan_sessions(100, seed=3, variants={})
    assert [(i.outcome, i.manual, i.after) for i in mixed] == [
        (i.outcome, i.manual, i.after) for i in plain
    ]
    assert not any(item.variant for item in plain) and any(item.variant for item in mixed)


def test_docverify_error_is_never_a_rejection_in_the_plan() -> None:
    scripts = DEMO_OUTCOMES["docverify"]
    assert ("requires_input", False, "error") in scripts
    assert not any(outcome == "rejected" and status == "error" for outcome, _, status in scripts)


def truth(**fields: Any) -> dict[str, Any]:
    base = {
        "canonical": "verified",
        "decided_by": "auto",
        "final": True,
        "script_active": False,
        "deliveries": [],
        "notifications": [],
        "variant": None,
    }
    return {**base, **fields}


def row(status: str, decided_by: str = "auto") -> SimpleNamespace:
    return SimpleNamespace(
        status=status, decided_by=decided_by, overdue=False, last_source="webhook", poll_attempts=0
    )


def test_a_late_expiry_never_replaces_the_verdict_in_the_verdict() -> None:
    item = PlannedSession("idenfy", "u", "verified", variant="late_expiry", session_id="s")
    assert expected_by_design(item) == "verified/auto"
    deliveries = [
        {"event": "auto-finished", "result": "delivered"},
        {"event": "expired", "result": "dropped"},
    ]
    seen = truth(
        deliveries=deliveries,
        notifications=["auto-finished", "expired"],
        final_notification="auto-finished",
        variant="late_expiry",
    )
    right = judge(item, seen, row("verified"))
    assert right.matches and right.final_delivered and right.variant == "late_expiry"
    assert not judge(item, seen, row("expired")).matches
    assert variant_notes([right]) == [
        "real-world variants played (matching/sessions): idenfy late_expiry 1/1"
    ]


def test_docverify_error_expects_requires_input() -> None:
    item = PlannedSession("docverify", "u", "requires_input", provider_status="error")
    seen = truth(canonical="requires_input")
    assert judge(item, seen, row("requires_input")).matches
    assert not judge(item, seen, row("rejected")).matches


def test_a_simulator_disagreeing_with_design_matches_nothing() -> None:
    item = PlannedSession("docverify", "u", "requires_input", provider_status="error")
    wrong_truth = truth(canonical="rejected")  # a simulator mirroring an old parser
    result = judge(item, wrong_truth, row("rejected"))
    assert not result.matches and "simulator's truth is rejected/auto" in result.expected
