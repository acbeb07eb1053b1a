"""On-call triage in the console (issue 20 item 4), through Flask's test client, on SQLite and
PostgreSQL: what the triage pages read (repeated deliveries, a session's recent checks, search,
several states at once) and what they show.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from receiver.store.event_batches import prepare_event, write_events
from receiver.store.events import NewEvent
from receiver.store.models import VerificationSession, utcnow
from receiver.store.trace_models import POLLS_KEPT, DeliveryCount, SessionPoll
from reconciler.policies import policies
from reconciler.poller import reconcile, record_check
from tests.support import signing
from tests.support.flow import send_contiguity
from tests.test_console import site  # noqa: F401  (the fixture)


def repeats(engine) -> dict[int, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return {
            row.event_id: row.duplicates for row in session.execute(select(DeliveryCount)).scalars()
        }


def test_repeated_deliveries_are_counted_durably(site):  # type: ignore[no-untyped-def]  # noqa: F811
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


def test_checks_of_a_session_are_recorded_and_only_the_newest_kept(site):  # type: ignore[no-untyped-def]  # noqa: F811
    services, _ = site
    now = utcnow()
    with Session(services.engine) as session:
        row = VerificationSession(
            provider="idvapi", session_id="u-silent", user_ref="u-silent", next_check_at=now
        )
        session.add(row)
        session.commit()
        session.refresh(row)
    outcome = reconcile(services, None, row, policies(services.settings)["idvapi"], now)  # type: ignore[arg-type]
    assert outcome.result == "overdue"
    with Session(services.engine) as session:
        polls = list(session.execute(select(SessionPoll)).scalars())
        assert [(p.session_pk, p.outcome) for p in polls] == [(row.id, "overdue")]

        connection = session.connection()
        for index in range(POLLS_KEPT + 5):
            record_check(connection, 999, f"unchanged-{index}", now, None)
        session.commit()
        kept = list(
            session.execute(
                select(SessionPoll.outcome).where(SessionPoll.session_pk == 999)
            ).scalars()
        )
    assert len(kept) == POLLS_KEPT
    assert kept[0] == "unchanged-5" and kept[-1] == f"unchanged-{POLLS_KEPT + 4}"
