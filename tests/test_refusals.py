"""Refused deliveries are counted durably (issue 20): by provider, reason and bucket, off the
request path, and a database that fails changes neither the answer nor the counts.

The deliveries go through the receiver over HTTP (the Flask app), with real signatures made
wrong the ways a misconfigured dashboard makes them; the counts are read back from the table.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session

from app import create_app
from receiver.providers import build_providers
from receiver.refusals import RefusalLedger
from receiver.services import Services
from receiver.store.crypto import Keyring
from receiver.store.db import make_engine
from receiver.store.migrate import upgrade
from receiver.store.refusals import RefusalCount, bucket_of
from tests.conftest import TEST_KEYS, make_settings
from tests.support import signing


def refused_contiguity(client, *, secret: str = "whsec_not_the_one", age: int = 0):  # type: ignore[no-untyped-def]
    body = signing.contiguity_event("verified", "vs_refused")
    header = signing.contiguity_header(body, secret=secret, timestamp=int(time.time()) - age)
    return client.post(
        "/webhooks/contiguity",
        data=body,
        headers={"Content-Type": "application/json", "Contiguity-Signature": header},
    )


def counts(engine) -> dict[tuple[str, str], int]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        rows = db.execute(select(RefusalCount)).scalars()
        found: dict[tuple[str, str], int] = {}
        for row in rows:
            found[(row.provider, row.reason)] = found.get((row.provider, row.reason), 0) + row.count
        return found


def test_refusals_are_counted_by_provider_and_reason(client, services, engine):  # type: ignore[no-untyped-def]
    for _ in range(3):
        assert refused_contiguity(client).status_code == 401
    stale = refused_contiguity(client, secret=signing.CONTIGUITY_SECRET, age=3600)
    assert stale.status_code == 401
    for _ in range(2):
        wrong = client.post(
            "/webhooks/idvapi/not-the-token",
            data=b"{}",
            headers={"Content-Type": "application/json"},
        )
        assert wrong.status_code == 401
    services.refusals.flush()
    assert counts(engine) == {
        ("contiguity", "signature_mismatch"): 3,
        ("contiguity", "timestamp_outside_tolerance"): 1,
        ("idvapi", "token_mismatch"): 2,
    }
    assert refused_contiguity(client).status_code == 401  # more in the same bucket: added
    services.refusals.flush()
    assert counts(engine)[("contiguity", "signature_mismatch")] == 4
    with Session(engine) as db:
        rows = list(db.execute(select(RefusalCount)).scalars())
    assert {row.bucket_start for row in rows} <= {
        bucket_of(datetime.now(UTC)),
        bucket_of(datetime.now(UTC) - timedelta(seconds=5)),
    }


def test_the_background_thread_writes_them_without_being_asked(client, services, engine):  # type: ignore[no-untyped-def]
    assert refused_contiguity(client).status_code == 401
    wait_until(lambda: counts(engine) == {("contiguity", "signature_mismatch"): 1})


def test_a_failing_database_changes_no_answer_and_loses_no_count(tmp_path: Path, redis_server):  # type: ignore[no-untyped-def]
    """The receiver's database has no tables yet (as before `db upgrade`): refusals are still
    answered 401 at once; their counts wait in memory and are written once the table exists."""
    url = f"sqlite:///{tmp_path / 'unmigrated.db'}"
    engine = make_engine(url)
    settings = make_settings(engine, redis_server.url, tmp_path)
    services = Services(
        settings=settings,
        engine=engine,
        keyring=Keyring.parse(TEST_KEYS),
        providers=build_providers(settings),
    )
    client = create_app(services=services).test_client()
    started = time.monotonic()
    for _ in range(5):
        assert refused_contiguity(client).status_code == 401
    assert time.monotonic() - started < 2.0
    time.sleep(1.5)  # the background thread tried to write them, and failed
    wait_until(lambda: services.refusals.pending() == 5)  # kept (not mid-way through a retry)
    upgrade(engine)
    wait_until(lambda: counts(engine) == {("contiguity", "signature_mismatch"): 5})
    assert services.refusals.pending() == 0
    services.close()


def wait_until(condition, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def test_buckets_older_than_a_week_are_deleted(engine) -> None:  # type: ignore[no-untyped-def]
    old = RefusalLedger(engine, clock=lambda: datetime.now(UTC) - timedelta(days=8))
    old.record("idenfy", "signature_mismatch")
    assert old.flush() and counts(engine) == {("idenfy", "signature_mismatch"): 1}
    new = RefusalLedger(engine)
    new.record("idenfy", "unknown_notification")
    assert new.flush()
    assert counts(engine) == {("idenfy", "unknown_notification"): 1}
