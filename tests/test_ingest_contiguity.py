"""Contiguity deliveries through HTTP: signed with the stripe package's independent signer."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlmodel import Session

from receiver.store.models import InboundEvent, OutboxEntry
from tests.support.signing import (
    CONTIGUITY_OLD_SECRET,
    CONTIGUITY_SECRET,
    contiguity_event,
    contiguity_header,
)

URL = "/webhooks/contiguity"


def post(client, body: bytes, header: str | None, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
    headers = {"Content-Type": content_type}
    if header is not None:
        headers["Contiguity-Signature"] = header
    return client.post(URL, data=body, headers=headers)


def count_events(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return db.execute(select(func.count()).select_from(InboundEvent)).scalar_one()


def test_signed_delivery_is_accepted_and_stored_once(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = post(client, body, contiguity_header(body))
    assert answer.status_code == 200
    assert answer.get_json()["status"] == "accepted"
    again = post(client, body, contiguity_header(body))
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate", "event_id": answer.get_json()["event_id"]}
    assert count_events(engine) == 1
    with Session(engine) as db:
        assert db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one() == 1


def test_tampered_body_is_refused_and_nothing_stored(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    header = contiguity_header(body)
    answer = post(client, body.replace(b"verified", b"failed"), header)
    assert answer.status_code == 401
    assert count_events(engine) == 0


def test_stale_and_future_timestamps_are_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    for skew in (-301, 301):
        answer = post(client, body, contiguity_header(body, timestamp=int(time.time()) + skew))
        assert answer.status_code == 401
    assert count_events(engine) == 0


def test_rotation_accepts_old_and_new_secret_while_both_configured(make_services, engine):  # type: ignore[no-untyped-def]
    from app import create_app
    from tests.conftest import provider_settings

    providers = provider_settings()
    providers["contiguity"]["webhook_secret"] = f"{CONTIGUITY_SECRET},{CONTIGUITY_OLD_SECRET}"
    client = create_app(services=make_services(providers=providers)).test_client()
    for secret in (CONTIGUITY_SECRET, CONTIGUITY_OLD_SECRET):
        body = contiguity_event("processing")
        assert post(client, body, contiguity_header(body, secret=secret)).status_code == 200
    body = contiguity_event("processing")
    assert post(client, body, contiguity_header(body, secret="whsec_other")).status_code == 401
    assert count_events(engine) == 2


# --- added: header edge cases, wrong secret, authentic garbage, routing ---------------------

import json  # noqa: E402

import pytest  # noqa: E402

from receiver.store.events import open_payload  # noqa: E402


def only_event(engine) -> InboundEvent:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        rows = db.execute(select(InboundEvent)).scalars().all()
    assert len(rows) == 1, rows
    return rows[0]


def count_outbox(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()


def test_accepted_event_keeps_the_exact_raw_bytes_encrypted(client, engine, services):  # type: ignore[no-untyped-def]
    # odd spacing and key order: the stored delivery must be byte-for-byte what was signed
    body = (
        b'{"type": "identity.verification_session.verified",  "id":"evt_raw1",'
        b'"timestamp":1700000000,"api_version":"v2025.9.7",'
        b'"data":{"id":"vs_raw1","status":"verified","client_reference_id":"u-raw"}}'
    )
    answer = post(client, body, contiguity_header(body))
    assert answer.status_code == 200, answer.get_json()
    event = only_event(engine)
    assert event.id == answer.get_json()["event_id"]
    assert (event.provider, event.kind, event.state) == ("contiguity", "webhook", "received")
    assert (event.session_id, event.user_ref) == ("vs_raw1", "u-raw")
    assert body not in event.payload_blob
    record = open_payload(event, keyring=services.keyring)
    assert record["body"].encode("latin-1") == body
    assert count_outbox(engine) == 1


@pytest.mark.parametrize(
    "header",
    [
        "",  # empty
        "   ",  # blank
        "garbage",  # no t=, no v1=
        "t=,v1=",  # empty values
        "v1=" + "a" * 64,  # no timestamp
        "t=abc,v1=" + "a" * 64,  # non-numeric timestamp
        "t=1700000000.5,v1=" + "a" * 64,  # fractional timestamp
        "t=NOW",  # no signature at all
    ],
)
def test_missing_empty_or_garbled_signature_header_is_401(client, engine, header):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = post(client, body, header)
    assert answer.status_code == 401
    assert answer.get_json() == {"error": "authentication failed"}
    assert count_events(engine) == 0


def test_missing_signature_header_is_401(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    assert post(client, body, None).status_code == 401
    assert count_events(engine) == 0


def test_garbled_variants_of_a_valid_signature_are_401(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    good = contiguity_header(body)
    t_part, v1_part = good.split(",")
    digest = v1_part.removeprefix("v1=")
    for header in (
        f"{t_part},v1={digest[:-1]}",  # truncated hex
        f"{t_part},v1={digest}0",  # one hex digit too many
        f"{t_part},v0={digest}",  # right digest under another scheme
        f"{t_part},v1={digest[::-1]}",  # wrong digest
        f"{t_part},{t_part},v1={digest}",  # two timestamps
        f"t={int(t_part[2:]) + 1},v1={digest}",  # digest for another timestamp
    ):
        assert post(client, body, header).status_code == 401, header
    assert count_events(engine) == 0


def test_wrong_secret_is_401(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = post(client, body, contiguity_header(body, secret="whsec_not_the_right_one"))
    assert answer.status_code == 401
    assert count_events(engine) == 0


def test_repeated_signature_header_is_401(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    good = contiguity_header(body)
    answer = client.post(
        URL,
        data=body,
        headers=[
            ("Content-Type", "application/json"),
            ("Contiguity-Signature", good),
            ("Contiguity-Signature", good),
        ],
    )
    assert answer.status_code == 401
    assert count_events(engine) == 0


def test_several_v1_signatures_accepted_when_one_matches(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    good = contiguity_header(body)
    t_part, v1_part = good.split(",")
    header = f"{t_part},v1={'0' * 64},{v1_part},v0={'f' * 64}"
    assert post(client, body, header).status_code == 200
    assert count_events(engine) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"this is not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"{}",
        b'{"id":"evt_shape1","type":"identity.verification_session.verified"}',  # no timestamp
        b'{"id":"evt_shape2","type":"identity.verification_session.verified",'
        b'"timestamp":1700000000,"data":"not an object"}',
        b'{"id":"evt_shape3","type":"identity.verification_session.exploded",'
        b'"timestamp":1700000000,"data":{"id":"vs_1"}}',  # unknown type
        b'{"id":"evt_shape4","type":"identity.verification_session.verified",'
        b'"timestamp":1700000000,"data":{}}',  # no session id
        b"\xff\xfe not utf-8",
        b'{"id":"evt_shape5","type":"identity.verification_session.verified",'
        b'"timestamp":1700000000,"data":{"id":"vs_1","client_reference_id":"'
        + b"u" * 129
        + b'"}}',  # a user ref too long to store: never applied without its user
    ],
)
def test_authentic_garbage_is_quarantined(client, engine, body):  # type: ignore[no-untyped-def]
    header = stripe_style_header_over_bytes(body)
    answer = post(client, body, header)
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["status"] == "quarantined"
    event = only_event(engine)
    assert event.id == answer.get_json()["event_id"]
    assert event.state == "quarantined"
    assert event.parse_error
    assert count_outbox(engine) == 0
    again = post(client, body, stripe_style_header_over_bytes(body))
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate", "event_id": event.id}
    assert count_events(engine) == 1


def stripe_style_header_over_bytes(body: bytes) -> str:
    """`t=,v1=` over raw bytes (the stripe helper needs text; this covers non-UTF-8 bodies)."""
    import hashlib
    import hmac

    t = int(time.time())
    digest = hmac.new(
        CONTIGUITY_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return f"t={t},v1={digest}"


def test_duplicate_event_id_with_different_body_is_a_duplicate(client, engine):  # type: ignore[no-untyped-def]
    first = contiguity_event("processing", event_id="evt_same_id")
    second = json.loads(first)
    second["data"]["status"] = "verified"
    second_body = json.dumps(second).encode()
    a = post(client, first, contiguity_header(first))
    b = post(client, second_body, contiguity_header(second_body))
    assert a.get_json()["status"] == "accepted"
    assert b.status_code == 200
    assert b.get_json() == {"status": "duplicate", "event_id": a.get_json()["event_id"]}
    assert count_events(engine) == 1


def test_extra_path_segment_is_404(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = client.post(
        URL + "/extra",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Contiguity-Signature": contiguity_header(body),
        },
    )
    assert answer.status_code == 404
    assert count_events(engine) == 0


def test_json_with_charset_parameter_is_accepted(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = post(client, body, contiguity_header(body), "application/json; charset=utf-8")
    assert answer.status_code == 200
    assert count_events(engine) == 1


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_wrong_content_type_is_415(client, engine, content_type):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = post(client, body, contiguity_header(body), content_type)
    assert answer.status_code == 415
    assert count_events(engine) == 0


def test_get_on_the_webhook_url_is_not_2xx(client, engine):  # type: ignore[no-untyped-def]
    assert client.get(URL).status_code == 405
    assert count_events(engine) == 0
