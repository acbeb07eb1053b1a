"""Reconciliation against the provider simulators over real HTTP: redirects, dropped webhooks,
poll-only providers, overdue sessions, outages."""

from __future__ import annotations

import functools
import time

import httpx
import pytest
from sqlmodel import Session

from receiver.providers import contiguity, docverify, http, idenfy, nevis
from reconciler.session_queries import find_session
from tests.support.world import World, start_world, stop_world

FAST = {
    "poll_interval_seconds": 0.2,
    "webhook_deadline_seconds": 0.6,
    "max_poll_interval_seconds": 2.0,
}


@pytest.fixture
def world(make_services):  # type: ignore[no-untyped-def]
    built = start_world(make_services, policy=FAST)
    yield built
    stop_world(built)


@pytest.fixture
def waits(world, monkeypatch):  # type: ignore[no-untyped-def]
    """The provider client's waits between retries (receiver/providers/http.py), recorded and
    added to the world's clock instead of slept: the scheduler sees that time pass all the
    same, and the test does not spend it."""
    seen: list[float] = []

    def sleep(seconds: float) -> None:
        seen.append(seconds)
        world.advance(seconds)

    waiting = functools.partial(http.request_json, sleep=sleep)
    for module in (contiguity, docverify, idenfy, nevis):
        monkeypatch.setattr(module, "request_json", waiting)
    return seen


def status(world: World, provider: str, session_id: str) -> tuple[str, str, bool]:
    row = find_session(world.services, provider, session_id)
    return row.status, row.decided_by, row.overdue


def test_nevis_redirect_triggers_one_poll_that_settles_the_session(world):  # type: ignore[no-untyped-def]
    created = world.create("nevis", "u-nevis")
    assert created["start_url"].endswith(f"tc={created['session_id']}")
    world.sims["nevis"].script(created["session_id"], "verified")
    world.settle(rounds=10)
    assert status(world, "nevis", created["session_id"]) == ("verified", "auto", False)
    assert world.sims["nevis"].truth(created["session_id"])["canonical"] == "verified"


def test_docverify_callback_with_right_state_polls_now(world):  # type: ignore[no-untyped-def]
    created = world.create("docverify", "u-doc")
    world.sims["docverify"].script(created["session_id"], "rejected")
    world.settle(rounds=10)
    assert status(world, "docverify", created["session_id"])[0] == "rejected"
    assert world.sims["docverify"].stats()["token_calls"] >= 1


def test_docverify_callback_with_wrong_or_missing_state_is_refused(world):  # type: ignore[no-untyped-def]
    created = world.create("docverify", "u-doc2")
    url = f"{world.server.url}/callbacks/docverify"
    for params in (
        {"sessionId": created["session_id"], "state": "forged"},
        {"sessionId": created["session_id"]},
    ):
        answer = httpx.get(url, params=params, follow_redirects=False)
        # the person goes on (a page: this world sets no return URL); the callback is not used
        assert answer.status_code == 400 and answer.headers["content-type"].startswith("text/html")
    row = find_session(world.services, "docverify", created["session_id"])
    assert row.next_check_at is not None and row.poll_attempts == 0


def test_contiguity_dropped_webhooks_are_healed_by_one_poll(world):  # type: ignore[no-untyped-def]
    world.sims["contiguity"].configure(chaos={"drop": 1.0})
    created = world.create("contiguity", "u-ctg")
    world.sims["contiguity"].script(created["session_id"], "verified")
    world.advance(0.8)  # past the (shortened) webhook deadline
    world.settle(rounds=10)
    assert status(world, "contiguity", created["session_id"])[0] == "verified"
    assert world.status_calls("contiguity") == 1


def test_idenfy_is_not_polled_when_its_final_webhook_arrived(world):  # type: ignore[no-untyped-def]
    created = world.create("idenfy", "u-idf")
    world.sims["idenfy"].script(created["session_id"], "verified", manual=True)
    world.settle(rounds=5)
    world.advance(0.8)  # past the webhook deadline: a poll now would be a bug
    world.settle(rounds=10)
    assert status(world, "idenfy", created["session_id"]) == ("verified", "manual", False)
    assert world.status_calls("idenfy") == 0


def test_idvapi_session_without_its_webhook_becomes_overdue(world):  # type: ignore[no-untyped-def]
    world.sims["idvapi"].configure(chaos={"drop": 1.0})
    created = world.create("idvapi", "u-idv")
    world.sims["idvapi"].script("u-idv", "verified")
    world.advance(0.8)  # past the webhook deadline
    world.settle(rounds=5)
    assert status(world, "idvapi", created["session_id"]) == ("pending", "auto", True)


def test_poll_only_session_past_its_ttl_expires(make_services):  # type: ignore[no-untyped-def]
    world = start_world(make_services, policy={**FAST, "session_ttl_seconds": 0.5})
    try:
        created = world.create("nevis", "u-ttl")
        world.advance(0.7)  # past the session's TTL
        world.settle(rounds=5)
        assert status(world, "nevis", created["session_id"])[0] == "expired"
    finally:
        stop_world(world)


