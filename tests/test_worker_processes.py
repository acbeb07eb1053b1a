"""Workers as real processes: concurrency, kill -9 mid-batch, failures that stay replayable."""

from __future__ import annotations

import random
import signal
import time

from sqlalchemy import select, update
from sqlmodel import Session

from receiver.store.crypto import Keyring, new_key_spec
from receiver.store.db import transaction
from receiver.store.models import (
    EventState,
    InboundEvent,
    ObservationRecord,
    OutboxEntry,
    VerificationSession,
)
from reconciler.audit.chain import verify_chain
from reconciler.drain import drain_ready_events
from tests.support import signing
from tests.support.flow import audit_rows, count, send_contiguity
from tests.support.processes import settings_env, verihook

STORY = [
    "started",
    "processing",
    "requires_input",
    "processing",
    "verified",
    "failed",
    "manually_approved",
    "manually_denied",
]


def outcome(index: int) -> list[tuple[str, int]]:
    """A session's deliveries (kind, timestamp); the expected final is computable by hand."""
    last = ["verified", "failed", "manually_approved", "manually_denied"][index % 4]
    kinds = [
        "started",
        "processing",
        "requires_input",
        "processing",
        "processing",
        "started",
        "requires_input",
        "processing",
        "processing",
        last,
    ]
    return [(kind, 1000 + step) for step, kind in enumerate(kinds)]


EXPECTED = {
    "verified": ("verified", "auto"),
    "failed": ("rejected", "auto"),
    "manually_approved": ("verified", "manual"),
    "manually_denied": ("rejected", "manual"),
}


def test_four_workers_apply_shuffled_events_exactly_once(services, client, engine):  # type: ignore[no-untyped-def]
    bodies = []
    for index in range(200):
        for kind, ts in outcome(index):
            bodies.append(
                signing.contiguity_event(
                    kind, f"vs_{index:04d}", user_ref=f"u{index}", timestamp=ts
                )
            )
    random.Random(7).shuffle(bodies)
    for body in bodies:
        assert send_contiguity(client, body).status_code == 200
    env = settings_env(services.settings)
    env["VERIHOOK_APPLY_BATCH_SIZE"] = "50"
    workers = [verihook("worker", "--burst", env=env) for _ in range(4)]
    for proc in workers:  # each exits once nothing is ready (RQ's own stop could wait 60 s)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()[-2000:]
    assert count(engine, OutboxEntry) == 0
    assert count(engine, InboundEvent, InboundEvent.state.in_(["applied", "superseded"])) == 2000
    assert count(engine, ObservationRecord) == 2000  # each distinct observation recorded once
    with Session(engine) as db:
        rows = db.execute(select(VerificationSession)).scalars().all()
        assert len(rows) == 200
        for row in rows:
            last = outcome(int(row.session_id[3:]))[-1][0]
            assert (row.status, row.decided_by) == EXPECTED[last], row.session_id
        assert verify_chain(db).ok
    by_session: dict[str, list] = {}  # type: ignore[type-arg]
    for entry in audit_rows(engine):
        if entry.subject == "session":
            by_session.setdefault(entry.session_id, []).append(entry)
    for entries in by_session.values():  # one entry per change, each following the last
        for before, after in zip(entries, entries[1:], strict=False):
            assert after.previous_status == before.new_status
            assert after.new_status != after.previous_status or after.decided_by


def test_kill_9_mid_batch_leaves_nothing_half_applied(services, client, engine):  # type: ignore[no-untyped-def]
    for index in range(600):
        send_contiguity(
            client, signing.contiguity_event("verified", f"vs_k{index}", user_ref=f"k{index}")
        )
    env = settings_env(services.settings)
    env["VERIHOOK_APPLY_BATCH_SIZE"] = "600"
    proc = verihook("worker", "--burst", env=env)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    with Session(engine) as db:
        applied = set(
            db.execute(
                select(InboundEvent.id).where(InboundEvent.state == EventState.APPLIED)
            ).scalars()
        )
        waiting = set(db.execute(select(OutboxEntry.event_id)).scalars())
        recorded = set(db.execute(select(ObservationRecord.event_id)).scalars())
    assert applied | waiting == set(range(1, 601)) and not applied & waiting
    assert recorded == applied  # no observation without its event marked, and vice versa
    drain_ready_events(services)
    assert count(engine, InboundEvent, InboundEvent.state == EventState.APPLIED) == 600
    assert count(engine, OutboxEntry) == 0


def test_failed_event_is_marked_failed_retried_and_never_done(make_services, engine, client):  # type: ignore[no-untyped-def]
    answer = send_contiguity(client, signing.contiguity_event("verified"))
    event_id = answer.get_json()["event_id"]
    wrong_keys = make_services(encryption_keys=new_key_spec("other"))
    wrong_keys.keyring = Keyring.parse(new_key_spec("other"))
    stats = drain_ready_events(wrong_keys)
    assert stats.failed == 1
    with Session(engine) as db:
        event = db.get(InboundEvent, event_id)
        entry = db.get(OutboxEntry, event_id)
    assert event.state == EventState.FAILED and "DecryptionError" in event.last_error
    assert event.attempts == 1 and entry is not None and entry.attempts == 1
    assert drain_ready_events(wrong_keys).failed == 0  # backing off: not yet due
    with transaction(engine) as db:
        db.execute(update(OutboxEntry).values(available_at=entry.created_at))
    right = make_services()
    assert drain_ready_events(right).applied == 1
    with Session(engine) as db:
        assert db.get(InboundEvent, event_id).state == EventState.APPLIED


def test_exhausted_event_stays_failed_and_leaves_the_outbox(make_services, engine, client):  # type: ignore[no-untyped-def]
    send_contiguity(client, signing.contiguity_event("verified"))
    broken = make_services(apply_max_attempts=2)
    broken.keyring = Keyring.parse(new_key_spec("other"))
    for _ in range(2):
        with transaction(engine) as db:
            db.execute(update(OutboxEntry).values(available_at=OutboxEntry.created_at))
        drain_ready_events(broken)
    assert count(engine, OutboxEntry) == 0
    assert (
        count(
            engine,
            InboundEvent,
            InboundEvent.state == EventState.FAILED,
            InboundEvent.attempts == 2,
        )
        == 1
    )
