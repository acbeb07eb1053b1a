"""Redirect callbacks: docverify (`state` checked against the stored digest) and nevis."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from sqlmodel import Session

from receiver.providers.docverify import state_digest
from receiver.store.models import InboundEvent, OutboxEntry, VerificationSession
from tests.conftest import provider_settings

DOCVERIFY_RETURN = provider_settings()["docverify"]["return_url"]
NEVIS_RETURN = provider_settings()["nevis"]["return_url"]
STATE = "the-state"


def events(engine) -> list[InboundEvent]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.execute(select(InboundEvent).order_by(InboundEvent.id)).scalars())


def outbox_ids(engine) -> list[int]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.execute(select(OutboxEntry.event_id)).scalars())


def add_session(
    engine,
    session_id: str,
    *,
    provider: str = "docverify",  # type: ignore[no-untyped-def]
    state: str = STATE,
) -> None:
    with Session(engine) as session:
        session.add(
            VerificationSession(
                provider=provider,
                session_id=session_id,
                user_ref="user-dv",
                state_digest=state_digest(state),
            )
        )
        session.commit()


def docverify(client, **query: str):  # type: ignore[no-untyped-def]
    return client.get("/callbacks/docverify?" + urlencode(query))


# --- docverify ------------------------------------------------------------------------------


def test_docverify_right_state_redirects_and_stores_a_callback(client, engine):  # type: ignore[no-untyped-def]
    add_session(engine, "dv-sess-1")
    answer = docverify(client, sessionId="dv-sess-1", state=STATE)
    assert answer.status_code == 302
    assert answer.headers["Location"] == DOCVERIFY_RETURN
    [event] = events(engine)
    assert (event.provider, event.kind, event.session_id, event.state) == (
        "docverify",
        "callback",
        "dv-sess-1",
        "received",
    )
    assert outbox_ids(engine) == [event.id]
    # the state is a secret: neither it nor its digest is a plain column of the event
    assert STATE not in event.dedupe_key and state_digest(STATE) not in event.dedupe_key


def test_docverify_reloaded_redirect_is_one_event(client, engine):  # type: ignore[no-untyped-def]
    add_session(engine, "dv-sess-dup")
    first = docverify(client, sessionId="dv-sess-dup", state=STATE)
    second = docverify(client, sessionId="dv-sess-dup", state=STATE)
    assert first.status_code == second.status_code == 302
    assert len(events(engine)) == 1


@pytest.mark.parametrize(
    "query",
    [
        {"sessionId": "dv-sess-2", "state": "not-the-state"},
        {"sessionId": "dv-sess-2", "state": STATE.upper()},
        {"sessionId": "dv-sess-2", "state": state_digest(STATE)},  # the stored digest itself
        {"sessionId": "dv-sess-2", "state": ""},
        {"sessionId": "dv-sess-2"},
        {"state": STATE},
        {"sessionId": "", "state": STATE},
        {"sessionId": "dv-unknown", "state": STATE},
    ],
)
def test_docverify_wrong_or_missing_state_or_unknown_session_is_401(client, engine, query):  # type: ignore[no-untyped-def]
    add_session(engine, "dv-sess-2")
    answer = docverify(client, **query)
    assert answer.status_code == 401
    assert "Location" not in answer.headers
    assert events(engine) == []


def test_docverify_status_in_the_url_is_not_trusted(client, engine, services):  # type: ignore[no-untyped-def]
    from reconciler.drain import drain_ready_events

    add_session(engine, "dv-sess-url")
    answer = docverify(
        client, sessionId="dv-sess-url", state=STATE, status="complete", recommendation="ALLOW"
    )
    assert answer.status_code == 302
    [event] = events(engine)
    assert event.kind == "callback"
    drain_ready_events(services)
    with Session(engine) as session:
        row = session.execute(
            select(VerificationSession).where(
                VerificationSession.provider == "docverify",
                VerificationSession.session_id == "dv-sess-url",
            )
        ).scalar_one()
    assert row.status == "pending"
    assert row.next_check_at is not None  # due for a poll now


def test_docverify_repeated_state_parameter_is_401(client, engine):  # type: ignore[no-untyped-def]
    add_session(engine, "dv-sess-3")
    answer = client.get(f"/callbacks/docverify?sessionId=dv-sess-3&state={STATE}&state={STATE}")
    assert answer.status_code == 401
    assert events(engine) == []


def test_docverify_state_of_another_providers_session_is_401(client, engine):  # type: ignore[no-untyped-def]
    add_session(engine, "shared-id", provider="contiguity")
    answer = docverify(client, sessionId="shared-id", state=STATE)
    assert answer.status_code == 401
    assert events(engine) == []


def test_docverify_post_to_webhooks_is_404(client, engine):  # type: ignore[no-untyped-def]
    add_session(engine, "dv-sess-4")
    answer = client.post(
        "/webhooks/docverify", data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 404
    assert events(engine) == []


def test_docverify_disabled_is_404(make_services, engine):  # type: ignore[no-untyped-def]
    from app import create_app

    providers = provider_settings()
    providers["docverify"] = {"return_url": DOCVERIFY_RETURN}
    client = create_app(services=make_services(providers=providers)).test_client()
    add_session(engine, "dv-sess-5")
    assert docverify(client, sessionId="dv-sess-5", state=STATE).status_code == 404
    assert events(engine) == []


# --- nevis ----------------------------------------------------------------------------------


def test_nevis_redirect_is_stored_and_sent_to_the_return_url(client, engine):  # type: ignore[no-untyped-def]
    answer = client.get("/callbacks/nevis?sessionId=123456789")
    assert answer.status_code == 302
    assert answer.headers["Location"] == NEVIS_RETURN
    [event] = events(engine)
    assert (event.provider, event.kind, event.session_id, event.state) == (
        "nevis",
        "callback",
        "123456789",
        "received",
    )
    assert outbox_ids(engine) == [event.id]
    again = client.get("/callbacks/nevis?sessionId=123456789")
    assert again.status_code == 302
    assert len(events(engine)) == 1


@pytest.mark.parametrize(
    "query",
    [
        "sessionId=12345678",
        "sessionId=1234567890",
        "sessionId=12345678a",
        "sessionId=",
        "sessionId=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96%EF%BC%97%EF%BC%98%EF%BC%99",
        "sessionId=123456789%0A",
        "sessionId=+123456789",
        "",
        "session_id=123456789",
        "sessionId=123456789&sessionId=987654321",
    ],
)
def test_nevis_non_nine_digit_session_id_is_401(client, engine, query):  # type: ignore[no-untyped-def]
    answer = client.get("/callbacks/nevis?" + query)
    control = "%0A" in query or "%00" in query  # refused before authentication, as 400
    assert answer.status_code == (400 if control else 401)
    assert events(engine) == []


def test_nevis_status_in_the_url_is_not_trusted(client, engine, services):  # type: ignore[no-untyped-def]
    from reconciler.drain import drain_ready_events

    answer = client.get("/callbacks/nevis?sessionId=111222333&status=verified")
    assert answer.status_code == 302
    drain_ready_events(services)
    with Session(engine) as session:
        row = session.execute(
            select(VerificationSession).where(
                VerificationSession.provider == "nevis",
                VerificationSession.session_id == "111222333",
            )
        ).scalar_one()
    assert row.status != "verified"
    assert row.next_check_at is not None  # the redirect only made the session due for a poll


def test_nevis_disabled_is_404(make_services, engine):  # type: ignore[no-untyped-def]
    from app import create_app

    providers = provider_settings()
    providers["nevis"] = {"return_url": NEVIS_RETURN, "access_key": ""}
    client = create_app(services=make_services(providers=providers)).test_client()
    assert client.get("/callbacks/nevis?sessionId=123456789").status_code == 404
    assert events(engine) == []