def test_provider_outage_backs_off_then_recovers(world, waits):  # type: ignore[no-untyped-def]
    sim = world.sims["nevis"]
    sim.configure(chaos={"status_5xx": 1.0})
    created = world.create("nevis", "u-outage")
    sim.script(created["session_id"], "verified")
    started = time.monotonic()
    world.settle(rounds=20)  # ~1-2 s of ticking against a provider answering 503
    calls_during_outage = world.status_calls("nevis")
    ticks = 20
    # every tick may poll at most once per due time, and the backoff spaces polls out
    assert calls_during_outage < ticks * 3, calls_during_outage
    assert waits and set(waits) <= {http.BACKOFF_SECONDS, 2 * http.BACKOFF_SECONDS}, waits
    row = find_session(world.services, "nevis", created["session_id"])
    assert row.status != "verified" and row.next_check_at is not None
    sim.configure(chaos={"status_5xx": 0.0})
    world.advance(FAST["max_poll_interval_seconds"])  # the longest the backoff may wait
    deadline = time.monotonic() + 15
    while (
        time.monotonic() < deadline
        and status(world, "nevis", created["session_id"])[0] != "verified"
    ):
        world.settle(rounds=2, pause=0.2)
    assert status(world, "nevis", created["session_id"])[0] == "verified"
    assert time.monotonic() - started < 30


def test_429_retry_after_is_honoured(world, waits):  # type: ignore[no-untyped-def]
    sim = world.sims["nevis"]
    sim.configure(chaos={"status_429": 1.0})
    created = world.create("nevis", "u-429")
    sim.script(created["session_id"], "verified")
    world.settle(rounds=3)
    row = find_session(world.services, "nevis", created["session_id"])
    with Session(world.services.engine):
        assert row.next_check_at is not None
    # the provider said Retry-After: 1, so the next check is at least ~1 s after the last poll
    assert (row.next_check_at - row.last_polled_at).total_seconds() >= 0.99
    assert waits and set(waits) == {1.0}, waits  # and each retry within a poll waited 1 s


def test_a_late_webhook_clears_the_overdue_flag(world):  # type: ignore[no-untyped-def]
    from tests.support import signing
    from tests.support.world import SIM_CREDENTIALS

    world.sims["idvapi"].configure(chaos={"drop": 1.0})
    created = world.create("idvapi", "u-late")
    world.advance(0.8)  # past the webhook deadline
    world.settle(rounds=3)
    assert status(world, "idvapi", created["session_id"]) == ("pending", "auto", True)
    token = SIM_CREDENTIALS["idvapi"]["webhook_token"]
    answer = httpx.post(
        f"{world.server.url}/webhooks/idvapi/{token}",
        content=signing.idvapi_result("verified", "u-late"),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    world.settle(rounds=2)
    assert status(world, "idvapi", created["session_id"]) == ("verified", "auto", False)


def test_a_status_answer_of_the_wrong_shape_is_quarantined_and_the_tick_goes_on(world):  # type: ignore[no-untyped-def]
    """A provider (or a proxy before it) answering 200 with a JSON array: the answer is stored
    quarantined with the crash site, the session backs off, other sessions are reconciled."""
    from sqlalchemy import select

    from receiver.store.models import InboundEvent

    broken, healthy = world.sims["nevis"], world.sims["contiguity"]
    broken.configure(chaos={"status_garbage": 1.0})
    healthy.configure(chaos={"drop": 1.0})
    odd = world.create("nevis", "u-garbage")
    fine = world.create("contiguity", "u-fine")
    broken.script(odd["session_id"], "verified")
    healthy.script(fine["session_id"], "verified")
    world.advance(0.8)  # past the (shortened) webhook deadline
    world.settle(rounds=10)
    assert broken.stats()["errors_injected"]["status_garbage"] >= 1
    assert status(world, "contiguity", fine["session_id"])[0] == "verified"
    row = find_session(world.services, "nevis", odd["session_id"])
    assert row.status != "verified" and row.poll_attempts >= 1 and row.next_check_at is not None
    with Session(world.services.engine) as db:
        errors = (
            db.execute(
                select(InboundEvent.parse_error).where(
                    InboundEvent.provider == "nevis",
                    InboundEvent.session_id == odd["session_id"],
                    InboundEvent.state == "quarantined",
                )
            )
            .scalars()
            .all()
        )
    assert errors and all("not a JSON object" in e for e in errors), errors
    broken.configure(chaos={"status_garbage": 0.0})
    deadline = time.monotonic() + 15
    while status(world, "nevis", odd["session_id"])[0] != "verified":
        assert time.monotonic() < deadline, "the session did not recover"
        world.settle(rounds=2)
