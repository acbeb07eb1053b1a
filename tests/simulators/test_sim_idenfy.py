"""iDenfy simulator: Basic auth, token, status, signed callbacks per URL, manual review."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from reconciler import simulators

from .conftest import Received, Receiver
from .helpers import configure, script, truth

AUTH = ("test_idenfy_api_key", "test_idenfy_api_secret")
SECRET = b"test_idenfy_signing_key"


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[simulators.Simulator]:
    with simulators.start(
        "idenfy", webhook_url=f"{receiver.url}/webhooks/idenfy", step_interval=0.01
    ) as running:
        yield running


def create(http: httpx.Client, sim: simulators.Simulator, **extra: object) -> dict:
    response = http.post(
        f"{sim.url}/api/v2/token", json={"clientId": "client-1", **extra}, auth=AUTH
    )
    assert response.status_code == 201, response.text
    return response.json()


def verified_payload(received: Received) -> dict:
    expected = hmac.new(SECRET, received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.headers["Idenfy-Signature"], expected)
    return json.loads(received.body)


def test_auth_is_enforced(http: httpx.Client, sim: simulators.Simulator) -> None:
    assert http.post(f"{sim.url}/api/v2/token", json={"clientId": "c"}).status_code == 401
    assert (
        http.post(
            f"{sim.url}/api/v2/token", json={"clientId": "c"}, auth=("test_idenfy_api_key", "x")
        ).status_code
        == 401
    )
    assert http.post(f"{sim.url}/api/v2/status", json={"scanRef": "x"}).status_code == 401
    assert (
        http.post(f"{sim.url}/api/v2/status", json={"scanRef": "x"}, auth=("a", "b")).status_code
        == 401
    )
    assert http.post(f"{sim.url}/api/v2/token", json={}, auth=AUTH).status_code == 400


def test_token_and_status(http: httpx.Client, sim: simulators.Simulator) -> None:
    token = create(http, sim, firstName="John Tom", externalRef="ext-1")
    assert uuid.UUID(token["scanRef"]) and len(token["authToken"]) == 40
    assert (
        token["clientId"] == "client-1"
        and token["firstName"] == "JOHN TOM"
        and token["expiryTime"] == 86400
    )
    assert token["message"] == "Token created successfully"
    assert (
        http.get(f"{sim.url}/api/v2/redirect", params={"authToken": token["authToken"]}).status_code
        == 200
    )
    status = http.post(
        f"{sim.url}/api/v2/status", json={"scanRef": token["scanRef"]}, auth=AUTH
    ).json()
    assert status == {
        "status": "ACTIVE",
        "final": False,
        "autoDocument": None,
        "autoFace": None,
        "manualDocument": None,
        "manualFace": None,
        "fraudTags": [],
        "mismatchTags": [],
        "scanRef": token["scanRef"],
        "clientId": "client-1",
    }
    assert (
        http.post(f"{sim.url}/api/v2/status", json={"scanRef": "nope"}, auth=AUTH).status_code
        == 404
    )
    assert truth(http, sim, token["scanRef"])["canonical"] == "pending"


@pytest.mark.parametrize(
    ("outcome", "overall"),
    [("verified", "APPROVED"), ("rejected", "DENIED"), ("review", "SUSPECTED")],
)
def test_auto_finished(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver, outcome: str, overall: str
) -> None:
    scan_ref = create(http, sim)["scanRef"]
    script(http, sim, scan_ref, outcome=outcome)
    assert sim.wait_idle(5)
    [received] = receiver.requests
    assert received.path == "/webhooks/idenfy/auto-finished"
    payload = verified_payload(received)
    assert payload["final"] is True and payload["status"]["overall"] == overall
    assert payload["scanRef"] == scan_ref and payload["clientId"] == "client-1"
    pii = sim.pii()
    assert payload["data"]["docFirstName"] in pii and payload["data"]["docDob"] in pii
    assert payload["fileUrls"]["FACE"] in pii and set(payload["fileUrls"]) == {
        "FRONT",
        "BACK",
        "FACE",
    }
    state = truth(http, sim, scan_ref)
    assert (state["provider_status"], state["canonical"], state["decided_by"]) == (
        overall,
        outcome,
        "auto",
    )
    status = http.post(f"{sim.url}/api/v2/status", json={"scanRef": scan_ref}, auth=AUTH).json()
    assert status["status"] == overall and status["final"] is True


def test_manual_review(http: httpx.Client, sim: simulators.Simulator, receiver: Receiver) -> None:
    scan_ref = create(http, sim)["scanRef"]
    script(http, sim, scan_ref, outcome="rejected", manual=True)
    assert sim.wait_idle(5)
    first, second = receiver.requests
    assert (first.path, second.path) == (
        "/webhooks/idenfy/auto-finished",
        "/webhooks/idenfy/manual-finished",
    )
    preliminary, final = verified_payload(first), verified_payload(second)
    assert preliminary["final"] is False and final["final"] is True
    assert (
        final["status"]["overall"] == "DENIED" and final["status"]["manualFace"] == "FACE_MISMATCH"
    )
    state = truth(http, sim, scan_ref)
    assert (state["canonical"], state["decided_by"], state["notifications"]) == (
        "rejected",
        "manual",
        ["auto-finished", "manual-finished"],
    )


def test_manual_review_pending_reads_reviewing(
    http: httpx.Client, sim: simulators.Simulator
) -> None:
    configure(http, sim, step_interval=30)
    scan_ref = create(http, sim)["scanRef"]
    script(http, sim, scan_ref, outcome="verified", manual=True)
    assert not sim.wait_idle(0.2)
    status = http.post(f"{sim.url}/api/v2/status", json={"scanRef": scan_ref}, auth=AUTH).json()
    assert status["status"] == "REVIEWING" and status["final"] is False
    assert truth(http, sim, scan_ref)["canonical"] == "processing"


def test_expired_and_single_url(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver
) -> None:
    configure(http, sim, per_notification_urls=False)
    scan_ref = create(http, sim)["scanRef"]
    script(http, sim, scan_ref, outcome="expired")
    assert sim.wait_idle(5)
    [received] = receiver.requests
    assert received.path == "/webhooks/idenfy"
    payload = verified_payload(received)
    assert payload["status"]["overall"] == "EXPIRED" and payload["data"]["docFirstName"] is None
    assert truth(http, sim, scan_ref)["canonical"] == "expired"


def test_token_callback_url_overrides(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver
) -> None:
    scan_ref = create(http, sim, callbackUrl=f"{receiver.url}/custom/hook")["scanRef"]
    script(http, sim, scan_ref, outcome="verified")
    assert sim.wait_idle(5)
    assert [received.path for received in receiver.requests] == ["/custom/hook"]
