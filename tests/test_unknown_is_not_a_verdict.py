"""DESIGN §2, "unknown is not a verdict", for all five providers.

Table-driven over every value the providers' documents define (the canonical mapping of the
README), then generated: undocumented values, shapes and notification names never yield
`verified` or `rejected`; an undocumented value is refused as UnknownValueError (the delivery is
quarantined with its raw form and counted), never guessed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from receiver.canonical import DecidedBy, Source, Status
from receiver.exceptions import ParseError, UnknownValueError
from receiver.providers import build_providers
from receiver.providers.base import Delivery, Parsed
from receiver.settings import Settings
from tests.conftest import TEST_KEYS, provider_settings
from tests.support.signing import contiguity_event, idenfy_result, idvapi_result

pytestmark = pytest.mark.unit

PROVIDERS = build_providers(Settings(encryption_keys=TEST_KEYS, providers=provider_settings()))
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
VERDICTS = {Status.VERIFIED, Status.REJECTED}
V, R, RV = Status.VERIFIED, Status.REJECTED, Status.REVIEW
AUTO, MANUAL = DecidedBy.AUTO, DecidedBy.MANUAL


def webhook(provider: str, body: bytes, notification: str | None = None) -> Parsed:
    delivery = Delivery(
        provider=provider,
        source=Source.WEBHOOK,
        body=body,
        headers=(("Content-Type", "application/json"),),
        notification=notification,
        received_at=NOW,
    )
    return PROVIDERS[provider].parse(delivery)


def only(parsed: Parsed) -> tuple[Status, DecidedBy]:
    [obs] = parsed.observations
    return obs.status, obs.decided_by


# ------------------------------------------------------------------ documented values: iDenfy

IDENFY_OVERALL = {
    "APPROVED": V,
    "DENIED": R,
    "SUSPECTED": RV,
    "REVIEWING": Status.PROCESSING,
    "ACTIVE": Status.PENDING,
    "EXPIRED": Status.EXPIRED,
    "EXPIRED-DELETED": Status.EXPIRED,
}


@pytest.mark.parametrize("notification", [None, "auto-finished", "resubmitted"])
@pytest.mark.parametrize("overall", sorted(IDENFY_OVERALL))
def test_idenfy_every_documented_overall(overall: str, notification: str | None) -> None:
    parsed = webhook("idenfy", idenfy_result(overall), notification)
    assert only(parsed) == (IDENFY_OVERALL[overall], AUTO)


@pytest.mark.parametrize("overall", ["DELETED", "ARCHIVED"])
def test_idenfy_lifecycle_values_are_no_status(overall: str) -> None:
    assert webhook("idenfy", idenfy_result(overall), "auto-finished").observations == ()


@pytest.mark.parametrize(
    ("notification", "overall", "expected"),
    [
        # iDenfy sends its expiry webhook late, with the verdict in status.overall: read it.
        ("expired", "APPROVED", V),
        ("expired", "DENIED", R),
        ("expired", "SUSPECTED", RV),
        ("expired", "EXPIRED", Status.EXPIRED),
        ("expired", "ACTIVE", Status.EXPIRED),
        ("expired", "REVIEWING", Status.EXPIRED),
        ("cancelled", "APPROVED", V),
        ("cancelled", "DENIED", R),
        ("cancelled", "ACTIVE", Status.CANCELED),
        ("cancelled", "EXPIRED", Status.CANCELED),
    ],
)
def test_idenfy_expired_and_cancelled_read_a_verdict_in_overall(
    notification: str, overall: str, expected: Status
) -> None:
    assert only(webhook("idenfy", idenfy_result(overall), notification)) == (expected, AUTO)


@pytest.mark.parametrize("notification", [None, "auto-finished", "resubmitted", "expired"])
@pytest.mark.parametrize("overall", ["APPROVED", "DENIED", "SUSPECTED"])
def test_idenfy_preliminary_verdict_is_review_by_the_automation(
    overall: str, notification: str | None
) -> None:
    """`final: false` with the manual fields already filled (go-idenfy testdata/webhook.1.json):
    a person has not decided yet."""
    body = idenfy_result(overall, final=False, manual=True)
    assert only(webhook("idenfy", body, notification)) == (RV, AUTO)


@pytest.mark.parametrize(
    ("notification", "manual", "expected"),
    [
        ("manual-finished", False, MANUAL),
        ("manual-finished", True, MANUAL),
        (None, True, MANUAL),  # the legacy single URL: a final result a person reviewed
        (None, False, AUTO),
        ("auto-finished", True, MANUAL),  # a final result a person reviewed (DESIGN §2)
        ("auto-finished", False, AUTO),
    ],
)
def test_idenfy_decided_by_manual_only_when_a_person_decided(
    notification: str | None, manual: bool, expected: DecidedBy
) -> None:
    parsed = webhook("idenfy", idenfy_result("DENIED", manual=manual), notification)
    assert only(parsed) == (R, expected)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"status": "APPROVED", "final": True}, V),
        ({"status": "APPROVED", "final": False}, RV),
        ({"status": "DENIED"}, R),
        ({"status": "SUSPECTED"}, RV),
        ({"status": "REVIEWING"}, Status.PROCESSING),
        ({"status": "ACTIVE"}, Status.PENDING),
        ({"status": "EXPIRED"}, Status.EXPIRED),
    ],
)
def test_idenfy_status_api(answer: dict[str, Any], expected: Status) -> None:
    parsed = PROVIDERS["idenfy"].parse_status("scan-1", {"scanRef": "scan-1", **answer}, NOW)
    assert only(parsed)[0] == expected


# ---------------------------------------------------------------- documented values: docverify


@pytest.mark.parametrize(
    ("answer", "expected", "reasons"),
    [
        ({"status": "pending"}, Status.PENDING, ()),
        ({"status": "capturing"}, Status.PROCESSING, ()),
        ({"status": "processing"}, Status.PROCESSING, ()),
        ({"status": "recapture"}, Status.REQUIRES_INPUT, ()),
        # IncompleteSessionResult: an error is incomplete, never a verdict
        ({"status": "error"}, Status.REQUIRES_INPUT, ("provider_error",)),
        ({"status": "complete", "recommendation": "ALLOW", "checks": {}}, V, ()),
        ({"status": "complete", "recommendation": "CHALLENGE", "checks": {}}, RV, ()),
        ({"status": "complete", "recommendation": "DENY", "checks": {}}, R, ()),
        # DeprecatedSessionResult (what Transmit answers without detailed=true): reasons kept
        (
            {
                "status": "complete",
                "recommendation": "DENY",
                "rejection_description": ["Document expired", "Face mismatch"],
            },
            R,
            ("rejection:Document expired", "rejection:Face mismatch"),
        ),
    ],
)
def test_docverify_every_documented_status(
    answer: dict[str, Any], expected: Status, reasons: tuple[str, ...]
) -> None:
    parsed = PROVIDERS["docverify"].parse_status("dv-1", {"session_id": "dv-1", **answer}, NOW)
    [obs] = parsed.observations
    assert (obs.status, obs.decided_by, obs.reasons) == (expected, AUTO, reasons)
    assert obs.final is (answer["status"] == "complete")


def test_docverify_deprecated_shape_keeps_its_extracted_info() -> None:
    answer = {
        "session_id": "dv-1",
        "status": "complete",
        "recommendation": "ALLOW",
        "verified_info": {"person": {"given_name": "Marie"}},
    }
    [obs] = PROVIDERS["docverify"].parse_status("dv-1", answer, NOW).observations
    assert obs.details["verified_info"] == {"person": {"given_name": "Marie"}}


# --------------------------------------------------------------- documented values: Contiguity

CONTIGUITY_EVENTS = {
    "started": (Status.PROCESSING, AUTO),
    "processing": (Status.PROCESSING, AUTO),
    "requires_input": (Status.REQUIRES_INPUT, AUTO),
    "verified": (V, AUTO),
    "failed": (R, AUTO),
    "manually_approved": (V, MANUAL),
    "manually_denied": (R, MANUAL),
}


@pytest.mark.parametrize("suffix", sorted(CONTIGUITY_EVENTS))
def test_contiguity_every_documented_session_event(suffix: str) -> None:
    assert only(webhook("contiguity", contiguity_event(suffix))) == CONTIGUITY_EVENTS[suffix]


def envelope(event_type: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"id": "evt_1", "type": event_type, "timestamp": 1_700_000_000, "data": data}
    ).encode()


@pytest.mark.parametrize(
    "data",
    [
        {"id": "vr_123", "verification_session": "vs_42"},
        {"id": "vr_123", "verification_session": {"id": "vs_42", "object": "x"}},
    ],
)
def test_contiguity_report_naming_its_session_is_attached_without_status(
    data: dict[str, Any],
) -> None:
    parsed = webhook("contiguity", envelope("identity.verification_report.generated", data))
    assert (parsed.session_id, parsed.observations) == ("vs_42", ())


@pytest.mark.parametrize(
    "data", [{"id": "vr_123"}, {"id": "vs_looks_like_a_session"}, {}, {"verification_session": ""}]
)
def test_contiguity_report_naming_no_session_is_kept_for_a_person(data: dict[str, Any]) -> None:
    """Never the report's own id as a session id: quarantined and counted."""
    with pytest.raises(UnknownValueError):
        webhook("contiguity", envelope("identity.verification_report.generated", data))


