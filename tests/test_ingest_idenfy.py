"""iDenfy deliveries through HTTP: `Idenfy-Signature: hex(HMAC-SHA256(key, raw body))`.

Signed with tests/support/signing.py (independent of receiver/signatures.py).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from app import create_app
from receiver.store.events import open_payload
from receiver.store.models import InboundEvent, OutboxEntry
from tests.conftest import provider_settings
from tests.support.signing import IDENFY_SECRET, idenfy_result, idenfy_signature

URL = "/webhooks/idenfy"
NOTIFICATIONS = ("auto-finished", "manual-finished", "resubmitted", "cancelled", "expired")
OLD_SECRET = "idenfy-previous-signing-key"


def post(
    client,
    body: bytes,
    signature: str | None,
    *,
    url: str = URL,  # type: ignore[no-untyped-def]
    content_type: str = "application/json",
):
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers["Idenfy-Signature"] = signature
    return client.post(url, data=body, headers=headers)


def events(engine) -> list[InboundEvent]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return list(db.execute(select(InboundEvent).order_by(InboundEvent.id)).scalars())


def count_outbox(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()


def test_signed_result_is_accepted_and_stored_once(client, engine, services):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED", "scan-accept-1", client_id="user-idf-1")
    answer = post(client, body, idenfy_signature(body))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["status"] == "accepted"
    event_id = answer.get_json()["event_id"]
    again = post(client, body, idenfy_signature(body))
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate", "event_id": event_id}
    [event] = events(engine)
    assert event.id == event_id
    assert (event.provider, event.kind, event.state) == ("idenfy", "webhook", "received")
    assert (event.session_id, event.user_ref, event.notification) == (
        "scan-accept-1",
        "user-idf-1",
        None,
    )
    assert open_payload(event, keyring=services.keyring)["body"].encode("latin-1") == body
    assert count_outbox(engine) == 1


@pytest.mark.parametrize("notification", NOTIFICATIONS)
def test_every_notification_url_accepts_a_signed_result(client, engine, notification):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED", f"scan-{notification}")
    answer = post(client, body, idenfy_signature(body), url=f"{URL}/{notification}")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["status"] == "accepted"
    [event] = events(engine)
    assert event.notification == notification
    assert event.session_id == f"scan-{notification}"
    again = post(client, body, idenfy_signature(body), url=f"{URL}/{notification}")
    assert again.get_json() == {"status": "duplicate", "event_id": event.id}
    assert len(events(engine)) == 1


@pytest.mark.parametrize("notification", ["AUTO-FINISHED", "auto_finished", "x" * 41, "1"])
def test_malformed_notification_is_401_and_nothing_stored(client, engine, notification):  # type: ignore[no-untyped-def]
    # A segment that cannot be a notification name is refused in authenticate(): 401, not 404.
    body = idenfy_result("APPROVED", "scan-unknown-notification")
    answer = post(client, body, idenfy_signature(body), url=f"{URL}/{notification}")
    assert answer.status_code == 401
    assert answer.get_json() == {"error": "authentication failed"}
    assert events(engine) == []


@pytest.mark.parametrize("notification", ["approved", "identification-expired", "reviewing"])
def test_undocumented_notification_is_kept_for_a_person_and_counted(client, engine, notification):  # type: ignore[no-untyped-def]
    """A signed delivery to a notification iDenfy does not document: stored raw, quarantined
    (never read as a verdict, though its overall says APPROVED), and counted."""
    body = idenfy_result("APPROVED", "scan-unknown-notification")
    before = unknown_values("idenfy", "notification")
    answer = post(client, body, idenfy_signature(body), url=f"{URL}/{notification}")
    assert answer.status_code == 202
    assert answer.get_json()["status"] == "quarantined"
    [event] = events(engine)
    assert event.state == "quarantined" and "notification" in (event.parse_error or "")
    assert unknown_values("idenfy", "notification") == before + 1
    unsigned = post(client, body, "00" * 32, url=f"{URL}/{notification}")
    assert unsigned.status_code == 401


def unknown_values(provider: str, field: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "verihook_unknown_provider_values_total", {"provider": provider, "field": field}
    )
    return value or 0.0


def test_tampered_body_is_401(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("DENIED", "scan-tamper")
    signature = idenfy_signature(body)
    answer = post(client, body.replace(b"DENIED", b"APPROVED"), signature)
    assert answer.status_code == 401
    assert events(engine) == []


def test_wrong_secret_is_401(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED", "scan-wrong-secret")
    assert post(client, body, idenfy_signature(body, secret="not-the-key")).status_code == 401
    assert events(engine) == []


def test_missing_signature_header_is_401(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED", "scan-missing")
    assert post(client, body, None).status_code == 401
    assert events(engine) == []


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: "",  # empty
        lambda s: "   ",  # blank
        lambda s: s[:-1],  # truncated hex
        lambda s: s + "0",  # too long
        lambda s: "sha256=" + s,  # a prefix nobody documented
        lambda s: s[:-1] + "g",  # not hex
        lambda s: s[::-1],  # wrong digest
        lambda s: "t=1,v1=" + s,  # another provider's scheme
    ],
)
def test_garbled_signature_is_401(client, engine, mangle):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED", "scan-garbled")
    assert post(client, body, mangle(idenfy_signature(body))).status_code == 401
    assert events(engine) == []


def test_uppercase_and_padded_hex_signature_is_accepted(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED", "scan-upper")
    answer = post(client, body, " " + idenfy_signature(body).upper() + " ")
    assert answer.status_code == 200
    assert len(events(engine)) == 1


def test_signature_over_the_notification_path_does_not_matter(client, engine):  # type: ignore[no-untyped-def]
    """The HMAC is over the body only: the same signed body on two URLs is one event."""
    body = idenfy_result("APPROVED", "scan-two-urls")
    first = post(client, body, idenfy_signature(body), url=f"{URL}/auto-finished")
    second = post(client, body, idenfy_signature(body))
    assert first.get_json()["status"] == "accepted"
    assert second.get_json() == {"status": "duplicate", "event_id": first.get_json()["event_id"]}
    assert len(events(engine)) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"[]",
        b"{}",
        b'{"scanRef":"scan-x","status":"APPROVED"}',  # status not an object
        b'{"scanRef":"scan-x","status":{}}',  # no overall
        b'{"scanRef":"scan-x","status":{"overall":"TELEPORTED"}}',  # unknown overall
        b'{"status":{"overall":"APPROVED"}}',  # no scanRef
    ],
)
def test_authentic_garbage_is_quarantined(client, engine, body):  # type: ignore[no-untyped-def]
    answer = post(client, body, idenfy_signature(body))
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["status"] == "quarantined"
    [event] = events(engine)
    assert event.id == answer.get_json()["event_id"]
    assert event.state == "quarantined"
    assert event.parse_error
    assert count_outbox(engine) == 0
    again = post(client, body, idenfy_signature(body))
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate", "event_id": event.id}


def test_wrong_content_type_is_415(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED", "scan-ct")
    assert post(client, body, idenfy_signature(body), content_type="text/plain").status_code == 415
    assert events(engine) == []


def test_rotation_accepts_both_configured_secrets_and_refuses_a_third(make_services, engine):  # type: ignore[no-untyped-def]
    providers = provider_settings()
    providers["idenfy"]["webhook_secret"] = f"{IDENFY_SECRET}, {OLD_SECRET}"
    client = create_app(services=make_services(providers=providers)).test_client()
    for n, secret in enumerate((IDENFY_SECRET, OLD_SECRET)):
        body = idenfy_result("APPROVED", f"scan-rotate-{n}")
        answer = post(client, body, idenfy_signature(body, secret=secret))
        assert answer.status_code == 200, secret
    body = idenfy_result("APPROVED", "scan-rotate-third")
    assert post(client, body, idenfy_signature(body, secret="a-third-key")).status_code == 401
    # a comma-joined key is not a key
    joined = f"{IDENFY_SECRET}, {OLD_SECRET}"
    assert post(client, body, idenfy_signature(body, secret=joined)).status_code == 401
    assert len(events(engine)) == 2


def test_manual_finished_body_is_stored_with_its_notification(client, engine, services):  # type: ignore[no-untyped-def]
    body = idenfy_result("DENIED", "scan-manual", manual=True)
    answer = post(client, body, idenfy_signature(body), url=f"{URL}/manual-finished")
    assert answer.status_code == 200
    [event] = events(engine)
    record = open_payload(event, keyring=services.keyring)
    assert record["notification"] == "manual-finished"
    assert json.loads(record["body"])["scanRef"] == "scan-manual"
    # no secret header survives into the stored record except the signature itself
    assert all(k.lower() not in ("authorization", "cookie") for k, _ in record["headers"])
