"""Every event of a known session carries the session's user ref, so that every user filter
(`GET /api/v1/events?user_ref=`, `verihook events list --user-ref`) finds all of a user's
events: callbacks and poll answers (which name no user), events that arrived before the backend
registered the session, and events stored before migration 0008 (its backfill)."""

from __future__ import annotations

import json

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlmodel import Session

from app import create_app
from receiver.store.migrate import alembic_config, current_revision, head_revision, upgrade
from receiver.store.models import InboundEvent
from reconciler import jobs
from reconciler.api.tokens import create_token
from reconciler.cli.events import events
from reconciler.drain import drain_ready_events
from tests.support import signing
from tests.support.flow import API_TOKENS, AUDITOR, BACKEND, send_contiguity
from tests.support.processes import settings_env
from tests.support.world import start_world, stop_world


@pytest.fixture
def api(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    return services, create_app(services=services).test_client()


def user_events(client, user_ref: str, headers=AUDITOR) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    answer = client.get(f"/api/v1/events?user_ref={user_ref}&limit=500", headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["events"]


def session_events(engine, provider: str, session_id: str) -> list[InboundEvent]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return list(
            db.execute(
                select(InboundEvent).where(
                    InboundEvent.provider == provider, InboundEvent.session_id == session_id
                )
            ).scalars()
        )


def register(client, provider: str, session_id: str, user_ref: str) -> None:  # type: ignore[no-untyped-def]
    answer = client.post(
        "/api/v1/sessions",
        json={"provider": provider, "session_id": session_id, "user_ref": user_ref},
        headers=BACKEND,
    )
    assert answer.status_code in (200, 201), answer.get_json()


def test_a_redirect_callback_carries_the_registered_sessions_user_ref(api):  # type: ignore[no-untyped-def]
    services, client = api
    register(client, "nevis", "123456789", "u-nevis")
    assert client.get("/callbacks/nevis?sessionId=123456789").status_code == 302
    drain_ready_events(services)
    [event] = session_events(services.engine, "nevis", "123456789")
    assert (event.kind, event.state) == ("callback", "applied")
    assert [e["id"] for e in user_events(client, "u-nevis")] == [event.id]

    listed = CliRunner().invoke(
        events,
        ["list", "--user-ref", "u-nevis", "--json"],
        env=settings_env(services.settings),
    )
    assert listed.exit_code == 0, listed.output
    assert [e["id"] for e in json.loads(listed.output)["events"]] == [event.id]


def test_events_before_the_user_ref_was_known_get_it_when_it_is(api):  # type: ignore[no-untyped-def]
    services, client = api
    anonymous = signing.contiguity_event("processing", "vs_late", user_ref=None)  # type: ignore[arg-type]
    assert send_contiguity(client, anonymous).status_code == 200
    drain_ready_events(services)
    assert user_events(client, "u-late") == []
    register(client, "contiguity", "vs_late", "u-late")  # the backend tells us afterwards
    assert len(user_events(client, "u-late")) == 1

    # the same when the ref comes from a later delivery of the provider itself
    first = signing.contiguity_event("processing", "vs_told", user_ref=None)  # type: ignore[arg-type]
    assert send_contiguity(client, first).status_code == 200
    drain_ready_events(services)
    told = signing.contiguity_event(
        "verified", "vs_told", user_ref="u-told", timestamp=1_700_000_100
    )
    assert send_contiguity(client, told).status_code == 200
    drain_ready_events(services)
    found = user_events(client, "u-told")
    assert len(found) == 2 and {e["session_id"] for e in found} == {"vs_told"}
    assert all(
        e.user_ref == "u-told" for e in session_events(services.engine, "contiguity", "vs_told")
    )


def test_poll_answers_and_callbacks_of_poll_only_providers_carry_the_user_ref(make_services):  # type: ignore[no-untyped-def]
    world = start_world(
        make_services, policy={"poll_interval_seconds": 0.2, "max_poll_interval_seconds": 1.0}
    )
    try:
        made = {
            "docverify": world.create("docverify", "u-doc"),
            "nevis": world.create("nevis", "u-nev"),
        }
        world.sims["docverify"].script(made["docverify"]["session_id"], "verified")
        world.sims["nevis"].script(made["nevis"]["session_id"], "verified")
        _, token = create_token(world.services.engine, "auditor", "triage")
        client = create_app(services=world.services).test_client()
        headers = {"Authorization": f"Bearer {token}"}
        world.advance(5)
        world.tick()  # polls both; no worker has applied the answers yet
        for provider, user_ref in (("docverify", "u-doc"), ("nevis", "u-nev")):
            stored = session_events(world.services.engine, provider, made[provider]["session_id"])
            waiting = [e for e in stored if e.kind == "poll" and e.state == "received"]
            assert waiting and all(e.user_ref == user_ref for e in waiting), provider
        world.settle(rounds=12)
        for provider, user_ref in (("docverify", "u-doc"), ("nevis", "u-nev")):
            stored = session_events(world.services.engine, provider, made[provider]["session_id"])
            kinds = {e.kind for e in stored}
            assert "poll" in kinds and "callback" in kinds, (provider, kinds)
            found = user_events(client, user_ref, headers)
            assert sorted(e["id"] for e in found) == sorted(e.id for e in stored), provider
    finally:
        stop_world(world)


def test_migration_0008_backfills_the_user_refs_of_stored_events(engine):  # type: ignore[no-untyped-def]
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
    assert current_revision(engine) == "0007"
    rows = [  # (session id, the event's own user ref)
        ("s-known", None),
        ("s-known", "someone-else"),  # an event's own ref is never replaced
        ("s-anonymous", None),  # the session's user is not known
        ("s-stranger", None),  # no such session
        (None, None),
    ]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO verification_sessions (provider, session_id, user_ref, status, "
                "decided_by, created_at, updated_at, poll_attempts, overdue, settled) VALUES "
                "('nevis', 's-known', 'u-known', 'pending', 'auto', :t, :t, 0, false, false), "
                "('nevis', 's-anonymous', NULL, 'pending', 'auto', :t, :t, 0, false, false), "
                "('docverify', 's-stranger', 'u-other', 'pending', 'auto', :t, :t, 0, false, false)"
            ),
            {"t": "2026-12-01 00:00:00"},
        )
        for index, (session_id, user_ref) in enumerate(rows):
            connection.execute(
                text(
                    "INSERT INTO inbound_events (provider, dedupe_key, kind, state, session_id, "
                    "user_ref, received_at, updated_at, attempts) VALUES ('nevis', :key, "
                    "'callback', 'applied', :sid, :ref, :t, :t, 0)"
                ),
                {"key": f"k{index}", "sid": session_id, "ref": user_ref, "t": "2026-12-01"},
            )
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT session_id, user_ref FROM inbound_events ORDER BY dedupe_key")
        ).all()
    assert [tuple(row) for row in found] == [
        ("s-known", "u-known"),
        ("s-known", "someone-else"),
        ("s-anonymous", None),
        ("s-stranger", None),
        (None, None),
    ]
