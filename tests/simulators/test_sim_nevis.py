"""Nevis simulator: Bearer key, nine-digit sessions, status polling, sessionId redirect."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from reconciler import simulators

from .conftest import Receiver
from .helpers import script, truth

AUTH = {"Authorization": "Bearer test_nevis_access_key"}


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[simulators.Simulator]:
    with simulators.start(
        "nevis", callback_url=f"{receiver.url}/callbacks/nevis", step_interval=0.01
    ) as running:
        yield running


def create(http: httpx.Client, sim: simulators.Simulator) -> dict:
    response = http.post(f"{sim.url}/idverification/sessions", json={}, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_auth_is_enforced(http: httpx.Client, sim: simulators.Simulator) -> None:
    assert sim.url.endswith("/api/v1")
    assert http.post(f"{sim.url}/idverification/sessions", json={}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (
        http.post(f"{sim.url}/idverification/sessions", json={}, headers=wrong).status_code == 401
    )
    assert (
        http.get(f"{sim.url}/idverification/sessions/123456789", headers=wrong).status_code == 401
    )


def test_create_and_poll(http: httpx.Client, sim: simulators.Simulator) -> None:
    created = create(http, sim)
    session_id = created["sessionId"]
    assert len(session_id) == 9 and session_id.isdigit()
    assert (
        created["startUrl"] == f"{sim.url.removesuffix('/api/v1')}/idv/welcome.html?tc={session_id}"
    )
    assert http.get(created["startUrl"]).status_code == 200
    status = http.get(f"{sim.url}/idverification/sessions/{session_id}", headers=AUTH).json()
    assert (
        status["sessionId"] == session_id
        and status["status"] == "pending"
        and "result" not in status
    )
    assert status["updatedAt"].endswith("Z")
    assert http.get(f"{sim.url}/idverification/sessions/000000000", headers=AUTH).status_code == 404


@pytest.mark.parametrize(("outcome", "status"), [("verified", "verified"), ("rejected", "failed")])
def test_finish_redirects(
    http: httpx.Client, sim: simulators.Simulator, receiver: Receiver, outcome: str, status: str
) -> None:
    session_id = create(http, sim)["sessionId"]
    assert script(http, sim, session_id, outcome=outcome)["steps"] == ["in_progress", status]
    assert sim.wait_idle(5)
    [redirect] = receiver.requests
    assert redirect.method == "GET" and redirect.path == "/callbacks/nevis"
    assert redirect.args == {"sessionId": session_id}
    answer = http.get(f"{sim.url}/idverification/sessions/{session_id}", headers=AUTH).json()
    assert answer["status"] == status and "result" in answer
    if status == "failed":
        assert answer["result"]["errorCode"]
    else:
        assert answer["result"]["person"]["lastName"] in sim.pii()
    state = truth(http, sim, session_id)
    assert (state["provider_status"], state["canonical"], state["decided_by"]) == (
        status,
        outcome,
        "auto",
    )
    assert [entry["status"] for entry in state["history"]] == ["pending", "in_progress", status]
