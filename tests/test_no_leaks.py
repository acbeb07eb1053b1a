"""Nothing secret reaches a log line or a plaintext database column.

Every provider's deliveries (accepted, refused, quarantined, too large), the idvapi path token,
each signing secret and the docverify callback state go through the receiver and the worker with
the root logger at DEBUG. Then the logs, and the raw database (SQLite file bytes and every column
of every table; PostgreSQL every column of every table), are searched for them.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, select
from sqlmodel import Session

from receiver.logs import JsonFormatter
from receiver.providers.docverify import state_digest
from receiver.store.models import VerificationSession
from reconciler.drain import drain_ready_events
from tests.support.leaks import read_from_another_process
from tests.support.signing import (
    CONTIGUITY_SECRET,
    IDENFY_SECRET,
    IDVAPI_TOKEN,
    contiguity_event,
    contiguity_header,
    idenfy_result,
    idenfy_signature,
    idvapi_result,
)

PII = ["QUIXOTEPII", "PII998877", "1985-04-12", "ZELDA"]
"""Fake PII in tests.support.signing.idenfy_result."""

BODY_SNIPPETS = [
    "docFirstName",
    "docLastName",
    "s3.example.invalid/front.png",
    "storage.example.invalid/selfie.mp4",
    "storage.example.invalid/id.jpg",
    "CTGMETADATAMARK",
    "faceComparison",
    "similarityScore",
]
"""Raw body fragments that only ever exist inside a delivery body."""

WRONG_CONTIGUITY_SECRET = "whsec_wrong_secret_LEAKCHECK1"
WRONG_IDENFY_SECRET = "idenfy-wrong-key-LEAKCHECK2"
WRONG_IDVAPI_TOKEN = "wrong-path-token-LEAKCHECK3"
DOCVERIFY_STATE = "docverify-state-LEAKCHECK4"
WRONG_DOCVERIFY_STATE = "docverify-wrong-state-LEAKCHECK5"

SECRETS = [
    CONTIGUITY_SECRET,
    IDENFY_SECRET,
    IDVAPI_TOKEN,
    WRONG_CONTIGUITY_SECRET,
    WRONG_IDENFY_SECRET,
    WRONG_IDVAPI_TOKEN,
    DOCVERIFY_STATE,
    WRONG_DOCVERIFY_STATE,
]


class Capture(logging.Handler):
    """Keeps every record, formatted both plainly (with tracebacks) and as the JSON log line."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []
        self.plain = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
        self.json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.plain.format(record))
        self.texts.append(self.json.format(record))
        # anything attached to the record could reach some other handler or formatter
        self.texts.append(repr(record.args))
        self.texts.extend(
            repr(v)
            for k, v in vars(record).items()
            if k not in ("args", "msg", "exc_info", "exc_text", "stack_info")
        )


