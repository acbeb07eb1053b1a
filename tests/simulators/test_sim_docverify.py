"""docverify simulator: token endpoint, Bearer auth and expiry, results, the redirect."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from reconciler import simulators

from .conftest import Receiver
from .helpers import script, truth

CLIENT = {
    "client_id": "test_docverify_client_id",
    "client_secret": "test_docverify_client_secret",
    "grant_type": "client_credentials",
    "resource": "https://verify.identity.security",
}


@pytest.fixture
def sim() -> Iterator[simulators.Simulator]:
    with simulators.start("docverify", step_interval=0.01, token_expires_in=1) as running:
        yield running


def token(http: httpx.Client, sim: simulators.Simulator) -> dict[str, str]:
    assert sim.token_url is not None
    response = http.post(sim.token_url, data=CLIENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["token_type"] == "Bearer"
        and body["expires_in"] == sim.engine.config["token_expires_in"]
    )
    assert body["access_token"].count(".") == 2
    return {"Authorization": f"Bearer {body['access_token']}"}


def create(
    http: httpx.Client, sim: simulators.Simulator, auth: dict[str, str], callback_url: str
) -> dict:
    response = http.post(
        f"{sim.url}/api/v1/verification",
        headers=auth,
        json={
            "callback_url": callback_url,
            "state": "csrf-123",
            "customer_information": {"external_user_id": "user-7"},
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_urls(sim: simulators.Simulator) -> None:
    assert (
        sim.url.endswith("/verify")
        and sim.token_url == sim.url.removesuffix("/verify") + "/oidc/token"
    )


def test_token_endpoint_rejects_bad_requests(http: httpx.Client, sim: simulators.Simulator) -> None:
    assert sim.token_url is not None
    assert http.post(sim.token_url, data={**CLIENT, "client_secret": "wrong"}).status_code == 401
    assert http.post(sim.token_url, data={**CLIENT, "client_id": "other"}).status_code == 401
    missing_resource = {key: value for key, value in CLIENT.items() if key != "resource"}
    assert http.post(sim.token_url, data=missing_resource).status_code == 400
    assert (
        http.post(sim.token_url, data={**CLIENT, "resource": "https://elsewhere"}).status_code
        == 400
    )
    assert http.post(sim.token_url, data={**CLIENT, "grant_type": "password"}).status_code == 400
    assert http.post(sim.token_url, json=CLIENT).status_code == 400
    assert sim.stats()["token_calls"] == 6


def test_bearer_auth_and_expiry(http: httpx.Client, sim: simulators.Simulator) -> None:
    endpoint = f"{sim.url}/api/v1/verification"
    assert http.post(endpoint, json={}).status_code == 401
    assert (
        http.post(endpoint, json={}, headers={"Authorization": "Bearer not-a-token"}).status_code
        == 401
    )
    auth = token(http, sim)
    created = create(http, sim, auth, "https://example.invalid/cb")
    result_url = f"{sim.url}/api/v1/verification/{created['session_id']}/result"
    assert http.get(result_url, headers=auth).status_code == 200
    time.sleep(1.1)
    assert http.get(result_url, headers=auth).status_code == 401
    assert http.get(result_url, headers=token(http, sim)).status_code == 200


def test_complete_flow_redirects_with_session_and_state(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver
) -> None:
    receiver.status_for = lambda received: 302
    sim.configure(token_expires_in=3600)
    auth = token(http, sim)
    created = create(http, sim, auth, f"{receiver.url}/callbacks/docverify?x=1")
    sid = created["session_id"]
    assert created["start_token"] and created["expiration"]
    assert set(created["missing_images"]) == {"document_front", "document_back", "selfie"}
    assert http.get(f"{sim.url}/app/{created['start_token']}").status_code == 200
    result_url = f"{sim.url}/api/v1/verification/{sid}/result"
    assert http.get(result_url, headers=auth).json() == {"session_id": sid, "status": "pending"}
    plan = script(http, sim, sid, outcome="verified")
    assert plan["steps"] == ["capturing", "processing", "complete:ALLOW"]
    assert sim.wait_idle(5)
    [redirect] = receiver.requests
    assert redirect.method == "GET" and redirect.path == "/callbacks/docverify"
    assert redirect.args == {"x": "1", "sessionId": sid, "state": "csrf-123"}
    result = http.get(result_url, headers=auth, params={"detailed": "true"}).json()
    assert result["status"] == "complete" and result["recommendation"] == "ALLOW"
    assert result["person"]["full_name"] in sim.pii() and result["document"]["number"] in sim.pii()
    assert set(result["checks"]) >= {
        "document_validation",
        "biometric_matching",
        "risk_recommendation",
    }
    state = truth(http, sim, sid)
    assert (state["provider_status"], state["canonical"], state["decided_by"]) == (
        "complete",
        "verified",
        "auto",
    )
    assert state["user_ref"] == "user-7" and state["webhooks_delivered"] == 1
    assert state["deliveries"][0]["status"] == 302


@pytest.mark.parametrize(
    ("request_body", "status", "canonical", "redirects"),
    [
        ({"outcome": "review"}, "complete", "review", 1),
        ({"outcome": "rejected"}, "complete", "rejected", 1),
        ({"outcome": "requires_input", "provider_status": "error"}, "error", "requires_input", 1),
        ({"outcome": "requires_input"}, "recapture", "requires_input", 0),
    ],
)
def test_other_outcomes(
    http: httpx.Client,
    sim: simulators.Simulator,
    receiver: Receiver,
    request_body: dict,
    status: str,
    canonical: str,
    redirects: int,
) -> None:
    sim.configure(token_expires_in=3600)
    auth = token(http, sim)
    sid = create(http, sim, auth, f"{receiver.url}/cb")["session_id"]
    script(http, sim, sid, **request_body)
    assert sim.wait_idle(5)
    state = truth(http, sim, sid)
    assert (state["provider_status"], state["canonical"]) == (status, canonical)
    assert len(receiver.requests) == redirects
    result_url = f"{sim.url}/api/v1/verification/{sid}/result"
    answer = http.get(result_url, headers=auth, params={"detailed": "true"}).json()
    assert answer["status"] == status
    if status == "complete":
        assert (
            answer["recommendation"]
            == {"review": "CHALLENGE", "rejected": "DENY"}[request_body["outcome"]]
        )
    else:
        assert set(answer) == {"session_id", "status"}


def test_delete(http: httpx.Client, sim: simulators.Simulator) -> None:
    sim.configure(token_expires_in=3600)
    auth = token(http, sim)
    sid = create(http, sim, auth, "https://example.invalid/cb")["session_id"]
    assert http.delete(f"{sim.url}/api/v1/verification/{sid}", headers=auth).status_code == 200
    assert http.get(f"{sim.url}/api/v1/verification/{sid}/result", headers=auth).status_code == 404
    assert http.delete(f"{sim.url}/api/v1/verification/{sid}", headers=auth).status_code == 404
    assert truth(http, sim, sid)["canonical"] == "canceled"
    assert (
        http.post(
            f"{sim.control_url}/sessions/{sid}/script", json={"outcome": "verified"}
        ).status_code
        == 409
    )
