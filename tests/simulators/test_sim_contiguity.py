"""Contiguity simulator: API, auth, v2 webhooks checked with stripe's t=,v1= verifier, truth."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import stripe

from reconciler import simulators

from .conftest import Receiver
from .helpers import script, truth

TOKEN = "test_contiguity_api_token"
SECRET = "whsec_test_contiguity_secret"
AUTH = {"Authorization": f"Token {TOKEN}"}
CREATE = {
    "type": "document",
    "client_reference_id": "user-42",
    "metadata": {"k": "v"},
    "options": {"require_selfie": True},
    "return_url": "https://example.invalid/back",
}


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[simulators.Simulator]:
    with simulators.start(
        "contiguity", webhook_url=f"{receiver.url}/webhooks/contiguity", step_interval=0.01
    ) as running:
        yield running


def create(http: httpx.Client, sim: simulators.Simulator) -> dict:
    response = http.post(f"{sim.url}/vs/create", json=CREATE, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_auth_is_enforced(http: httpx.Client, sim: simulators.Simulator) -> None:
    assert http.post(f"{sim.url}/vs/create", json=CREATE).status_code == 401
    assert (
        http.post(
            f"{sim.url}/vs/create", json=CREATE, headers={"Authorization": "Token wrong"}
        ).status_code
        == 401
    )
    assert (
        http.post(
            f"{sim.url}/vs/create", json=CREATE, headers={"Authorization": f"Bearer {TOKEN}"}
        ).status_code
        == 401
    )
    assert http.get(f"{sim.url}/vs", params={"id": "vs_x"}).status_code == 401
    assert http.post(f"{sim.url}/vs/cancel", json={"id": "vs_x"}).status_code == 401
    assert sim.stats()["auth_failures"] == 5


def test_create_and_get(http: httpx.Client, sim: simulators.Simulator) -> None:
    created = create(http, sim)
    assert created["id"].startswith("vs_") and created["object"] == "identity.verification_session"
    assert created["status"] == "created" and created["client_reference_id"] == "user-42"
    assert http.get(created["url"]).status_code == 200
    fetched = http.get(f"{sim.url}/vs", params={"id": created["id"]}, headers=AUTH).json()
    assert fetched["id"] == created["id"] and fetched["status"] == "created"
    assert http.get(f"{sim.url}/vs", params={"id": "vs_nope"}, headers=AUTH).status_code == 404
    assert (
        http.post(f"{sim.url}/vs/create", json={"type": "selfie"}, headers=AUTH).status_code == 400
    )
    assert truth(http, sim, created["id"])["canonical"] == "pending"


def test_verified_webhooks_are_signed_and_ordered(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver
) -> None:
    session_id = create(http, sim)["id"]
    assert script(http, sim, session_id, outcome="verified")["steps"] == [
        "started",
        "processing",
        "verified",
    ]
    assert sim.wait_idle(5)
    got = receiver.requests
    assert [json.loads(item.body)["type"] for item in got] == [
        "identity.verification_session.started",
        "identity.verification_session.processing",
        "identity.verification_session.verified",
    ]
    for item in got:
        assert item.path == "/webhooks/contiguity" and item.method == "POST"
        assert stripe.WebhookSignature.verify_header(
            item.body, item.headers["Contiguity-Signature"], SECRET, 300
        )
        envelope = json.loads(item.body)
        assert envelope["id"].startswith("evt_") and envelope["api_version"] == "v2025.9.7"
        assert isinstance(envelope["timestamp"], int) and envelope["data"]["id"] == session_id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(
            got[0].body + b" ", got[0].headers["Contiguity-Signature"], SECRET, 300
        )
    last = json.loads(got[-1].body)["data"]
    assert last["status"] == "verified" and last["verification_report"].startswith("vr_")
    assert last["verified_outputs"]["first_name"] in sim.pii()
    state = truth(http, sim, session_id)
    assert (state["provider_status"], state["canonical"], state["decided_by"]) == (
        "verified",
        "verified",
        "auto",
    )
    assert state["final"] and state["webhooks_sent"] == 3 and state["webhooks_dropped"] == 0
    assert state["user_ref"] == "user-42"
    assert (
        http.get(f"{sim.url}/vs", params={"id": session_id}, headers=AUTH).json()["status"]
        == "verified"
    )


@pytest.mark.parametrize(
    ("outcome", "manual", "status", "canonical", "decided_by"),
    [
        ("rejected", False, "failed", "rejected", "auto"),
        ("requires_input", False, "requires_input", "requires_input", "auto"),
        ("verified", True, "manually_approved", "verified", "manual"),
        ("rejected", True, "manually_denied", "rejected", "manual"),
    ],
)
def test_outcomes(
    http: httpx.Client,
    sim: simulators.Simulator,
    receiver: Receiver,
    outcome: str,
    manual: bool,
    status: str,
    canonical: str,
    decided_by: str,
) -> None:
    session_id = create(http, sim)["id"]
    script(http, sim, session_id, outcome=outcome, manual=manual)
    assert sim.wait_idle(5)
    state = truth(http, sim, session_id)
    assert (state["provider_status"], state["canonical"], state["decided_by"]) == (
        status,
        canonical,
        decided_by,
    )
    last = json.loads(receiver.requests[-1].body)
    assert last["type"] == f"identity.verification_session.{status}"
    if status == "requires_input":
        assert last["data"]["error"]["code"] and last["data"]["error"]["message"]


def test_requires_input_then_manual_approval(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver
) -> None:
    session_id = create(http, sim)["id"]
    script(http, sim, session_id, outcome="requires_input")
    assert sim.wait_idle(5)
    assert script(http, sim, session_id, outcome="verified", manual=True)["steps"] == [
        "manually_approved"
    ]
    assert sim.wait_idle(5)
    assert (
        json.loads(receiver.requests[-1].body)["type"]
        == "identity.verification_session.manually_approved"
    )
    again = http.post(
        f"{sim.control_url}/sessions/{session_id}/script", json={"outcome": "rejected"}
    )
    assert again.status_code == 409


def test_cancel(http: httpx.Client, sim: simulators.Simulator, receiver: Receiver) -> None:
    session_id = create(http, sim)["id"]
    canceled = http.post(f"{sim.url}/vs/cancel", json={"id": session_id}, headers=AUTH)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert truth(http, sim, session_id)["canonical"] == "canceled"
    assert (
        http.post(f"{sim.url}/vs/cancel", json={"id": session_id}, headers=AUTH).status_code == 400
    )
    other = create(http, sim)["id"]
    script(http, sim, other, outcome="canceled")
    assert sim.wait_idle(5)
    assert truth(http, sim, other)["provider_status"] == "canceled"
    assert receiver.requests == []


def test_script_validation(http: httpx.Client, sim: simulators.Simulator) -> None:
    session_id = create(http, sim)["id"]
    url = f"{sim.control_url}/sessions/{session_id}/script"
    assert http.post(url, json={"outcome": "review"}).status_code == 400
    assert http.post(url, json={"outcome": "canceled", "manual": True}).status_code == 400
    assert http.post(url, json={"outcome": "verified", "after": -1}).status_code == 400
    assert (
        http.post(
            f"{sim.control_url}/sessions/vs_unknown/script", json={"outcome": "verified"}
        ).status_code
        == 404
    )
    assert http.get(f"{sim.control_url}/sessions/vs_unknown").status_code == 404