def test_contiguity_completed_attaches_and_polls_without_a_status() -> None:
    parsed = webhook("contiguity", contiguity_event("completed", "vs_9"))
    assert (parsed.session_id, parsed.observations, parsed.poll_now) == ("vs_9", (), True)


def test_contiguity_session_event_never_takes_a_report_id_for_a_session() -> None:
    with pytest.raises(UnknownValueError):
        webhook("contiguity", contiguity_event("verified", "vr_123"))


def test_contiguity_other_products_events_are_stored_without_a_status() -> None:
    parsed = webhook("contiguity", envelope("text.sent", {"to": "+15555550123"}))
    assert (parsed.session_id, parsed.observations) == (None, ())


# ------------------------------------------------------------ documented values: idvapi, Nevis


@pytest.mark.parametrize(("value", "expected"), [("verified", V), ("rejected", R)])
def test_idvapi_every_documented_status(value: str, expected: Status) -> None:
    parsed = webhook("idvapi", idvapi_result(value))
    [obs] = parsed.observations
    assert (obs.status, obs.reasons) == (expected, ("confidence:high",))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("pending", Status.PENDING),
        ("in_progress", Status.PROCESSING),
        ("verified", V),
        ("failed", R),
    ],
)
def test_nevis_every_documented_status(value: str, expected: Status) -> None:
    assert only(PROVIDERS["nevis"].parse_status("123456789", {"status": value}, NOW))[0] == expected


