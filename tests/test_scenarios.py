"""Scenarios per provider through HTTP → worker → API: any order, any number of duplicates."""

from __future__ import annotations

import pytest

from receiver.store.models import EventState, InboundEvent, ObservationRecord
from tests.support import signing
from tests.support.flow import (
    AUDITOR,
    BACKEND,
    apply_all,
    audit_rows,
    count,
    send_contiguity,
    send_idenfy,
    send_idvapi,
)


@pytest.fixture
def api(make_services, redis_server):  # type: ignore[no-untyped-def]
    from app import create_app
    from reconciler import jobs
    from tests.support.flow import API_TOKENS

    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    return services, create_app(services=services).test_client()


def contiguity_story() -> list[bytes]:
    return [
        signing.contiguity_event("started", timestamp=100),
        signing.contiguity_event("processing", timestamp=200),
        signing.contiguity_event(
            "requires_input",
            timestamp=300,
            error={"code": "document_expired", "message": "expired"},
        ),
        signing.contiguity_event("verified", timestamp=400),
    ]


@pytest.mark.parametrize("order", ["in_order", "reversed", "duplicated"])
def test_contiguity_any_order_ends_verified(api, order):  # type: ignore[no-untyped-def]
    services, client = api
    bodies = contiguity_story()
    if order == "reversed":
        bodies = bodies[::-1]
    if order == "duplicated":
        bodies = bodies + bodies[::-1] + bodies
    for body in bodies:
        assert send_contiguity(client, body).status_code == 200
        apply_all(services)
    user = client.get("/api/v1/users/user-1", headers=BACKEND).get_json()
    assert (user["status"], user["decided_by"], user["provider"]) == (
        "verified",
        "auto",
        "contiguity",
    )
    session = client.get("/api/v1/sessions/contiguity/vs_test1", headers=AUDITOR).get_json()
    assert session["status"] == "verified"
    dispositions = sorted(h["disposition"] for h in session["history"])
    assert dispositions == ["applied", "superseded", "superseded", "superseded"]
    assert count(services.engine, ObservationRecord) == 4


def test_contiguity_requires_input_then_verified(api):  # type: ignore[no-untyped-def]
    services, client = api
    for body in contiguity_story()[2:]:
        send_contiguity(client, body)
    apply_all(services)
    session = client.get("/api/v1/sessions/contiguity/vs_test1", headers=BACKEND).get_json()
    assert session["status"] == "verified"
    reasons = [h["reasons"] for h in session["history"] if h["status"] == "requires_input"]
    assert reasons == [["document_expired"]]


def test_late_processing_after_verified_is_superseded(api):  # type: ignore[no-untyped-def]
    services, client = api
    send_contiguity(client, signing.contiguity_event("verified", timestamp=400))
    apply_all(services)
    late = send_contiguity(client, signing.contiguity_event("processing", timestamp=500))
    apply_all(services)
    session = client.get("/api/v1/sessions/contiguity/vs_test1", headers=BACKEND).get_json()
    assert session["status"] == "verified"
    with_state = count(
        services.engine,
        InboundEvent,
        InboundEvent.id == late.get_json()["event_id"],
        InboundEvent.state == EventState.SUPERSEDED,
    )
    assert with_state == 1


def test_idenfy_manual_approval_beats_auto_denial_and_a_late_auto(api):  # type: ignore[no-untyped-def]
    services, client = api
    send_idenfy(
        client, signing.idenfy_result("DENIED", final=False, finish_time=1000), "auto-finished"
    )
    apply_all(services)
    # final=false: iDenfy says a manual review follows, so the verdict is only preliminary
    assert client.get("/api/v1/users/user-1", headers=BACKEND).get_json()["status"] == "review"
    send_idenfy(
        client, signing.idenfy_result("APPROVED", finish_time=2000, manual=True), "manual-finished"
    )
    apply_all(services)
    send_idenfy(client, signing.idenfy_result("DENIED", finish_time=3000), "auto-finished")
    apply_all(services)
    user = client.get("/api/v1/users/user-1", headers=BACKEND).get_json()
    assert (user["status"], user["decided_by"]) == ("verified", "manual")


