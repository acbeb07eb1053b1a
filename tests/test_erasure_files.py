"""After an erasure, the person's ref is in none of SQLite's files (issue 18 item 7).

`forget_user` replaces the ref in the tables, but SQLite keeps the pages it rewrote in the
write-ahead log (`<db>-wal`) until a checkpoint copies them back, and the log file keeps old
frames until it is overwritten or truncated; a row rewritten in place can also leave its old
bytes in the page's free space. After erasure the log is checkpointed and truncated
(`PRAGMA wal_checkpoint(TRUNCATE)`) and every connection runs with `PRAGMA secure_delete=ON`
(freed space zeroed; some SQLite builds have it off by default). The files are read as bytes.
A retention purge does the same for the ciphertext of the raw deliveries it drops.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from app import cli, create_app
from receiver.services import Services
from receiver.store.models import utcnow
from reconciler.privacy.lifecycle import purge_expired
from tests.support import signing
from tests.support.flow import API_TOKENS, OPERATOR, apply_all, send_contiguity, send_idvapi
from tests.support.processes import settings_env

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def database_files(engine: Engine) -> dict[str, bytes]:
    """The bytes of the database, its write-ahead log and its shared-memory index."""
    database = Path(engine.url.database or "")
    found = {}
    for suffix in ("", "-wal", "-shm"):
        path = database.with_name(database.name + suffix)
        found[path.name] = path.read_bytes() if path.exists() else b""
    return found


def holding(engine: Engine, value: str) -> list[str]:
    """The files in which `value` occurs (UTF-8, as SQLite stores text here)."""
    return [name for name, data in database_files(engine).items() if value.encode() in data]


@pytest.fixture
def noted(make_services) -> Services:  # type: ignore[no-untyped-def]
    """Services that also store notifications for the backend (they hold the ref too)."""
    services = make_services(
        api_tokens=API_TOKENS,
        notify_url="http://127.0.0.1:9/unreachable",
        notify_secret="whsec_" + "A" * 43,
    )
    services.redis.flushdb()
    return services


def a_person_with_history(services: Services) -> str:
    """Deliveries and their application for a fresh ref (and for someone else); the ref."""
    ref = f"ref-{uuid.uuid4().hex}"
    client = create_app(services=services).test_client()
    for kind in ("processing", "verified"):
        body = signing.contiguity_event(kind, f"vs_{ref[-8:]}", user_ref=ref)
        assert send_contiguity(client, body).status_code == 200
    assert send_idvapi(client, signing.idvapi_result("verified", ref)).status_code == 200
    other = signing.contiguity_event("verified", "vs_other", user_ref="someone-else")
    assert send_contiguity(client, other).status_code == 200
    apply_all(services)
    assert holding(services.engine, ref)  # the check can see it where it is
    return ref


def test_users_forget_leaves_the_ref_in_no_database_file(noted: Services) -> None:
    ref = a_person_with_history(noted)
    env = {k: v for k, v in settings_env(noted.settings).items() if k.startswith("VERIHOOK_")}
    forgot = CliRunner().invoke(cli, ["users", "forget", ref, "--yes"], env=env)
    assert forgot.exit_code == 0, forgot.output
    assert holding(noted.engine, ref) == []
    assert holding(noted.engine, "someone-else")  # the others' data is still there
    with noted.engine.connect() as connection:
        assert connection.execute(text("PRAGMA secure_delete")).scalar_one() == 1


def test_erasure_through_the_api_leaves_the_ref_in_no_database_file(noted: Services) -> None:
    ref = a_person_with_history(noted)
    client = create_app(services=noted).test_client()
    answer = client.post(f"/api/v1/users/{ref}/forget", json={"confirm": True}, headers=OPERATOR)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert holding(noted.engine, ref) == []


def test_a_purge_leaves_no_purged_ciphertext_in_the_database_files(noted: Services) -> None:
    """The raw deliveries are sealed, but a purge promises they are gone: their ciphertext too."""
    a_person_with_history(noted)
    with noted.engine.connect() as connection:
        blobs = [
            bytes(blob)
            for blob in connection.execute(
                text("SELECT payload_blob FROM inbound_events WHERE payload_blob IS NOT NULL")
            ).scalars()
        ]
    assert len(blobs) == 4
    purged = purge_expired(noted, days=0, now=utcnow() + timedelta(seconds=1))
    assert purged.event_payloads == 4
    files = database_files(noted.engine)
    assert [name for name, data in files.items() for blob in blobs if blob[-32:] in data] == []
