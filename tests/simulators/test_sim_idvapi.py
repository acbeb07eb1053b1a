"""idvapi simulator: page/submit errors, multipart submit, unsigned webhook, User-Agent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from reconciler import simulators

from .conftest import Received, Receiver
from .helpers import script, truth

API_KEY = "test_idvapi_api_key"
FILES = {
    "selfie_video": ("selfie.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
    "id_photo": ("id.jpg", b"\xff\xd8\xff\xe0fakejpeg", "image/jpeg"),
}


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[simulators.Simulator]:
    with simulators.start(
        "idvapi", webhook_url=f"{receiver.url}/webhooks/idvapi/secret-token-123", step_interval=0.01
    ) as running:
        yield running


def check_webhook(received: Received, user_identifier: str, status: str) -> dict:
    assert received.method == "POST" and received.path == "/webhooks/idvapi/secret-token-123"
    assert received.headers["User-Agent"] == "IdentityVerification/1.0"
    assert not any(name.lower().endswith("signature") for name in received.headers)
    payload = json.loads(received.body)
    assert uuid.UUID(payload["check_id"]).version == 4
    assert payload["user_identifier"] == user_identifier
    result = payload["verification_result"]
    assert result["status"] == status and result["sessionId"] == payload["check_id"]
    assert result["verificationAssessment"]["verificationStatus"] == status
    assert payload["completed_at"].endswith("Z")
    return payload


def test_page_errors(http: httpx.Client, sim: simulators.Simulator) -> None:
    page = f"{sim.url}/verif/"
    assert http.get(page, params={"user_identifier": "u1"}).status_code == 400
    assert http.get(page, params={"api_key": API_KEY}).status_code == 400
    assert http.get(page, params={"api_key": "wrong", "user_identifier": "u1"}).status_code == 401
    ok = http.get(page, params={"api_key": API_KEY, "user_id": "u1"})
    assert ok.status_code == 200 and "text/html" in ok.headers["content-type"]
    assert truth(http, sim, "u1")["canonical"] == "pending"


def test_submit_errors(http: httpx.Client, sim: simulators.Simulator) -> None:
    submit = f"{sim.url}/verif/submit"
    assert http.post(submit, data={"user_identifier": "u1"}, files=FILES).status_code == 400
    assert http.post(submit, data={"api_key": API_KEY}, files=FILES).status_code == 400
    assert (
        http.post(submit, data={"api_key": "bad", "user_identifier": "u1"}, files=FILES).status_code
        == 401
    )
    missing = http.post(
        submit,
        data={"api_key": API_KEY, "user_identifier": "u1"},
        files={"id_photo": FILES["id_photo"]},
    )
    assert (
        missing.status_code == 400
        and missing.json()["error"] == "Both selfie video and ID photo are required"
    )


def test_submit_completes_and_sends_webhook(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver
) -> None:
    response = http.post(
        f"{sim.url}/verif/submit", data={"api_key": API_KEY, "user_identifier": "u2"}, files=FILES
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True and answer["result"]["status"] == "verified"
    assert answer["result"]["files"]["selfieVideo"]["url"] in sim.pii()
    assert answer["result"]["faceComparison"]["method"] == "openai_vision"
    assert sim.wait_idle(5)
    [received] = receiver.requests
    payload = check_webhook(received, "u2", "verified")
    assert payload["check_id"] == answer["check_id"] and payload["id_photo_url"] in sim.pii()


@pytest.mark.parametrize("outcome", ["verified", "rejected"])
def test_script_creates_session_implicitly(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver, outcome: str
) -> None:
    assert script(http, sim, "user-99", outcome=outcome)["steps"] == ["processing", outcome]
    assert sim.wait_idle(5)
    [received] = receiver.requests
    payload = check_webhook(received, "user-99", outcome)
    state = truth(http, sim, "user-99")
    assert (state["provider_status"], state["canonical"], state["decided_by"]) == (
        outcome,
        outcome,
        "auto",
    )
    assert state["check_id"] == payload["check_id"] and state["user_ref"] == "user-99"
    script(http, sim, "user-99", outcome="verified")  # a new check for the same user
    assert sim.wait_idle(5)
    assert len(truth(http, sim, "user-99")["checks"]) == 2


def test_script_rejects_unknown_outcomes(http: httpx.Client, sim: simulators.Simulator) -> None:
    url = f"{sim.control_url}/sessions/u3/script"
    assert http.post(url, json={"outcome": "review"}).status_code == 400
    assert http.post(url, json={"outcome": "verified", "manual": True}).status_code == 400
