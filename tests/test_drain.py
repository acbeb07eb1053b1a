"""The drain loop keeps one event's trouble with that event (reconciler/drain.py).

Re-parsing a stored event can go wrong in three ways: the parser says the content is not
understood (ParseError), the parser itself crashes on it (a bug: the same bytes fail the same way
every time), or the provider is not configured any more. Each quarantines that event only,
inside the batch: the others apply in the same transaction, nothing is left `failed`. A missing
decryption key is the deployment's problem, not the content's: that event fails and is retried.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from receiver.providers.contiguity import ContiguityProvider
from receiver.store.crypto import Keyring, new_key_spec
from receiver.store.models import EventState, InboundEvent
from reconciler.drain import drain_ready_events
from tests.support.flow import send_contiguity, send_idenfy
from tests.support.signing import contiguity_event, idenfy_result


def states(engine) -> dict[int, tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    """event id → (state, parse_error)."""
    with Session(engine) as db:
        rows = db.execute(
            select(InboundEvent.id, InboundEvent.state, InboundEvent.parse_error).order_by(
                InboundEvent.id
            )
        ).all()
    return {event_id: (state, error) for event_id, state, error in rows}


def test_a_parser_crash_quarantines_only_that_event_and_the_batch_still_applies(  # type: ignore[no-untyped-def]
    client, services, engine, monkeypatch
):
    for session_id in ("vs_one", "vs_crash", "vs_three"):
        body = contiguity_event("verified", session_id, user_ref=f"user-{session_id}")
        assert send_contiguity(client, body).status_code == 200
    real_parse = ContiguityProvider.parse

    def parse(self, delivery):  # type: ignore[no-untyped-def]
        if b"vs_crash" in delivery.body:
            raise OverflowError("simulated parser bug")
        return real_parse(self, delivery)

    monkeypatch.setattr(ContiguityProvider, "parse", parse)  # a parser bug shipped after ingest
    stats = drain_ready_events(services)
    assert (stats.applied, stats.quarantined, stats.failed, stats.batches) == (2, 1, 0, 1)
    found = states(engine)
    assert [state for state, _ in found.values()] == ["applied", "quarantined", "applied"]
    error = found[2][1]
    assert error is not None and "OverflowError" in error and "simulated" not in error


def test_an_event_of_a_provider_this_version_does_not_know_is_quarantined_not_failed(  # type: ignore[no-untyped-def]
    client, make_services, engine
):
    """A provider removed from the code (not merely disabled: a disabled provider's stored
    events still apply) leaves its stored events unparseable: quarantined, replayable later."""
    assert send_idenfy(client, idenfy_result("APPROVED")).status_code == 200
    assert send_contiguity(client, contiguity_event("verified")).status_code == 200
    without_idenfy = make_services()
    del without_idenfy.providers["idenfy"]
    stats = drain_ready_events(without_idenfy)
    assert (stats.applied, stats.quarantined, stats.failed, stats.batches) == (1, 1, 0, 1)
    assert states(engine)[1] == (
        EventState.QUARANTINED.value,
        "provider 'idenfy' is not configured any more",
    )


def test_an_event_sealed_with_a_missing_key_fails_and_is_retried_not_quarantined(  # type: ignore[no-untyped-def]
    client, make_services, engine
):
    assert send_contiguity(client, contiguity_event("verified")).status_code == 200
    broken = make_services()
    broken.keyring = Keyring.parse(new_key_spec("other"))
    stats = drain_ready_events(broken, max_seconds=5)
    assert (stats.applied, stats.quarantined, stats.failed) == (0, 0, 1)
    assert states(engine)[1][0] == EventState.FAILED.value