# ------------------------------------------------------------------- generated: undocumented

DOCUMENTED = {
    "idenfy": set(IDENFY_OVERALL) | {"DELETED", "ARCHIVED"},
    "docverify": {"pending", "capturing", "processing", "recapture", "error", "complete"},
    "recommendation": {"ALLOW", "CHALLENGE", "DENY"},
    "contiguity": set(CONTIGUITY_EVENTS) | {"completed", "created", "canceled"},
    "idvapi": {"verified", "rejected"},
    "nevis": {"pending", "in_progress", "verified", "failed"},
}
# Undocumented spellings, close ones first: another case, padding, a look-alike.
near_misses = st.sampled_from(
    [
        "approved",
        "Approved",
        "APPROVED ",
        " verified",
        "VERIFIED",
        "Verified",
        "verified\u200b",
        "VERIFIED_MANUALLY",
        "APPROVED_WITH_WARNINGS",
        "PASSED",
        "passed",
        "success",
        "accepted",
        "ALLOW ",
        "allow",
        "deny",
        "DENIED_FINAL",
        "rejected",
        "REJECTED",
        "failed",
        "FAILED",
        "declined",
        "complete",
        "completed",
        "done",
        "ok",
        "true",
    ]
)
# Storable text (a control character or a lone surrogate is refused earlier, as any ParseError).
storable = st.characters(blacklist_categories=("Cc", "Cs"))
undocumented_text = near_misses | st.text(storable, min_size=1, max_size=30).filter(str.strip)


def outcome_statuses(call: Any) -> set[Status]:
    """The statuses a parse yields; an empty set when it refuses (quarantine)."""
    try:
        parsed = call()
    except UnknownValueError:
        return set()
    except ParseError:
        return set()
    return {obs.status for obs in parsed.observations}


@settings(max_examples=150, deadline=None)
@given(value=undocumented_text, notification=st.sampled_from([None, "auto-finished", "expired"]))
def test_idenfy_undocumented_overall_is_never_a_verdict(value: str, notification: str | None):
    assume(value not in DOCUMENTED["idenfy"])
    statuses = outcome_statuses(lambda: webhook("idenfy", idenfy_result(value), notification))
    assert not statuses & VERDICTS
    if notification is None:  # nothing else to go on: refused, not guessed
        with pytest.raises(UnknownValueError):
            webhook("idenfy", idenfy_result(value), notification)


