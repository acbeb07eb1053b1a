"""Redirect callbacks: docverify (`state` checked against the stored digest) and nevis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from sqlmodel import Session

from receiver.canonical import utc
from receiver.providers.docverify import state_digest
from receiver.store.models import InboundEvent, OutboxEntry, VerificationSession
from tests.conftest import provider_settings

DOCVERIFY_RETURN = provider_settings()["docverify"]["return_url"]
NEVIS_RETURN = provider_settings()["nevis"]["return_url"]
STATE = "the-state"


def events(engine) -> list[InboundEvent]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return list(db.execute(select(InboundEvent).order_by(InboundEvent.id)).scalars())


def outbox_ids(engine) -> list[int]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return list(db.execute(select(OutboxEntry.event_id)).scalars())


def add_session(
    engine,
    session_id: str,
    *,
    provider: str = "docverify",  # type: ignore[no-untyped-def]
    state: str = STATE,
) -> None:
    with Session(engine) as db:
        db.add(
            VerificationSession(
                provider=provider,
                session_id=session_id,
                user_ref="user-dv",
                state_digest=state_digest(state),
            )
        )
        db.commit()


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
def test_docverify_unusable_redirect_still_sends_the_person_on_and_stores_nothing(  # type: ignore[no-untyped-def]
    client, engine, query
):
    add_session(engine, "dv-sess-2")
    before = auth_failures("docverify")
    answer = docverify(client, **query)
    assert answer.status_code == 302  # a person is on the other end: never a JSON error
    assert answer.headers["Location"] == DOCVERIFY_RETURN
    assert events(engine) == []
    assert auth_failures("docverify") == before + 1


def auth_failures(provider: str) -> float:
    from prometheus_client import REGISTRY

    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "verihook_auth_failures":
            total += sum(
                s.value
                for s in metric.samples
                if s.name.endswith("_total") and s.labels.get("provider") == provider
            )
    return total


def test_docverify_redirect_without_a_return_url_shows_a_page_not_json(make_services, engine):  # type: ignore[no-untyped-def]
    from app import create_app

    providers = provider_settings()
    providers["docverify"] = {**providers["docverify"], "return_url": ""}
    client = create_app(services=make_services(providers=providers)).test_client()
    add_session(engine, "dv-sess-page")
    good = docverify(client, sessionId="dv-sess-page", state=STATE)
    bad = docverify(client, sessionId="dv-sess-page", state="wrong")
    assert (good.status_code, bad.status_code) == (200, 400)
    for answer in (good, bad):
        assert answer.mimetype == "text/html"
        assert b"close this window" in answer.data


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
    with Session(engine) as db:
        row = db.execute(
            select(VerificationSession).where(
                VerificationSession.provider == "docverify",
                VerificationSession.session_id == "dv-sess-url",
            )
        ).scalar_one()
    assert row.status == "pending"
    assert row.next_check_at is not None  # due for a poll now


def test_docverify_repeated_state_parameter_is_refused(client, engine):  # type: ignore[no-untyped-def]
    add_session(engine, "dv-sess-3")
    answer = client.get(f"/callbacks/docverify?sessionId=dv-sess-3&state={STATE}&state={STATE}")
    assert (answer.status_code, answer.headers["Location"]) == (302, DOCVERIFY_RETURN)
    assert events(engine) == []


def test_docverify_state_of_another_providers_session_is_refused(client, engine):  # type: ignore[no-untyped-def]
    add_session(engine, "shared-id", provider="contiguity")
    answer = docverify(client, sessionId="shared-id", state=STATE)
    assert (answer.status_code, answer.headers["Location"]) == (302, DOCVERIFY_RETURN)
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


def nevis_session(engine, session_id: str, *, age_minutes: float = 1.0) -> None:  # type: ignore[no-untyped-def]
    """A Nevis session the backend registered `age_minutes` ago, next checked in an hour."""
    now = datetime.now(UTC)
    with Session(engine) as db:
        db.add(
            VerificationSession(
                provider="nevis",
                session_id=session_id,
                user_ref=f"user-{session_id}",
                created_at=now - timedelta(minutes=age_minutes),
                next_check_at=now + timedelta(hours=1),
            )
        )
        db.commit()


def nevis_row(engine, session_id: str) -> VerificationSession | None:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return db.execute(
            select(VerificationSession).where(
                VerificationSession.provider == "nevis",
                VerificationSession.session_id == session_id,
            )
        ).scalar_one_or_none()


def due_now(row: VerificationSession | None) -> bool:
    assert row is not None and row.next_check_at is not None
    return utc(row.next_check_at) <= datetime.now(UTC)


def test_nevis_redirect_polls_a_registered_session_now(client, engine, services):  # type: ignore[no-untyped-def]
    from reconciler.drain import drain_ready_events

    nevis_session(engine, "123456789")
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
    drain_ready_events(services)
    assert due_now(nevis_row(engine, "123456789"))


@pytest.mark.parametrize(
    "query",
    [
        "",  # what Nevis documents: a fixed URL with no parameters
        "sessionId=12345678",
        "sessionId=1234567890",
        "sessionId=12345678a",
        "sessionId=",
        "sessionId=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96%EF%BC%97%EF%BC%98%EF%BC%99",
        "sessionId=+123456789",
        "session_id=123456789",
        "sessionId=123456789&sessionId=987654321",
        "sessionId=555666777",  # well formed, but no session the backend registered
    ],
)
def test_nevis_redirect_never_creates_a_session_and_always_redirects(  # type: ignore[no-untyped-def]
    client, engine, services, query
):
    from reconciler.drain import drain_ready_events

    answer = client.get("/callbacks/nevis?" + query)
    assert (answer.status_code, answer.headers["Location"]) == (302, NEVIS_RETURN)
    assert len(events(engine)) == 1  # a small record of it, for on-call
    drain_ready_events(services)
    with Session(engine) as db:
        assert db.execute(select(VerificationSession)).first() is None
    assert [e.state for e in events(engine)] == ["applied"]


def test_nevis_redirect_naming_no_session_polls_recent_sessions_early(client, engine, services):  # type: ignore[no-untyped-def]
    from reconciler.drain import drain_ready_events
    from reconciler.sessions import RECENT_LIMIT

    recent = [f"1000000{n:02d}" for n in range(RECENT_LIMIT + 3)]
    for age, session_id in enumerate(recent):
        nevis_session(engine, session_id, age_minutes=1 + age)
    nevis_session(engine, "999999999", age_minutes=120)  # started long ago: left alone
    for _ in range(5):  # redirects in the same minute coalesce into one
        assert client.get("/callbacks/nevis").status_code == 302
    assert len(events(engine)) == 1
    drain_ready_events(services)
    hurried = [s for s in recent if due_now(nevis_row(engine, s))]
    assert hurried == recent[:RECENT_LIMIT]  # the newest ones, a bounded number
    assert not due_now(nevis_row(engine, "999999999"))


def test_a_hurried_session_in_the_same_batch_stays_due(client, engine, services):  # type: ignore[no-untyped-def]
    """Was: a recent session with an event of its own in the redirect's batch was made due by
    the redirect, then saved with the next check its own event planned (an hour away)."""
    import json

    from reconciler.drain import drain_ready_events
    from reconciler.poller import store_poll_answer

    nevis_session(engine, "100000001")
    answer = json.dumps({"status": "in_progress"}).encode()
    store_poll_answer(services, services.providers["nevis"], "100000001", answer, datetime.now(UTC))
    assert client.get("/callbacks/nevis").status_code == 302
    assert len(outbox_ids(engine)) == 2
    drain_ready_events(services)  # both events in one batch
    row = nevis_row(engine, "100000001")
    assert row is not None and row.status == "processing"
    assert due_now(row)


def test_padded_redirects_store_small_bounded_records(client, engine):  # type: ignore[no-untyped-def]
    """A stranger's redirect with 90 padded headers and a long query stores a small record."""
    from sqlalchemy import func

    padding = {f"X-Pad-{n}": "p" * 8000 for n in range(90)}
    for n in range(100):
        query = urlencode(
            {"sessionId": f"{700000000 + n}", **{f"k{m}": "v" * 4000 for m in range(20)}}
        )
        answer = client.get(f"/callbacks/nevis?{query}", headers=padding)
        assert answer.status_code == 302
    with Session(engine) as db:
        count, stored = db.execute(
            select(func.count(), func.sum(func.length(InboundEvent.payload_blob)))
        ).one()
    assert count == 100
    assert stored < 1_000_000, f"100 padded redirects stored {stored} bytes"


def test_nevis_status_in_the_url_is_not_trusted(client, engine, services):  # type: ignore[no-untyped-def]
    from reconciler.drain import drain_ready_events

    nevis_session(engine, "111222333")
    answer = client.get("/callbacks/nevis?sessionId=111222333&status=verified")
    assert answer.status_code == 302
    drain_ready_events(services)
    row = nevis_row(engine, "111222333")
    assert row is not None and row.status != "verified"
    assert due_now(row)  # the redirect only made the session due for a poll


def test_nevis_disabled_is_404(make_services, engine):  # type: ignore[no-untyped-def]
    from app import create_app

    providers = provider_settings()
    providers["nevis"] = {"return_url": NEVIS_RETURN, "access_key": ""}
    client = create_app(services=make_services(providers=providers)).test_client()
    assert client.get("/callbacks/nevis?sessionId=123456789").status_code == 404
    assert events(engine) == []
