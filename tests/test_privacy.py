"""PII lifecycle: key rotation under live ingest, retention purge, erasure of one person."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import MetaData, select, text
from sqlmodel import Session

from receiver.canonical import Source
from receiver.ingest import ingest
from receiver.providers.base import Delivery
from receiver.store.crypto import Keyring, Sealed, new_key_spec
from receiver.store.db import transaction
from receiver.store.events import open_payload
from receiver.store.models import InboundEvent, ObservationRecord
from reconciler.audit.chain import verify_chain
from reconciler.drain import drain_ready_events
from reconciler.privacy.lifecycle import forget_user, purge_expired, rotate_keys
from tests.support import signing
from tests.support.flow import send_contiguity, send_idenfy, send_idvapi

PII = ("QUIXOTEPII", "PII998877", "1985-04-12", "ZELDA")


def dump_database(engine) -> str:  # type: ignore[no-untyped-def]
    """Every value of every table as text (what an attacker with a dump would see)."""
    meta = MetaData()
    meta.reflect(engine)
    chunks = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value).decode("latin-1"))
                    else:
                        chunks.append(str(value))
    return "\n".join(chunks)


def ingest_contiguity(services, index: int) -> None:  # type: ignore[no-untyped-def]
    body = signing.contiguity_event(
        "processing", f"vs_r{index}", user_ref=f"r{index}", metadata={"note": f"secret-{index}"}
    )
    now = time.time()
    delivery = Delivery(
        provider="contiguity",
        source=Source.WEBHOOK,
        body=body,
        headers=(
            ("Content-Type", "application/json"),
            ("Contiguity-Signature", signing.contiguity_header(body, timestamp=int(now))),
        ),
    )
    ingest(
        delivery,
        services.providers["contiguity"],
        engine=services.engine,
        keyring=services.keyring,
        writer=services.event_writer,
        now=now,
    )


def test_rotation_under_live_ingest_leaves_every_row_readable_with_the_new_key(make_services):  # type: ignore[no-untyped-def]
    old, new = new_key_spec("old"), new_key_spec("new")
    before = make_services(encryption_keys=old)
    before.keyring = Keyring.parse(old)
    for index in range(150):
        ingest_contiguity(before, index)
    drain_ready_events(before)  # observations with sealed details under the old key
    rolled = make_services(encryption_keys=f"{new},{old}")
    rolled.keyring = Keyring.parse(f"{new},{old}")
    stop = threading.Event()
    written = []

    def live() -> None:  # receivers still on the old config during the rollout, then new ones
        index = 1000
        while not stop.is_set() and index < 1400:
            ingest_contiguity(before if index % 2 else rolled, index)
            written.append(index)
            index += 1

    thread = threading.Thread(target=live)
    thread.start()
    first = rotate_keys(rolled, batch=25)
    stop.set()
    thread.join(timeout=60)
    second = rotate_keys(rolled, batch=25)  # catches rows written by old-config receivers
    assert first.total >= 150 and written
    assert second.total >= 0
    only_new = Keyring.parse(new)
    with Session(rolled.engine) as db:
        events = db.execute(select(InboundEvent)).scalars().all()
        assert len(events) == 150 + len(written)
        for event in events:
            assert event.key_id == "new"
            open_payload(event, keyring=only_new)
        details = (
            db.execute(select(ObservationRecord).where(ObservationRecord.details_blob.is_not(None)))
            .scalars()
            .all()
        )
        assert details
        for row in details:
            only_new.open(
                Sealed(row.key_id, row.details_blob),
                aad=f"observation:{row.session_pk}:{row.observation_key}".encode(),
            )


def test_purge_drops_old_payloads_and_keeps_statuses(services, client):  # type: ignore[no-untyped-def]
    send_idenfy(client, signing.idenfy_result("APPROVED"), "auto-finished")
    drain_ready_events(services)
    later = purge_expired(services, days=30, dry_run=True)
    assert (later.event_payloads, later.observation_details) == (0, 0)
    future = later.cutoff + timedelta(days=31)
    dry = purge_expired(services, days=0, dry_run=True, now=future)
    assert dry.event_payloads == 1 and dry.observation_details == 1
    assert purge_expired(services, days=0, now=future).event_payloads == 1
    dumped = dump_database(services.engine)
    assert not any(value in dumped for value in PII)
    with transaction(services.engine) as db:
        assert verify_chain(db).ok
        status = db.execute(text("SELECT status FROM user_records")).scalar_one()
    assert status == "verified"


def test_forget_erases_one_person_and_keeps_the_audit_verifiable(make_services, client, services):  # type: ignore[no-untyped-def]
    noisy = make_services(
        notify_url="http://127.0.0.1:9/unreachable", notify_secret="whsec_" + "A" * 43
    )
    send_idenfy(client, signing.idenfy_result("APPROVED", client_id="alice"), "auto-finished")
    send_idvapi(client, signing.idvapi_result("verified", "alice"))
    send_contiguity(client, signing.contiguity_event("verified", user_ref="bob"))
    drain_ready_events(noisy)
    assert "alice" in dump_database(services.engine)
    stats = forget_user(services, "alice", actor="test")
    assert stats.events == 2 and stats.sessions == 2 and stats.notifications >= 1
    dumped = dump_database(services.engine)
    assert "alice" not in dumped
    assert not any(value in dumped for value in PII)
    assert "bob" in dumped  # nobody else is touched
    with transaction(services.engine) as db:
        report = verify_chain(db)
        assert report.ok, report
        reasons = db.execute(text("SELECT reason FROM audit_entries")).scalars().all()
    assert any(r.startswith("erased personal data of erased:") for r in reasons)


def test_privacy_commands_run_from_the_cli(services, client):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from app import cli
    from tests.support.processes import settings_env

    send_idenfy(client, signing.idenfy_result("APPROVED", client_id="carol"), "auto-finished")
    env = {k: v for k, v in settings_env(services.settings).items() if k.startswith("VERIHOOK_")}
    runner = CliRunner()
    rotated = runner.invoke(cli, ["keys", "rotate"], env=env)
    assert rotated.exit_code == 0, rotated.output
    dry = runner.invoke(cli, ["purge", "--dry-run", "--days", "0"], env=env)
    assert dry.exit_code == 0 and "would purge 1 raw deliveries" in dry.output
    forgot = runner.invoke(cli, ["users", "forget", "carol", "--yes"], env=env)
    assert forgot.exit_code == 0 and "erased: 1 event(s)" in forgot.output
    refused = runner.invoke(cli, ["users", "forget", "dave"], env=env, input="n\n")
    assert refused.exit_code == 0 and "Nothing done." in refused.output  # "no" is no error
