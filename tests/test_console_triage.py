"""On-call triage in the console (issue 20 item 4), through Flask's test client, on SQLite and
PostgreSQL: what the triage pages read (repeated deliveries, a session's recent checks, search,
several states at once) and what they show.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select, update
from sqlmodel import Session

from receiver.store.db import transaction
from receiver.store.event_batches import NewEvent, prepare_event, write_events
from receiver.store.models import EventState, InboundEvent, VerificationSession, utcnow
from receiver.store.refusals import Refusals, add_refusals, bucket_of
from receiver.store.trace_models import POLLS_KEPT, DeliveryCount, SessionPoll
from reconciler import jobs
from reconciler.api.tokens import create_token
from reconciler.drain import drain_ready_events
from reconciler.policies import policies
from reconciler.poller import reconcile, record_check
from reconciler.replay.execution import run_replay
from tests.support import signing
from tests.support.flow import API_TOKENS, audit_rows, send_contiguity, send_idenfy
from tests.support.world import start_world, stop_world
from tests.test_console import (
    AUDITOR_TOKEN,
    HOSTILE_ERROR,
    HOSTILE_SESSION,
    HOSTILE_USER,
    assert_escaped,
    console_app,
    csrf_from,
    event_state,
    fail_event,
    hostile_data,
    page_csrf,
    signed_in,
    text,
)


@pytest.fixture
def site(make_services, redis_server):  # type: ignore[no-untyped-def]
    """Services with the API tokens, and the app with its console (as tests/test_console.py)."""
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    return services, console_app(services)


def repeats(engine) -> dict[int, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return {row.event_id: row.duplicates for row in db.execute(select(DeliveryCount)).scalars()}


def test_repeated_deliveries_are_counted_durably(site):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    body = signing.contiguity_event("verified", "vs_again")
    first = send_contiguity(client, body).get_json()
    assert first["status"] == "accepted"
    for _ in range(2):
        again = send_contiguity(client, body).get_json()
        assert again == {"status": "duplicate", "event_id": first["event_id"]}
    send_contiguity(client, signing.contiguity_event("verified", "vs_once"))
    assert repeats(services.engine) == {first["event_id"]: 2}

    # repeats inside one group commit: the first is stored, the others counted
    event = NewEvent("contiguity", "evt:batch", "webhook", {}, utcnow())
    row = prepare_event(event, keyring=services.keyring)
    for batch, expected in (([row, row, row], 2), ([row], 3)):
        pooled = services.engine.raw_connection()
        try:
            stored = write_events(pooled.driver_connection, batch, dialect=services.engine.dialect)
            pooled.commit()
        finally:
            pooled.close()
        assert len({s.event_id for s in stored}) == 1
        assert repeats(services.engine)[stored[0].event_id] == expected


def test_checks_of_a_session_are_recorded_and_only_the_newest_kept(site):  # type: ignore[no-untyped-def]
    services, _ = site
    now = utcnow()
    with Session(services.engine) as db:
        row = VerificationSession(
            provider="idvapi", session_id="u-silent", user_ref="u-silent", next_check_at=now
        )
        db.add(row)
        db.commit()
        db.refresh(row)
    outcome = reconcile(services, None, row, policies(services.settings)["idvapi"], now)  # type: ignore[arg-type]
    assert outcome.result == "overdue"
    with Session(services.engine) as db:
        polls = list(db.execute(select(SessionPoll)).scalars())
        assert [(p.session_pk, p.outcome) for p in polls] == [(row.id, "overdue")]

        connection = db.connection()
        for index in range(POLLS_KEPT + 5):
            record_check(connection, 999, f"unchanged-{index}", now, None)
        db.commit()
        kept = list(
            db.execute(select(SessionPoll.outcome).where(SessionPoll.session_pk == 999)).scalars()
        )
    assert len(kept) == POLLS_KEPT
    assert kept[0] == "unchanged-5" and kept[-1] == f"unchanged-{POLLS_KEPT + 4}"


# ------------------------------------------------------------------ the pages


def rows_of(page: str, table: str) -> list[str]:
    """The rows of a table on a page, as HTML."""
    body = page.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return body.split("<tbody>", 1)[1].split("<tr")[1:]


def event_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<td class="num"><a href="/console/events/(\d+)">', page)]


def test_events_page_takes_several_states_searches_and_shows_type_result_deliveries(
    site, make_services
):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    body = signing.contiguity_event("verified", "vs_found", user_ref="u-found", event_id="evt_ab12")
    found = send_contiguity(client, body).get_json()["event_id"]
    send_contiguity(client, body)
    send_contiguity(client, body)
    quarantined = send_contiguity(client, signing.contiguity_event("redacted")).get_json()
    idenfy = send_idenfy(
        client, signing.idenfy_result("APPROVED", "scan-n"), "auto-finished"
    ).get_json()["event_id"]
    drain_ready_events(services)
    failed = fail_event(make_services, client, signing.contiguity_event("verified", "vs_bad"))

    auditor = signed_in(app, AUDITOR_TOKEN)
    both = {quarantined["event_id"], failed}
    for query in ("state=failed&state=quarantined", "state=failed,quarantined"):
        page = text(auditor.get(f"/console/events?{query}"))
        assert set(event_ids(page)) == both, query
        assert 'value="failed" checked' in page and 'value="quarantined" checked' in page
        assert 'value="applied" checked' not in page
    assert event_ids(text(auditor.get("/console/events?state=failed"))) == [failed]

    page = text(auditor.get("/console/events"))
    row = next(r for r in rows_of(page, "events") if f'/console/events/{found}"' in r)
    assert "b-verified" in row  # the status it resulted in
    assert '<td class="num repeated">3</td>' in row  # delivered three times
    assert 'href="/console/sessions/contiguity/vs_found"' in row
    idenfy_row = next(r for r in rows_of(page, "events") if f'/console/events/{idenfy}"' in r)
    assert "auto-finished" in idenfy_row and "b-verified" in idenfy_row

    for term in ("evt_ab12", "evt:evt_ab12", "vs_found", str(found)):
        assert event_ids(text(auditor.get("/console/events", query_string={"search": term}))) == [
            found
        ], term
    assert "No events match" in text(auditor.get("/console/events?search=evt_nothing"))
    bad = auditor.get("/console/events", query_string={"search": "a\x01b"})
    assert bad.status_code == 400

    event_page = text(auditor.get(f"/console/events/{found}"))
    assert re.search(r'id="deliveries">3 times', event_page)
    assert "answered duplicate" in event_page
    assert 'id="deliveries">1 time<' in text(auditor.get(f"/console/events/{failed}"))


def test_needs_attention_lists_failed_quarantined_and_overdue_newest_first(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    send_contiguity(client, signing.contiguity_event("processing", "vs_late", user_ref="u-late"))
    send_contiguity(client, signing.contiguity_event("verified", "vs_fine"))
    drain_ready_events(services)
    quarantined = send_contiguity(client, signing.contiguity_event("redacted")).get_json()
    failed = fail_event(make_services, client, signing.contiguity_event("verified", "vs_bad"))
    with transaction(services.engine) as db:
        db.execute(
            update(VerificationSession)
            .where(VerificationSession.session_id == "vs_late")
            .values(overdue=True, updated_at=utcnow() + timedelta(seconds=5))
        )
        now = utcnow()
        add_refusals(
            db,
            [
                Refusals("idenfy", "bad_signature", bucket_of(now), 7, now),
                Refusals("idenfy", "bad_signature", bucket_of(now - timedelta(hours=1)), 2, now),
                Refusals("contiguity", "stale_timestamp", bucket_of(now), 1, now),
                Refusals("idenfy", "bad_signature", bucket_of(now - timedelta(days=2)), 50, now),
            ],
        )

    operator = signed_in(app)
    page = text(operator.get("/console/attention"))
    assert 'href="/console/attention" aria-current="page">Needs attention' in page
    rows = rows_of(page, "attention")
    assert len(rows) == 3
    assert "vs_late" in rows[0] and "overdue" in rows[0]  # the newest first
    assert f'/console/events/{failed}"' in rows[1] and "b-failed" in rows[1]
    assert f'/console/events/{quarantined["event_id"]}"' in rows[2]
    assert "b-quarantined" in rows[2] and "undocumented" in rows[2]
    tiles = dict(re.findall(r'id="total-(\w+)".*?class="value">(\d+)<', page, re.S))
    assert tiles == {"failed": "1", "quarantined": "1", "overdue": "1"}
    refusals = [re.sub(r"<[^>]+>", " ", "<tr" + r).split() for r in rows_of(page, "refusals")]
    assert [r[:3] for r in refusals] == [
        ["idenfy", "bad_signature", "9"],
        ["contiguity", "stale_timestamp", "1"],
    ]
    assert 'href="/console/events?state=failed,quarantined"' in page

    with transaction(services.engine) as db:
        db.execute(update(VerificationSession).values(overdue=False))
        db.execute(update(InboundEvent).values(state=EventState.APPLIED))
    calm = text(operator.get("/console/attention"))
    assert 'id="nothing"' in calm


def test_a_bulk_replay_is_a_dry_run_first_then_confirmed(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    first = fail_event(
        make_services, client, signing.contiguity_event("verified", "vs_b1", user_ref="u-b1")
    )
    second = fail_event(
        make_services, client, signing.contiguity_event("failed", "vs_b2", user_ref="u-b2")
    )
    auditor = signed_in(app, AUDITOR_TOKEN)
    assert 'id="bulk-dry-run"' not in text(auditor.get("/console/events?state=failed"))
    csrf = page_csrf(auditor)
    assert auditor.post("/console/replays/dry-run", data={"csrf_token": csrf}).status_code == 403

    operator = signed_in(app)
    listing = operator.get("/console/events?state=failed")
    assert 'id="bulk-dry-run"' in text(listing)
    assert 'id="bulk-dry-run"' not in text(operator.get("/console/events"))  # no filter: no bulk
    csrf = csrf_from(listing)
    dry = operator.post("/console/replays/dry-run", data={"csrf_token": csrf, "state": "failed"})
    page = text(dry)
    assert dry.status_code == 200 and "Nothing was changed" in page
    assert "2 events match" in page and "2 session(s) and 2 user(s) would change" in page
    assert "u-b1" in page and "u-b2" in page and 'id="bulk-confirm"' in page
    assert {event_state(services.engine, i) for i in (first, second)} == {EventState.FAILED}
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    assert fields["state"] == "failed" and fields["confirm"] == "1" and fields["until"]

    # an event failing after the dry run is not part of what was confirmed
    fail_event(make_services, client, signing.contiguity_event("verified", "vs_b3"))
    unconfirmed = {k: v for k, v in fields.items() if k != "confirm"}
    assert operator.post("/console/replays", data=unconfirmed).status_code == 400
    assert operator.post("/console/replays/dry-run", data={"csrf_token": csrf}).status_code == 400
    started = operator.post("/console/replays", data=fields)
    assert started.status_code == 302
    replay_id = int(started.headers["Location"].rsplit("/", 1)[1])
    assert run_replay(services, replay_id).total == 2
    run = text(operator.get(started.headers["Location"]))
    assert "b-done" in run and "2 / 2 events" in run and "u-b1" in run
    assert {event_state(services.engine, i) for i in (first, second)} == {EventState.APPLIED}
    assert "started bulk replay" in " ".join(r.reason for r in audit_rows(services.engine))
    assert operator.get("/console/replays/424242").status_code == 404
    assert f'href="/console/replays/{replay_id}"' in text(operator.get("/console/"))


def test_session_page_shows_history_checks_deadline_and_reconciles_now(make_services):  # type: ignore[no-untyped-def]
    world = start_world(make_services, policy={"poll_interval_seconds": 60})
    try:
        _, operator_token = create_token(world.services.engine, "operator", "on-call")
        _, auditor_token = create_token(world.services.engine, "auditor", "reader")
        app = console_app(world.services)
        created = world.create("nevis", "u-stuck")
        session_id = created["session_id"]
        world.sims["nevis"].script(session_id, "verified")
        deadline = time.monotonic() + 10  # the simulator takes its steps on timers
        while world.sims["nevis"].truth(session_id).get("canonical") != "verified":
            assert time.monotonic() < deadline, world.sims["nevis"].truth(session_id)
            time.sleep(0.05)
        url = f"/console/sessions/nevis/{session_id}"

        auditor = signed_in(app, auditor_token)
        page = text(auditor.get(url))
        assert "b-pending" in page and 'id="no-polls"' in page
        assert "the next status poll" in page and "poll mode" in page
        assert 'id="reconcile-now"' not in page
        refused = auditor.post(
            "/console/sessions/reconcile",
            data={
                "csrf_token": csrf_from(auditor.get(url)),
                "provider": "nevis",
                "session_id": session_id,
            },
        )
        assert refused.status_code == 403

        operator = signed_in(app, operator_token)
        page = operator.get(url)
        answer = operator.post(
            "/console/sessions/reconcile",
            data={"csrf_token": csrf_from(page), "provider": "nevis", "session_id": session_id},
        )
        assert answer.status_code == 302 and answer.headers["Location"].endswith(
            "reconciled=changed"
        )
        page = text(operator.get(answer.headers["Location"]))
        assert "Reconciled now: <strong>changed</strong>" in page
        assert "b-verified" in page.split('id="session-facts"')[1]
        checks = rows_of(page, "polls")
        assert len(checks) == 1 and "changed" in checks[0] and "/console/events/" in checks[0]
        assert len(rows_of(page, "history")) == 1
        forged = operator.post(
            "/console/sessions/reconcile",
            data={"provider": "nevis", "session_id": session_id},
        )
        assert forged.status_code == 400  # no CSRF token
        assert operator.get("/console/sessions/nevis/nope").status_code == 404
        assert operator.get("/console/sessions/nobody/x").status_code == 404
    finally:
        stop_world(world)


def test_an_overdue_session_says_why(site):  # type: ignore[no-untyped-def]
    services, app = site
    now = utcnow()
    with Session(services.engine) as db:
        row = VerificationSession(
            provider="idvapi", session_id="u-quiet", user_ref="u-quiet", next_check_at=now
        )
        db.add(row)
        db.commit()
        db.refresh(row)
    reconcile(services, None, row, policies(services.settings)["idvapi"], now)  # type: ignore[arg-type]
    page = text(signed_in(app, AUDITOR_TOKEN).get("/console/sessions/idvapi/u-quiet"))
    assert 'id="overdue-reason"' in page and "no status endpoint" in page
    checks = rows_of(page, "polls")
    assert len(checks) == 1 and "overdue" in checks[0]


def test_hostile_values_are_escaped_on_the_triage_pages(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    hostile_data(services, make_services, app.test_client())
    operator = signed_in(app)
    for url, values in (
        ("/console/attention", [HOSTILE_USER, HOSTILE_SESSION, HOSTILE_ERROR]),
        (f"/console/sessions/contiguity/{quote(HOSTILE_SESSION)}", [HOSTILE_USER, HOSTILE_SESSION]),
        ("/console/events?search=" + quote(HOSTILE_SESSION), [HOSTILE_SESSION, HOSTILE_USER]),
    ):
        answer = operator.get(url)
        assert answer.status_code == 200, url
        assert_escaped(text(answer), *values)
    dry = operator.post(
        "/console/replays/dry-run",
        data={"csrf_token": page_csrf(operator), "session_id": HOSTILE_SESSION},
    )
    assert dry.status_code == 200
    assert_escaped(text(dry), HOSTILE_SESSION, HOSTILE_USER)
