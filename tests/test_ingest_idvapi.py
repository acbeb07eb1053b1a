"""idvapi deliveries through HTTP: unsigned webhooks authenticated by a secret URL-path token."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from receiver.store.events import open_payload
from receiver.store.models import InboundEvent, OutboxEntry
from tests.support.signing import IDVAPI_TOKEN, idvapi_result

URL = f"/webhooks/idvapi/{IDVAPI_TOKEN}"
UUIDS = [
    "6b1f0c3e-9a4d-4f2b-8c7e-2d5a9e1b7f40",
    "c0d4e8a2-5b71-4e93-a6f8-13b2c9d7e5a1",
    "8e2a6f14-3c9b-4d57-b1e0-7f4a2c8d6b93",
    "2a7c5e91-8d36-4b0f-9e42-c6f1a3b8d705",
    "f5b9d3a7-1e64-4c28-8a0d-59e7b2c4f631",
    "4d81b6e3-7a2c-4f95-b3e7-0c9a5d2f8e16",
]
"""Fixed check ids for parametrized cases: every pytest-xdist worker must collect the same ids."""


def post(client, body: bytes, url: str = URL, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
    return client.post(
        url,
        data=body,
        headers={"Content-Type": content_type, "User-Agent": "IdentityVerification/1.0"},
    )


def events(engine) -> list[InboundEvent]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return list(db.execute(select(InboundEvent).order_by(InboundEvent.id)).scalars())


def count_outbox(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()


def test_right_token_is_accepted_and_stored_once(client, engine, services):  # type: ignore[no-untyped-def]
    check = str(uuid.uuid4())
    body = idvapi_result("verified", "user-idv-1", check_id=check)
    answer = post(client, body)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["status"] == "accepted"
    again = post(client, body)
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate", "event_id": answer.get_json()["event_id"]}
    [event] = events(engine)
    assert (event.provider, event.state, event.session_id, event.user_ref) == (
        "idvapi",
        "received",
        "user-idv-1",
        "user-idv-1",
    )
    assert check in event.dedupe_key
    assert IDVAPI_TOKEN not in event.dedupe_key
    record = open_payload(event, keyring=services.keyring)
    assert record["body"].encode("latin-1") == body
    # the path token is never part of what is stored
    assert IDVAPI_TOKEN not in json.dumps(record)
    assert count_outbox(engine) == 1


@pytest.mark.parametrize(
    "token",
    [
        "wrong-token",
        IDVAPI_TOKEN[:-1],  # prefix
        IDVAPI_TOKEN + "0",  # extension
        IDVAPI_TOKEN.upper(),  # case
        "é" + IDVAPI_TOKEN[1:],  # non-ASCII
    ],
)
def test_wrong_token_is_401_and_nothing_stored(client, engine, token):  # type: ignore[no-untyped-def]
    body = idvapi_result("verified")
    answer = post(client, body, url=f"/webhooks/idvapi/{token}")
    assert answer.status_code == 401
    assert answer.get_json() == {"error": "authentication failed"}
    assert events(engine) == []


@pytest.mark.parametrize("url", ["/webhooks/idvapi", "/webhooks/idvapi/"])
def test_no_token_segment_is_not_2xx(client, engine, url):  # type: ignore[no-untyped-def]
    answer = post(client, idvapi_result("verified"), url=url)
    assert not 200 <= answer.status_code < 300
    assert answer.status_code in (401, 404, 405, 308)
    assert events(engine) == []


@pytest.mark.parametrize(
    "check_id",
    [
        "uuid-session-id",
        "12345",
        "",
        "0" * 36,
        UUIDS[0][:-1],
        "{" + UUIDS[1] + "}",
        UUIDS[2].replace("-", ""),
        42,
        None,
    ],
)
def test_check_id_not_a_uuid_is_401_and_nothing_stored(client, engine, check_id):  # type: ignore[no-untyped-def]
    payload = json.loads(idvapi_result("verified"))
    payload["check_id"] = check_id
    answer = post(client, json.dumps(payload).encode())
    assert answer.status_code == 401
    assert events(engine) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",  # no check_id
        json.dumps({"check_id": UUIDS[3], "user_identifier": "u"}).encode(),  # no result
        json.dumps(
            {
                "check_id": UUIDS[4],
                "user_identifier": "u",
                "verification_result": {"status": "maybe"},
            }
        ).encode(),  # unknown status
        json.dumps(
            {"check_id": UUIDS[5], "verification_result": {"status": "verified"}}
        ).encode(),  # no user_identifier
    ],
)
def test_authentic_garbage_is_quarantined(client, engine, body):  # type: ignore[no-untyped-def]
    answer = post(client, body)
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["status"] == "quarantined"
    [event] = events(engine)
    assert event.id == answer.get_json()["event_id"]
    assert (event.state, bool(event.parse_error)) == ("quarantined", True)
    assert count_outbox(engine) == 0
    assert post(client, body).get_json() == {"status": "duplicate", "event_id": event.id}
    assert len(events(engine)) == 1


def test_wrong_content_type_is_415(client, engine):  # type: ignore[no-untyped-def]
    answer = post(client, idvapi_result("verified"), content_type="text/plain")
    assert answer.status_code == 415
    assert events(engine) == []


def test_two_checks_for_one_user_are_two_events(client, engine):  # type: ignore[no-untyped-def]
    first = post(client, idvapi_result("rejected", "user-two"))
    second = post(client, idvapi_result("verified", "user-two"))
    assert first.get_json()["status"] == second.get_json()["status"] == "accepted"
    assert len(events(engine)) == 2
