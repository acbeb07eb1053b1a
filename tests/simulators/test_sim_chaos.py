"""Chaos knobs, retries, seeding, the control API and the Python handle, across providers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from reconciler import simulators
from reconciler.simulators.config import ConfigError

from .conftest import Receiver
from .helpers import configure, script, truth

STATUS_PROVIDERS = ("contiguity", "docverify", "idenfy", "nevis")


def status_caller(
    provider: str, sim: simulators.Simulator, http: httpx.Client
) -> Callable[[], httpx.Response]:
    """Create a session through the provider API; return a function calling its status."""
    if provider == "contiguity":
        auth = {"Authorization": "Token test_contiguity_api_token"}
        vs_id = http.post(f"{sim.url}/vs/create", json={"type": "document"}, headers=auth).json()[
            "id"
        ]
        return lambda: http.get(f"{sim.url}/vs", params={"id": vs_id}, headers=auth)
    if provider == "docverify":
        assert sim.token_url is not None
        token = http.post(
            sim.token_url,
            data={
                "client_id": "test_docverify_client_id",
                "client_secret": "test_docverify_client_secret",
                "grant_type": "client_credentials",
                "resource": "https://verify.identity.security",
            },
        ).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        sid = http.post(f"{sim.url}/api/v1/verification", json={}, headers=auth).json()[
            "session_id"
        ]
        return lambda: http.get(f"{sim.url}/api/v1/verification/{sid}/result", headers=auth)
    if provider == "idenfy":
        basic = ("test_idenfy_api_key", "test_idenfy_api_secret")
        scan_ref = http.post(f"{sim.url}/api/v2/token", json={"clientId": "c"}, auth=basic).json()[
            "scanRef"
        ]
        return lambda: http.post(f"{sim.url}/api/v2/status", json={"scanRef": scan_ref}, auth=basic)
    bearer = {"Authorization": "Bearer test_nevis_access_key"}
    session_id = http.post(f"{sim.url}/idverification/sessions", json={}, headers=bearer).json()[
        "sessionId"
    ]
    return lambda: http.get(f"{sim.url}/idverification/sessions/{session_id}", headers=bearer)


@pytest.mark.parametrize("provider", STATUS_PROVIDERS)
def test_status_chaos(http: httpx.Client, provider: str) -> None:
    with simulators.start(provider) as sim:
        call = status_caller(provider, sim, http)
        assert call().status_code == 200
        configure(http, sim, chaos={"status_5xx": 1.0})
        assert call().status_code == 503
        configure(http, sim, chaos={"status_5xx": 0.0, "status_429": 1.0})
        limited = call()
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        configure(http, sim, chaos={"status_429": 0.0, "status_garbage": 1.0})
        garbage = call()
        assert garbage.status_code == 200 and isinstance(garbage.json(), list)
        configure(http, sim, chaos={"status_garbage": 0.0, "slow_ms": 150})
        started = time.monotonic()
        assert call().status_code == 200 and time.monotonic() - started >= 0.15
        stats = http.get(f"{sim.control_url}/stats").json()
        assert sum(stats["status_calls"].values()) == 5
        assert (
            stats["errors_injected"] == {"status_5xx": 1, "status_429": 1, "status_garbage": 1}
            and stats["slow_calls"] == 1
        )


def contiguity_session(http: httpx.Client, sim: simulators.Simulator) -> str:
    auth = {"Authorization": "Token test_contiguity_api_token"}
    return http.post(f"{sim.url}/vs/create", json={"type": "document"}, headers=auth).json()["id"]


def event_types(receiver: Receiver) -> list[str]:
    return [json.loads(received.body)["type"].rsplit(".", 1)[1] for received in receiver.requests]


def test_drop_everything(http: httpx.Client, receiver: Receiver) -> None:
    with simulators.start(
        "contiguity", webhook_url=receiver.url, step_interval=0.0, chaos={"drop": 1.0}
    ) as sim:
        session_id = contiguity_session(http, sim)
        script(http, sim, session_id, outcome="verified")
        assert sim.wait_idle(5)
        assert receiver.requests == []
        state = truth(http, sim, session_id)
        assert state["canonical"] == "verified"
        assert (state["webhooks_emitted"], state["webhooks_dropped"], state["webhooks_sent"]) == (
            3,
            3,
            0,
        )
        assert sim.stats()["webhooks_dropped"] == 3


def test_duplicate_everything(http: httpx.Client, receiver: Receiver) -> None:
    with simulators.start("contiguity", webhook_url=receiver.url, chaos={"duplicate": 1.0}) as sim:
        session_id = contiguity_session(http, sim)
        script(http, sim, session_id, outcome="rejected")
        assert sim.wait_idle(5)
        assert event_types(receiver) == [
            "started",
            "started",
            "processing",
            "processing",
            "failed",
            "failed",
        ]
        bodies = [received.body for received in receiver.requests]
        assert bodies[0] == bodies[1] and bodies[2] == bodies[3] and bodies[4] == bodies[5]
        state = truth(http, sim, session_id)
        assert (
            state["webhooks_duplicated"],
            state["webhooks_sent"],
            state["webhooks_delivered"],
        ) == (3, 6, 6)


def test_shuffle_changes_order_but_delivers_all(http: httpx.Client, receiver: Receiver) -> None:
    with simulators.start(
        "contiguity", webhook_url=receiver.url, step_interval=0.0, chaos={"shuffle": 1.0, "seed": 3}
    ) as sim:
        session_id = contiguity_session(http, sim)
        assert script(http, sim, session_id, outcome="verified")["shuffled"] is True
        assert sim.wait_idle(5)
        order = event_types(receiver)
        assert sorted(order) == ["processing", "started", "verified"]
        assert order != ["started", "processing", "verified"]


def test_delay_still_delivers(http: httpx.Client, receiver: Receiver) -> None:
    with simulators.start("idenfy", webhook_url=receiver.url, chaos={"delay_max": 0.3}) as sim:
        basic = ("test_idenfy_api_key", "test_idenfy_api_secret")
        scan_ref = http.post(f"{sim.url}/api/v2/token", json={"clientId": "c"}, auth=basic).json()[
            "scanRef"
        ]
        script(http, sim, scan_ref, outcome="verified", manual=True)
        assert sim.wait_idle(5)
        assert len(receiver.requests) == 2
        assert all(
            0 <= entry["delay_s"] <= 0.3 for entry in truth(http, sim, scan_ref)["deliveries"]
        )


def test_seed_makes_chaos_reproducible(http: httpx.Client, receiver: Receiver) -> None:
    outcomes = []
    for _ in range(2):
        with simulators.start(
            "idvapi",
            webhook_url=receiver.url,
            step_interval=0.0,
            chaos={"drop": 0.5, "duplicate": 0.5, "seed": "fixed"},
        ) as sim:
            for index in range(12):
                script(http, sim, f"user-{index}", outcome="verified")
            assert sim.wait_idle(5)
            outcomes.append(
                [
                    (
                        truth(http, sim, f"user-{index}")["webhooks_dropped"],
                        truth(http, sim, f"user-{index}")["webhooks_duplicated"],
                    )
                    for index in range(12)
                ]
            )
    assert outcomes[0] == outcomes[1]
    assert {dropped for dropped, _ in outcomes[0]} == {0, 1}


def test_failed_delivery_without_and_with_retries(http: httpx.Client, receiver: Receiver) -> None:
    receiver.status_for = lambda received: 500
    with simulators.start("idvapi", webhook_url=receiver.url) as sim:
        script(http, sim, "u-fail", outcome="verified")
        assert sim.wait_idle(5)
        state = truth(http, sim, "u-fail")
        assert (state["webhooks_sent"], state["webhooks_failed"], state["webhooks_retried"]) == (
            1,
            1,
            0,
        )
        assert (
            state["deliveries"][0]["status"] == 500 and state["deliveries"][0]["result"] == "failed"
        )
        configure(http, sim, retry_on_failure=True)
        script(http, sim, "u-fail", outcome="rejected")
        assert sim.wait_idle(5)
        assert len(receiver.requests) == 1 + 4
        calls = len(receiver.requests)
        receiver.status_for = lambda received: 200 if len(receiver.requests) >= calls + 2 else 503
        script(http, sim, "u-fail", outcome="verified")
        assert sim.wait_idle(5)
        last = truth(http, sim, "u-fail")["deliveries"][-1]
        assert (last["attempts"], last["result"], last["status"]) == (3, "delivered", 200)


def test_unreachable_and_unconfigured_targets(http: httpx.Client) -> None:
    with simulators.start(
        "nevis", callback_url="http://127.0.0.1:9/nothing-listens", delivery_timeout=2
    ) as sim:
        bearer = {"Authorization": "Bearer test_nevis_access_key"}
        first = http.post(f"{sim.url}/idverification/sessions", headers=bearer).json()["sessionId"]
        script(http, sim, first, outcome="verified")
        assert sim.wait_idle(5)
        delivery = truth(http, sim, first)["deliveries"][0]
        assert delivery["result"] == "failed" and delivery["status"] is None and delivery["error"]
        configure(http, sim, callback_url=None)
        second = http.post(f"{sim.url}/idverification/sessions", headers=bearer).json()["sessionId"]
        script(http, sim, second, outcome="rejected")
        assert sim.wait_idle(5)
        assert truth(http, sim, second)["webhooks_undeliverable"] == 1


def test_config_validation(http: httpx.Client) -> None:
    with simulators.start("contiguity") as sim:
        assert http.post(f"{sim.control_url}/config", json={"nope": 1}).status_code == 400
        assert (
            http.post(f"{sim.control_url}/config", json={"chaos": {"drop": 1.5}}).status_code == 400
        )
        assert (
            http.post(f"{sim.control_url}/config", json={"chaos": {"typo": 1}}).status_code == 400
        )
        assert (
            http.post(f"{sim.control_url}/config", json={"webhook_url": "ftp://x"}).status_code
            == 400
        )
        assert http.post(f"{sim.control_url}/config", content=b"[1]").status_code == 400
        current = http.get(f"{sim.control_url}/config").json()
        assert (
            current["chaos"]["drop"] == 0.0 and current["api_token"] == "test_contiguity_api_token"
        )
        assert configure(http, sim, api_token="rotated")["api_token"] == "rotated"
    with pytest.raises(ConfigError):
        simulators.start("nevis", no_such_option=True)
    with pytest.raises(ValueError):
        simulators.start("acme")


def test_reset_and_wait_idle(http: httpx.Client, receiver: Receiver) -> None:
    with simulators.start("contiguity", webhook_url=receiver.url) as sim:
        session_id = contiguity_session(http, sim)
        configure(http, sim, chaos={"drop": 1.0})
        script(http, sim, session_id, outcome="verified", after=30)
        assert not sim.wait_idle(0.1)
        assert http.post(f"{sim.control_url}/reset").json() == {"reset": True}
        assert sim.wait_idle(1)
        assert http.get(f"{sim.control_url}/sessions").json() == {"sessions": []}
        assert http.get(f"{sim.control_url}/pii").json() == []
        assert sim.stats()["create_calls"] == 0
        assert http.get(f"{sim.control_url}/config").json()["chaos"]["drop"] == 0.0


def test_python_handle(receiver: Receiver) -> None:
    with simulators.start("nevis", callback_url=f"{receiver.url}/cb", step_interval=0.0) as sim:
        with httpx.Client(trust_env=False) as client:
            created = client.post(
                f"{sim.url}/idverification/sessions",
                headers={"Authorization": "Bearer test_nevis_access_key"},
            ).json()
        sim.script(created["sessionId"], "verified")
        assert sim.wait_idle(5)
        found = sim.truth(created["sessionId"])
        assert found is not None and found["canonical"] == "verified"
        assert sim.pii() and sim.stats()["webhooks_delivered"] == 1
        sim.reset()
        assert sim.truth(created["sessionId"]) is None
    sim.stop()  # idempotent


@pytest.mark.parametrize(
    ("provider", "suffix"),
    [
        ("contiguity", ""),
        ("docverify", "/verify"),
        ("idvapi", ""),
        ("idenfy", ""),
        ("nevis", "/api/v1"),
    ],
)
def test_urls(provider: str, suffix: str) -> None:
    with simulators.start(provider) as sim:
        assert sim.url == f"http://127.0.0.1:{sim.port}{suffix}"
        assert sim.control_url == f"http://127.0.0.1:{sim.port}/_sim"
        assert (sim.token_url is not None) == (provider == "docverify")
    assert simulators.PROVIDERS == ("contiguity", "docverify", "idvapi", "idenfy", "nevis")


def test_max_sessions_forgets_the_oldest(http: httpx.Client) -> None:
    with simulators.start("idvapi", max_sessions=2) as sim:
        for user in ("first", "second", "third"):
            script(http, sim, user, outcome="verified")
        assert sim.wait_idle(5)
        assert http.get(f"{sim.control_url}/sessions").json() == {"sessions": ["second", "third"]}