@settings(max_examples=100, deadline=None)
@given(notification=st.from_regex(r"[a-z][a-z-]{0,39}", fullmatch=True))
def test_idenfy_undocumented_notification_is_refused(notification: str) -> None:
    known = {"auto-finished", "manual-finished", "resubmitted", "cancelled", "expired"}
    assume(notification not in known)
    with pytest.raises(UnknownValueError):
        webhook("idenfy", idenfy_result("APPROVED"), notification)


@settings(max_examples=150, deadline=None)
@given(status=undocumented_text, recommendation=undocumented_text | st.sampled_from(["ALLOW"]))
def test_docverify_undocumented_values_are_never_a_verdict(status: str, recommendation: str):
    assume(status not in DOCUMENTED["docverify"])
    answer = {"session_id": "dv-1", "status": status, "recommendation": recommendation}
    with pytest.raises(UnknownValueError):
        PROVIDERS["docverify"].parse_status("dv-1", answer, NOW)


@settings(max_examples=100, deadline=None)
@given(recommendation=undocumented_text)
def test_docverify_undocumented_recommendation_is_never_a_verdict(recommendation: str) -> None:
    assume(recommendation not in DOCUMENTED["recommendation"])
    answer = {"session_id": "dv-1", "status": "complete", "recommendation": recommendation}
    with pytest.raises(UnknownValueError):
        PROVIDERS["docverify"].parse_status("dv-1", answer, NOW)


@settings(max_examples=150, deadline=None)
@given(suffix=undocumented_text, kind=st.sampled_from(["verification_session", "other"]))
def test_contiguity_undocumented_event_types_are_never_a_verdict(suffix: str, kind: str):
    assume(suffix not in DOCUMENTED["contiguity"])
    body = envelope(f"identity.{kind}.{suffix}", {"id": "vs_1", "status": "verified"})
    with pytest.raises(UnknownValueError):
        webhook("contiguity", body)
    assert (
        not outcome_statuses(
            lambda: PROVIDERS["contiguity"].parse_status("vs_1", {"status": suffix}, NOW)
        )
        & VERDICTS
    )


@settings(max_examples=100, deadline=None)
@given(value=undocumented_text)
def test_idvapi_undocumented_status_is_never_a_verdict(value: str) -> None:
    assume(value not in DOCUMENTED["idvapi"])
    with pytest.raises(UnknownValueError):
        webhook("idvapi", idvapi_result(value))


@settings(max_examples=100, deadline=None)
@given(value=undocumented_text)
def test_nevis_undocumented_status_is_never_a_verdict(value: str) -> None:
    assume(value not in DOCUMENTED["nevis"])
    with pytest.raises(UnknownValueError):
        PROVIDERS["nevis"].parse_status("123456789", {"status": value}, NOW)


# Undocumented shapes: any JSON at all. A verdict may only come from a documented verdict value
# in the documented place.
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
verdict_words = st.sampled_from(
    ["APPROVED", "DENIED", "verified", "rejected", "failed", "ALLOW", "DENY", "complete"]
)
json_values = st.recursive(
    scalars | verdict_words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
keys = st.sampled_from(
    ["status", "overall", "final", "scanRef", "recommendation", "verification_result", "data"]
)
shapes = st.dictionaries(keys | st.text(max_size=8), json_values, max_size=6)


def documented_verdict(provider: str, payload: Any) -> bool:
    """True when the payload holds a documented verdict value in its documented place."""
    if not isinstance(payload, dict):
        return False
    if provider == "idenfy":
        status = payload.get("status")
        overall = status.get("overall") if isinstance(status, dict) else status
        return overall in {"APPROVED", "DENIED"}
    if provider == "docverify":
        return payload.get("status") == "complete" and payload.get("recommendation") in {
            "ALLOW",
            "DENY",
        }
    if provider == "idvapi":
        result = payload.get("verification_result")
        return isinstance(result, dict) and result.get("status") in DOCUMENTED["idvapi"]
    return payload.get("status") in {"verified", "failed", "manually_approved", "rejected"} | {
        "manually_denied"
    }


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@settings(max_examples=150, deadline=None)
@given(payload=shapes | json_values)
def test_undocumented_shapes_are_never_a_verdict(provider: str, payload: Any) -> None:
    body = json.dumps(payload).encode()
    calls = [lambda: PROVIDERS[provider].parse_status("sess_1", payload, NOW)]
    if Source.WEBHOOK in PROVIDERS[provider].sources:
        calls.append(lambda: webhook(provider, body))
    for call in calls:
        if outcome_statuses(call) & VERDICTS:
            assert documented_verdict(provider, payload), payload