def test_idenfy_final_auto_denial_then_manual_approval(api):  # type: ignore[no-untyped-def]
    services, client = api
    send_idenfy(client, signing.idenfy_result("DENIED", finish_time=1000), "auto-finished")
    apply_all(services)
    assert client.get("/api/v1/users/user-1", headers=BACKEND).get_json()["status"] == "rejected"
    send_idenfy(
        client, signing.idenfy_result("APPROVED", finish_time=900, manual=True), "manual-finished"
    )
    apply_all(services)
    user = client.get("/api/v1/users/user-1", headers=BACKEND).get_json()
    assert (user["status"], user["decided_by"]) == ("verified", "manual")


def test_idvapi_result_sets_user_status(api):  # type: ignore[no-untyped-def]
    services, client = api
    assert send_idvapi(client, signing.idvapi_result("rejected", "user-9")).status_code == 200
    apply_all(services)
    user = client.get("/api/v1/users/user-9", headers=BACKEND).get_json()
    assert user["status"] == "rejected" and user["session_id"] == "user-9"


def test_applying_an_event_twice_changes_nothing(api):  # type: ignore[no-untyped-def]
    from receiver.store.db import transaction
    from receiver.store.models import OutboxEntry

    services, client = api
    answer = send_contiguity(client, signing.contiguity_event("verified", timestamp=400))
    apply_all(services)
    before = len(audit_rows(services.engine))
    assert before == 2  # the session's change and the user's
    with transaction(services.engine) as db:
        db.add(OutboxEntry(event_id=answer.get_json()["event_id"]))
    apply_all(services)
    assert len(audit_rows(services.engine)) == before
    assert count(services.engine, ObservationRecord) == 1


def test_audit_entries_chain_and_name_each_change(api):  # type: ignore[no-untyped-def]
    from receiver.store.db import transaction
    from reconciler.audit.chain import verify_chain

    services, client = api
    for body in contiguity_story():
        send_contiguity(client, body)
        apply_all(services)
    rows = [r for r in audit_rows(services.engine) if r.subject == "session"]
    assert [(r.previous_status, r.new_status) for r in rows] == [
        ("pending", "processing"),
        ("processing", "requires_input"),
        ("requires_input", "verified"),
    ]
    assert all(r.source == "webhook" and r.event_id for r in rows)
    with transaction(services.engine) as db:
        assert verify_chain(db).ok


def test_unknown_user_is_404_with_status_unknown(api):  # type: ignore[no-untyped-def]
    _, client = api
    answer = client.get("/api/v1/users/nobody", headers=BACKEND)
    assert answer.status_code == 404 and answer.get_json()["status"] == "unknown"


def test_api_needs_a_token_and_the_right_role(api):  # type: ignore[no-untyped-def]
    _, client = api
    assert client.get("/api/v1/users/user-1").status_code == 401
    assert (
        client.get("/api/v1/users/user-1", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    body = {"provider": "nevis", "session_id": "123456789", "user_ref": "user-2"}
    assert client.post("/api/v1/sessions", json=body, headers=AUDITOR).status_code == 403
    created = client.post("/api/v1/sessions", json=body, headers=BACKEND)
    assert created.status_code == 201 and created.get_json()["user_ref"] == "user-2"
    assert client.post("/api/v1/sessions", json=body, headers=BACKEND).status_code == 200
    clash = dict(body, user_ref="someone-else")
    assert client.post("/api/v1/sessions", json=clash, headers=BACKEND).status_code == 409
    bad = client.post("/api/v1/sessions", json={"provider": "nope"}, headers=BACKEND)
    assert bad.status_code == 400
