"""Real-world variants: each simulator sends the shapes and sequences seen in public examples, not
only the ones verihook's parsers were written from (issue 17 item 5). Everything through HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import pytest

from reconciler import simulators

from .conftest import Received, Receiver
from .helpers import configure, script, truth

# ----- iDenfy ------------------------------------------------------------------------------------

IDENFY_AUTH = ("test_idenfy_api_key", "test_idenfy_api_secret")


@pytest.fixture
def idenfy(receiver: Receiver) -> Iterator[simulators.Simulator]:
    with simulators.start(
        "idenfy",
        webhook_url=f"{receiver.url}/webhooks/idenfy",
        step_interval=0.01,
        late_notification_delay=0.05,
    ) as running:
        yield running


def idenfy_session(http: httpx.Client, sim: simulators.Simulator) -> str:
    response = http.post(f"{sim.url}/api/v2/token", json={"clientId": "c-1"}, auth=IDENFY_AUTH)
    assert response.status_code == 201, response.text
    scan_ref: str = response.json()["scanRef"]
    return scan_ref


def idenfy_payload(received: Received) -> dict:
    expected = hmac.new(b"test_idenfy_signing_key", received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.headers["Idenfy-Signature"], expected)
    payload: dict = json.loads(received.body)
    return payload


def idenfy_status(http: httpx.Client, sim: simulators.Simulator, scan_ref: str) -> dict:
    answer: dict = http.post(
        f"{sim.url}/api/v2/status", json={"scanRef": scan_ref}, auth=IDENFY_AUTH
    ).json()
    return answer


@pytest.mark.parametrize(
    ("variant", "notification", "outcome", "manual", "overall"),
    [
        ("late_expiry", "expired", "verified", False, "APPROVED"),
        ("late_expiry", "expired", "rejected", True, "DENIED"),
        ("late_cancel", "cancelled", "rejected", False, "DENIED"),
    ],
)
def test_idenfy_late_notification_after_a_decision_carries_the_verdict(
    http: httpx.Client,
    idenfy: simulators.Simulator,
    receiver: Receiver,
    variant: str,
    notification: str,
    outcome: str,
    manual: bool,
    overall: str,
) -> None:
    scan_ref = idenfy_session(http, idenfy)
    plan = script(http, idenfy, scan_ref, outcome=outcome, manual=manual, variant=variant)
    assert plan["variant"] == variant and plan["steps"][-1] == f"{notification}:late"
    assert idenfy.wait_idle(5)
    *decision, late = receiver.requests
    assert decision[-1].path.endswith("-finished")
    assert late.path == f"/webhooks/idenfy/{notification}"
    decided, after = idenfy_payload(decision[-1]), idenfy_payload(late)
    assert after["final"] is True and after["status"]["overall"] == overall
    assert after["status"] == decided["status"] and after["scanRef"] == scan_ref
    assert after["data"]["docFirstName"] in idenfy.pii()  # a verification took place
    state = truth(http, idenfy, scan_ref)
    expected_by = "manual" if manual else "auto"
    assert (state["canonical"], state["decided_by"], state["variant"]) == (
        outcome,
        expected_by,
        variant,
    )
    assert state["notifications"][-1] == notification
    assert state["final_notification"] == ("manual-finished" if manual else "auto-finished")
    status = idenfy_status(http, idenfy, scan_ref)
    assert status["status"] == overall and status["final"] is True


def test_idenfy_late_notification_waits(http: httpx.Client, idenfy: simulators.Simulator) -> None:
    configure(http, idenfy, late_notification_delay=30)
    scan_ref = idenfy_session(http, idenfy)
    script(http, idenfy, scan_ref, outcome="verified", variant="late_expiry")
    assert not idenfy.wait_idle(0.3)
    state = truth(http, idenfy, scan_ref)
    assert state["canonical"] == "verified" and state["script_active"] is True
    assert state["notifications"] == ["auto-finished"]


def test_idenfy_preliminary_result_with_manual_fields_filled(
    http: httpx.Client, idenfy: simulators.Simulator, receiver: Receiver
) -> None:
    scan_ref = idenfy_session(http, idenfy)
    script(http, idenfy, scan_ref, outcome="verified", manual=True, variant="manual_prefilled")
    assert idenfy.wait_idle(5)
    first, second = receiver.requests
    assert (first.path, second.path) == (
        "/webhooks/idenfy/auto-finished",
        "/webhooks/idenfy/manual-finished",
    )
    preliminary, final = idenfy_payload(first), idenfy_payload(second)
    # as gboddin/go-idenfy testdata/webhook.1.json: final false, a verdict, manual fields filled
    assert preliminary["final"] is False
    assert preliminary["status"]["overall"] == "APPROVED"
    assert preliminary["status"]["manualDocument"] == "DOC_VALIDATED"
    assert preliminary["status"]["manualFace"] == "FACE_MATCH"
    assert final["final"] is True and final["status"]["overall"] == "APPROVED"
    state = truth(http, idenfy, scan_ref)
    assert (state["canonical"], state["decided_by"]) == ("verified", "manual")


def test_idenfy_preliminary_pending_reads_reviewing(
    http: httpx.Client, idenfy: simulators.Simulator
) -> None:
    configure(http, idenfy, step_interval=30)
    scan_ref = idenfy_session(http, idenfy)
    script(http, idenfy, scan_ref, outcome="rejected", manual=True, variant="manual_prefilled")
    assert not idenfy.wait_idle(0.2)
    status = idenfy_status(http, idenfy, scan_ref)
    assert (status["status"], status["final"], status["manualFace"]) == (
        "REVIEWING",
        False,
        "FACE_MISMATCH",
    )


@pytest.mark.parametrize("manual", [False, True])
def test_idenfy_legacy_shape_has_no_final_field(
    http: httpx.Client, idenfy: simulators.Simulator, receiver: Receiver, manual: bool
) -> None:
    scan_ref = idenfy_session(http, idenfy)
    script(http, idenfy, scan_ref, outcome="rejected", manual=manual, variant="legacy_shape")
    assert idenfy.wait_idle(5)
    assert len(receiver.requests) == (2 if manual else 1)
    payloads = [idenfy_payload(received) for received in receiver.requests]
    for received, payload in zip(receiver.requests, payloads, strict=True):
        assert received.path == "/webhooks/idenfy"  # the legacy single URL
        assert "final" not in payload and "externalRef" not in payload
        assert set(payload["status"]) == {
            "overall",
            "suspicionReasons",
            "autoDocument",
            "autoFace",
            "manualDocument",
            "manualFace",
        }
        assert {"aml", "lid", "fileUrls", "scanRef", "clientId", "platform"} <= set(payload)
        assert payload["scanRef"] == scan_ref
    last = payloads[-1]["status"]
    assert last["overall"] == "DENIED"
    assert (last["manualFace"] is not None) == manual
    state = truth(http, idenfy, scan_ref)
    assert (state["canonical"], state["decided_by"]) == (
        "rejected",
        "manual" if manual else "auto",
    )
    assert idenfy_status(http, idenfy, scan_ref)["final"] is True


def test_idenfy_variants_are_checked(http: httpx.Client, idenfy: simulators.Simulator) -> None:
    scan_ref = idenfy_session(http, idenfy)
    url = f"{idenfy.control_url}/sessions/{scan_ref}/script"
    bad = [
        {"outcome": "verified", "variant": "nope"},
        {"outcome": "verified", "variant": "manual_prefilled"},  # needs a manual review
        {"outcome": "expired", "variant": "late_expiry"},  # no decision to follow
    ]
    for request in bad:
        answer = http.post(url, json=request)
        assert answer.status_code == 400 and "variant" in answer.json()["message"], request
    assert truth(http, idenfy, scan_ref)["script_active"] is False


def test_config_shares_draw_variants(
    http: httpx.Client, idenfy: simulators.Simulator, receiver: Receiver
) -> None:
    assert configure(http, idenfy, variants={"late_cancel": 1.0})["variants"] == {
        "late_cancel": 1.0
    }
    drawn = idenfy_session(http, idenfy)
    assert script(http, idenfy, drawn, outcome="verified")["variant"] == "late_cancel"
    unfit = idenfy_session(http, idenfy)  # a drawn variant that does not fit is left out
    assert script(http, idenfy, unfit, outcome="expired")["variant"] is None
    named = idenfy_session(http, idenfy)  # a script naming null gets none
    assert script(http, idenfy, named, outcome="verified", variant=None)["variant"] is None
    assert idenfy.wait_idle(5)
    assert [received.path.rsplit("/", 1)[1] for received in receiver.requests].count(
        "cancelled"
    ) == 1
    for update in (
        {"variants": {"nope": 0.5}},
        {"variants": {"late_expiry": 0.7, "late_cancel": 0.7}},
        {"variants": {"late_expiry": -0.1}},
        {"variants": ["late_expiry"]},
    ):
        assert http.post(f"{idenfy.control_url}/config", json=update).status_code == 400, update


# ----- docverify ---------------------------------------------------------------------------------

DOCVERIFY_CLIENT = {
    "client_id": "test_docverify_client_id",
    "client_secret": "test_docverify_client_secret",
    "grant_type": "client_credentials",
    "resource": "https://verify.identity.security",
}


@pytest.fixture
def docverify(receiver: Receiver) -> Iterator[simulators.Simulator]:
    with simulators.start("docverify", step_interval=0.01) as running:
        yield running


def docverify_session(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver
) -> tuple[str, dict[str, str]]:
    assert sim.token_url is not None
    token = http.post(sim.token_url, data=DOCVERIFY_CLIENT).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    created = http.post(
        f"{sim.url}/api/v1/verification",
        headers=auth,
        json={"callback_url": f"{receiver.url}/cb", "state": "s-1"},
    )
    assert created.status_code == 201, created.text
    return created.json()["session_id"], auth


def test_docverify_answers_the_deprecated_shape_unless_detailed_is_asked(
    http: httpx.Client, docverify: simulators.Simulator, receiver: Receiver
) -> None:
    sid, auth = docverify_session(http, docverify, receiver)
    url = f"{docverify.url}/api/v1/verification/{sid}/result"
    assert http.get(url, headers=auth).json() == {"session_id": sid, "status": "pending"}
    script(http, docverify, sid, outcome="verified")
    assert docverify.wait_idle(5)
    detailed = http.get(url, headers=auth, params={"detailed": "true"}).json()
    assert {"person", "document", "checks"} <= set(detailed) and "verified_info" not in detailed
    for params in ({}, {"detailed": "false"}):
        deprecated = http.get(url, headers=auth, params=params).json()
        assert (deprecated["status"], deprecated["recommendation"]) == ("complete", "ALLOW")
        assert set(deprecated) == {"session_id", "status", "recommendation", "verified_info"}
        person, document = (
            deprecated["verified_info"]["person"],
            deprecated["verified_info"]["document"],
        )
        assert person["full_name"] == detailed["person"]["full_name"] in docverify.pii()
        assert person["date_of_birth"].endswith("T00:00:00.000Z") and person["gender"] in "MF"
        assert len(document["country"]) == 3  # alpha-3 in the deprecated shape, alpha-2 in new
        assert document["id_value"] == detailed["person"]["national_id"]
        assert document["document_serial_number"] == detailed["document"]["serial_number"]
    reads = truth(http, docverify, sid)["result_reads"]
    assert reads == {"detailed": 1, "deprecated": 3}


def test_docverify_deprecated_shape_of_a_denial(
    http: httpx.Client, docverify: simulators.Simulator, receiver: Receiver
) -> None:
    sid, auth = docverify_session(http, docverify, receiver)
    script(http, docverify, sid, outcome="rejected")
    assert docverify.wait_idle(5)
    answer = http.get(f"{docverify.url}/api/v1/verification/{sid}/result", headers=auth).json()
    assert answer["recommendation"] == "DENY" and "verified_info" not in answer
    assert answer["rejection_description"] and isinstance(answer["rejection_description"], list)
    assert set(answer["extracted_info"]) == {"document", "person"}


def test_docverify_error_is_incomplete_not_a_verdict(
    http: httpx.Client, docverify: simulators.Simulator, receiver: Receiver
) -> None:
    sid, auth = docverify_session(http, docverify, receiver)
    url = f"{docverify.control_url}/sessions/{sid}/script"
    wrong = http.post(url, json={"outcome": "rejected", "provider_status": "error"})
    assert wrong.status_code == 400
    plan = script(http, docverify, sid, outcome="requires_input", provider_status="error")
    assert plan["steps"][-1] == "error"
    assert docverify.wait_idle(5)
    result_url = f"{docverify.url}/api/v1/verification/{sid}/result"
    for params in ({"detailed": "true"}, {}):  # IncompleteSessionResult / DeprecatedSessionResult
        assert http.get(result_url, headers=auth, params=params).json() == {
            "session_id": sid,
            "status": "error",
        }
    [redirect] = receiver.requests
    assert redirect.args == {"sessionId": sid, "state": "s-1"}
    state = truth(http, docverify, sid)
    assert (state["provider_status"], state["canonical"], state["final"]) == (
        "error",
        "requires_input",
        True,
    )


# ----- Nevis -------------------------------------------------------------------------------------

NEVIS_AUTH = {"Authorization": "Bearer test_nevis_access_key"}


@pytest.fixture
def nevis(receiver: Receiver) -> Iterator[simulators.Simulator]:
    with simulators.start(
        "nevis", callback_url=f"{receiver.url}/callbacks/nevis", step_interval=0.01
    ) as running:
        yield running


def nevis_session(http: httpx.Client, sim: simulators.Simulator) -> str:
    session_id: str = http.post(
        f"{sim.url}/idverification/sessions", json={}, headers=NEVIS_AUTH
    ).json()["sessionId"]
    return session_id


def test_nevis_redirect_with_no_parameters(
    http: httpx.Client, nevis: simulators.Simulator, receiver: Receiver
) -> None:
    session_id = nevis_session(http, nevis)
    script(http, nevis, session_id, outcome="verified", variant="bare_redirect")
    assert nevis.wait_idle(5)
    [redirect] = receiver.requests
    assert (redirect.method, redirect.path, redirect.args) == ("GET", "/callbacks/nevis", {})
    state = truth(http, nevis, session_id)
    assert (state["canonical"], state["variant"]) == ("verified", "bare_redirect")
    assert [entry["event"] for entry in state["deliveries"]] == ["redirect:bare"]
    polled = http.get(f"{nevis.url}/idverification/sessions/{session_id}", headers=NEVIS_AUTH)
    assert polled.json()["status"] == "verified"


def test_nevis_redirect_with_an_unknown_id(
    http: httpx.Client, nevis: simulators.Simulator, receiver: Receiver
) -> None:
    session_id = nevis_session(http, nevis)
    script(http, nevis, session_id, outcome="rejected", variant="unknown_id_redirect")
    assert nevis.wait_idle(5)
    [redirect] = receiver.requests
    named = redirect.args["sessionId"]
    assert set(redirect.args) == {"sessionId"} and named != session_id
    assert len(named) == 9 and named.isdigit()
    unknown = http.get(f"{nevis.url}/idverification/sessions/{named}", headers=NEVIS_AUTH)
    assert unknown.status_code == 404
    assert truth(http, nevis, session_id)["canonical"] == "rejected"


# ----- Contiguity --------------------------------------------------------------------------------

CONTIGUITY_SECRET = b"whsec_test_contiguity_secret"


@pytest.fixture
def contiguity(receiver: Receiver) -> Iterator[simulators.Simulator]:
    with simulators.start(
        "contiguity", webhook_url=f"{receiver.url}/webhooks/contiguity", step_interval=0.01
    ) as running:
        yield running


def contiguity_session(http: httpx.Client, sim: simulators.Simulator) -> str:
    created = http.post(
        f"{sim.url}/vs/create",
        json={"type": "document", "client_reference_id": "u-9"},
        headers={"Authorization": "Token test_contiguity_api_token"},
    )
    vs_id: str = created.json()["id"]
    return vs_id


def contiguity_events(receiver: Receiver) -> list[dict]:
    events = []
    for received in receiver.requests:
        fields = dict(
            part.split("=", 1) for part in received.headers["Contiguity-Signature"].split(",")
        )
        signed = fields["t"].encode() + b"." + received.body
        expected = hmac.new(CONTIGUITY_SECRET, signed, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(fields["v1"], expected)
        events.append(json.loads(received.body))
    return events


@pytest.mark.parametrize(
    ("variant", "outcome", "manual", "extra_types", "named"),
    [
        ("report_event", "verified", False, ["identity.verification_report.generated"], True),
        (
            "anonymous_report_event",
            "rejected",
            False,
            ["identity.verification_report.generated"],
            False,
        ),
        (
            "completed_event",
            "verified",
            True,
            [
                "identity.verification_session.completed",
                "identity.verification_report.generated",
            ],
            True,
        ),
    ],
)
def test_contiguity_report_and_completed_events(
    http: httpx.Client,
    contiguity: simulators.Simulator,
    receiver: Receiver,
    variant: str,
    outcome: str,
    manual: bool,
    extra_types: list[str],
    named: bool,
) -> None:
    vs_id = contiguity_session(http, contiguity)
    script(http, contiguity, vs_id, outcome=outcome, manual=manual, variant=variant)
    assert contiguity.wait_idle(5)
    events = contiguity_events(receiver)
    session_types = [
        event["type"].rsplit(".", 1)[1]
        for event in events
        if event["type"].startswith("identity.verification_session.")
        and not event["type"].endswith(".completed")
    ]
    expected_statuses = {
        ("verified", False): ["started", "processing", "verified"],
        ("rejected", False): ["started", "processing", "failed"],
        ("verified", True): ["started", "processing", "requires_input", "manually_approved"],
    }[(outcome, manual)]
    assert session_types == expected_statuses
    extra = [event for event in events if event["type"] in extra_types]
    assert [event["type"] for event in extra] == extra_types
    state = truth(http, contiguity, vs_id)
    report = next(e for e in extra if e["type"].startswith("identity.verification_report."))
    assert report["data"]["id"].startswith("vr_") and report["data"]["id"] != vs_id
    assert report["data"]["object"] == "identity.verification_report"
    assert report["data"]["id"] == state["verification_report"]
    assert ("verification_session" in report["data"]) == named
    if named:
        assert report["data"]["verification_session"] == vs_id
    assert len({event["id"] for event in events}) == len(events)
    for event in extra:
        if event["type"].endswith(".completed"):
            assert event["data"]["id"] == vs_id and event["data"]["status"] == "requires_input"
    # the extra events change nothing: the session ends where its script says
    assert (state["canonical"], state["variant"]) == (outcome, variant)
    assert state["decided_by"] == ("manual" if manual else "auto")


def test_contiguity_canceled_has_no_report_variant(
    http: httpx.Client, contiguity: simulators.Simulator
) -> None:
    vs_id = contiguity_session(http, contiguity)
    answer = http.post(
        f"{contiguity.control_url}/sessions/{vs_id}/script",
        json={"outcome": "canceled", "variant": "report_event"},
    )
    assert answer.status_code == 400