@pytest.fixture
def captured(caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    handler = Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield caplog, handler
    finally:
        root.removeHandler(handler)


def run_everything(client, engine: Engine, services, tmp_path: Path) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Send every kind of delivery and drain; return the bodies sent."""
    json_type = {"Content-Type": "application/json"}
    bodies: list[bytes] = []

    def post(url: str, body: bytes, headers: dict[str, str], expected: int) -> None:
        bodies.append(body)
        answer = client.post(url, data=body, headers={**json_type, **headers})
        assert answer.status_code == expected, (url, answer.status_code, answer.get_json())

    # contiguity: accepted, wrong secret, quarantined, too large
    ok = contiguity_event(
        "verified", "vs_leak1", user_ref="user-leak-1", metadata={"note": "CTGMETADATAMARK"}
    )
    post("/webhooks/contiguity", ok, {"Contiguity-Signature": contiguity_header(ok)}, 200)
    bad = contiguity_event("verified", "vs_leak2", metadata={"note": "CTGMETADATAMARK"})
    post(
        "/webhooks/contiguity",
        bad,
        {"Contiguity-Signature": contiguity_header(bad, secret=WRONG_CONTIGUITY_SECRET)},
        401,
    )
    garbage = b'{"note": "CTGMETADATAMARK", "docLastName": "QUIXOTEPII"'
    post("/webhooks/contiguity", garbage, {"Contiguity-Signature": contiguity_header(garbage)}, 202)

    # idenfy: accepted on both URL forms, manual, wrong key, unknown notification, quarantined
    pii = idenfy_result("APPROVED", "scan-leak-1", client_id="user-leak-2")
    post("/webhooks/idenfy", pii, {"Idenfy-Signature": idenfy_signature(pii)}, 200)
    manual = idenfy_result("DENIED", "scan-leak-2", client_id="user-leak-3", manual=True)
    post(
        "/webhooks/idenfy/manual-finished",
        manual,
        {"Idenfy-Signature": idenfy_signature(manual)},
        200,
    )
    wrong = idenfy_result("APPROVED", "scan-leak-3")
    post(
        "/webhooks/idenfy",
        wrong,
        {"Idenfy-Signature": idenfy_signature(wrong, secret=WRONG_IDENFY_SECRET)},
        401,
    )
    post(
        "/webhooks/idenfy/Not_A_Notification",
        wrong,
        {"Idenfy-Signature": idenfy_signature(wrong)},
        401,
    )
    strange = idenfy_result("TELEPORTED", "scan-leak-4")  # authentic, not understood
    post("/webhooks/idenfy", strange, {"Idenfy-Signature": idenfy_signature(strange)}, 202)
    unsigned = idenfy_result("APPROVED", "scan-leak-5")
    post("/webhooks/idenfy", unsigned, {}, 401)
    post("/webhooks/idenfy", unsigned, {"Idenfy-Signature": "zz" + idenfy_signature(unsigned)}, 401)

    # idvapi: accepted, wrong token, bad check_id, quarantined
    post(f"/webhooks/idvapi/{IDVAPI_TOKEN}", idvapi_result("verified", "user-leak-4"), {}, 200)
    post(f"/webhooks/idvapi/{WRONG_IDVAPI_TOKEN}", idvapi_result("verified"), {}, 401)
    post(
        f"/webhooks/idvapi/{IDVAPI_TOKEN}",
        idvapi_result("verified", check_id="QUIXOTEPII-not-a-uuid"),
        {},
        401,
    )
    post(f"/webhooks/idvapi/{IDVAPI_TOKEN}", b'{"docNumber": "PII998877"}', {}, 202)

    # wrong content type, body over the limit
    post(
        "/webhooks/idenfy",
        pii,
        {"Content-Type": "text/plain", "Idenfy-Signature": idenfy_signature(pii)},
        415,
    )
    big = pii + b" " * (1024 * 1024)
    post("/webhooks/idenfy", big, {"Idenfy-Signature": idenfy_signature(big)}, 413)

    # docverify: right and wrong state; nevis
    with Session(engine) as db:
        db.add(
            VerificationSession(
                provider="docverify",
                session_id="dv-leak",
                user_ref="user-leak-5",
                state_digest=state_digest(DOCVERIFY_STATE),
            )
        )
        db.commit()
    assert (
        client.get(f"/callbacks/docverify?sessionId=dv-leak&state={DOCVERIFY_STATE}").status_code
        == 302
    )
    assert (
        client.get(
            f"/callbacks/docverify?sessionId=dv-leak&state={WRONG_DOCVERIFY_STATE}"
        ).status_code
        == 302  # sent on, nothing stored
    )
    assert client.get("/callbacks/nevis?sessionId=123456789").status_code == 302

    stats = drain_ready_events(services)
    assert stats.applied + stats.superseded >= 6, stats
    return bodies


def distinctive_substrings(body: bytes) -> list[str]:
    """Long runs of a body's text that a log line could only hold by copying the body."""
    text = body.decode("utf-8", "replace")
    return (
        [text[i : i + 48] for i in range(0, max(len(text) - 48, 1), 48)]
        if len(text) >= 48
        else [text]
    )


def test_no_pii_body_or_secret_in_any_log_line(client, engine, services, captured, tmp_path):  # type: ignore[no-untyped-def]
    caplog, handler = captured
    bodies = run_everything(client, engine, services, tmp_path)
    logs = "\n".join(handler.texts + [caplog.text] + [r.getMessage() for r in caplog.records])
    assert handler.texts, "the capture saw nothing: the check would be vacuous"
    assert "unauthenticated" in logs and "accepted" in logs  # the receiver logs its outcomes
    for needle in PII + BODY_SNIPPETS + SECRETS:
        assert needle not in logs, f"{needle!r} appears in the logs"
    for body in bodies:
        for part in distinctive_substrings(body[:4096]):
            assert part not in logs, f"a body fragment appears in the logs: {part[:30]!r}…"


def all_values(engine: Engine) -> list[tuple[str, str, object]]:
    """(table, column, value) for every column of every row of every table."""
    metadata = MetaData()
    metadata.reflect(engine)
    out: list[tuple[str, str, object]] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                out.extend((table.name, column, value) for column, value in row.items())
    return out


def sqlite_file_bytes(engine: Engine) -> bytes:
    database = Path(engine.url.database or "")
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(str(database) + suffix)
        if path.exists():
            data += read_from_another_process(path)
    return data


def test_no_pii_or_secret_in_the_raw_database(client, engine, services, tmp_path):  # type: ignore[no-untyped-def]
    run_everything(client, engine, services, tmp_path)
    needles = PII + BODY_SNIPPETS + SECRETS
    values = all_values(engine)
    tables = {table for table, _, _ in values}
    assert {"inbound_events", "observations", "verification_sessions"} <= tables
    for table, column, value in values:
        if value is None:
            continue
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            for needle in needles:
                assert needle.encode() not in raw, f"{needle!r} in {table}.{column} (bytes)"
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            for needle in needles:
                assert needle not in text, f"{needle!r} in {table}.{column}"
    if engine.dialect.name == "sqlite":
        raw = sqlite_file_bytes(engine)  # the main file and the WAL (recent pages live there)
        assert b"inbound_events" in raw and len(raw) > 4096
        for needle in needles:
            assert needle.encode() not in raw, f"{needle!r} in the SQLite file"


def test_quarantined_body_values_are_not_copied_into_plaintext_parse_error(client, engine):  # type: ignore[no-untyped-def]
    """An authentic body that is not understood is stored encrypted; its parse_error column is
    plaintext, so it must not quote the body. Today it does: the parsers put the offending value
    into the message (`unknown iDenfy overall status 'QUIXOTEPII'`, likewise Contiguity's event
    type and idvapi's verification_result.status), and ingest stores that message as is.
    """
    misplaced = idenfy_result("QUIXOTEPII", "scan-leak-6")  # a name where the status belongs
    answer = client.post(
        "/webhooks/idenfy",
        data=misplaced,
        headers={
            "Content-Type": "application/json",
            "Idenfy-Signature": idenfy_signature(misplaced),
        },
    )
    assert answer.status_code == 202
    payload = json.loads(idvapi_result("verified"))
    payload["verification_result"]["status"] = "PII998877"
    answer = client.post(
        f"/webhooks/idvapi/{IDVAPI_TOKEN}",
        data=json.dumps(payload),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 202
    leaks = [
        (table, column)
        for table, column, value in all_values(engine)
        if isinstance(value, str) and any(p in value for p in PII)
    ]
    assert leaks == []


def test_raw_database_check_would_see_a_plaintext_leak(engine):  # type: ignore[no-untyped-def]
    """The search itself works: a plaintext value written on purpose is found."""
    marker = f"PLAINTEXT-{uuid.uuid4().hex}"
    with Session(engine) as db:
        db.add(VerificationSession(provider="nevis", session_id=marker))
        db.commit()
    assert any(marker in str(value) for _, _, value in all_values(engine))
    if engine.dialect.name == "sqlite":
        assert marker.encode() in sqlite_file_bytes(engine)


def test_log_capture_would_see_a_leak(captured):  # type: ignore[no-untyped-def]
    """The log search itself works, including through args and extra fields."""
    _, handler = captured
    logging.getLogger("receiver.anything").debug("value %s", "MARKER-ARGS")
    logging.getLogger("reconciler.anything").info("x", extra={"provider": "MARKER-EXTRA"})
    try:
        raise ValueError("MARKER-EXC")
    except ValueError:
        logging.getLogger("app").exception("failed")
    logs = "\n".join(handler.texts)
    assert "MARKER-ARGS" in logs and "MARKER-EXTRA" in logs and "MARKER-EXC" in logs
