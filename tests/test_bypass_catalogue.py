"""The signature-bypass catalogue: one test per known trick, each through HTTP (test client).

Every refused trick must be answered 401 AND leave no row in inbound_events. The few variants that
must still verify (header-name case, whitespace that is outside what is signed) say so in their
names and justify it. Signatures come from independent signers: the `stripe` package for
Contiguity (tests/support/signing.py), hmac/hashlib for iDenfy and for raw edits of a header.

Some items regroup checks that also live in test_ingest_*.py and test_signatures.py, so that the
catalogue can be read (and run: `pytest tests/test_bypass_catalogue.py`) as one list.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from receiver.store.models import InboundEvent, VerificationSession
from reconciler.drain import drain_ready_events
from tests.support.signing import (
    CONTIGUITY_SECRET,
    IDVAPI_TOKEN,
    contiguity_event,
    contiguity_header,
    idenfy_result,
    idenfy_signature,
    idvapi_result,
)

CONTIGUITY_URL = "/webhooks/contiguity"
IDENFY_URL = "/webhooks/idenfy"
TOLERANCE = 300
JSON = ("Content-Type", "application/json")


# --- helpers --------------------------------------------------------------------------------------


def rows(engine: Engine) -> int:
    """Rows in inbound_events."""
    with Session(engine) as db:
        return db.execute(select(func.count()).select_from(InboundEvent)).scalar_one()


def post(client, url: str, body: bytes, headers: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    """POST raw bytes with exactly these headers (plus the JSON content type)."""
    return client.post(url, data=body, headers=[JSON, *headers])


def contiguity(client, body: bytes, *signature_headers: str, name: str = "Contiguity-Signature"):  # type: ignore[no-untyped-def]
    """POST to Contiguity with each given value as one Contiguity-Signature header."""
    return post(client, CONTIGUITY_URL, body, [(name, value) for value in signature_headers])


def idenfy(
    client, body: bytes, *signatures: str, name: str = "Idenfy-Signature", url: str = IDENFY_URL
):  # type: ignore[no-untyped-def]
    """POST to iDenfy with each given value as one Idenfy-Signature header."""
    return post(client, url, body, [(name, value) for value in signatures])


def assert_refused(answer, engine: Engine, before: int = 0) -> None:  # type: ignore[no-untyped-def]
    """401, the generic message only, and no new row."""
    assert answer.status_code == 401, (answer.status_code, answer.get_data())
    assert answer.get_json() == {"error": "authentication failed"}
    assert rows(engine) == before


def assert_accepted(answer, engine: Engine, before: int = 0) -> None:  # type: ignore[no-untyped-def]
    """200 accepted and exactly one new row."""
    assert answer.status_code == 200, (answer.status_code, answer.get_data())
    assert answer.get_json()["status"] == "accepted"
    assert rows(engine) == before + 1


def now() -> int:
    return int(time.time())


def v1_over(message: bytes, secret: str = CONTIGUITY_SECRET) -> str:
    """hex HMAC-SHA256 over exactly `message` (for hand-built, deliberately wrong headers)."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def split_header(header: str) -> tuple[str, str]:
    """`t=…,v1=…` (as the stripe signer writes it) → (timestamp, hex digest)."""
    t_part, v1_part = header.split(",")
    return t_part.removeprefix("t="), v1_part.removeprefix("v1=")


def flip_one_byte(body: bytes) -> bytes:
    """The body with one byte of a JSON string value changed (still valid JSON, same length)."""
    index = body.index(b"user-1") + len(b"user-")
    return body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]


def reorder_keys(body: bytes) -> bytes:
    """The same JSON object with its top-level keys in reverse order (same meaning)."""
    payload = json.loads(body)
    reordered = json.dumps(dict(reversed(list(payload.items())))).encode()
    assert reordered != body and json.loads(reordered) == payload
    return reordered


# --- Contiguity: timestamp ------------------------------------------------------------------------


def test_contiguity_stale_timestamp_just_outside_the_tolerance_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = contiguity(client, body, contiguity_header(body, timestamp=now() - TOLERANCE - 2))
    assert_refused(answer, engine)


def test_contiguity_future_timestamp_just_outside_the_tolerance_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = contiguity(client, body, contiguity_header(body, timestamp=now() + TOLERANCE + 2))
    assert_refused(answer, engine)


def test_contiguity_timestamp_repeated_with_the_same_value_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    assert_refused(contiguity(client, body, f"t={t},t={t},v1={digest}"), engine)


def test_contiguity_timestamp_repeated_with_another_value_is_refused(client, engine):  # type: ignore[no-untyped-def]
    """Whichever `t` a verifier picked, the other could be the one an attacker controls."""
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    assert_refused(contiguity(client, body, f"t={int(t) + 1},v1={digest},t={t}"), engine)
    assert_refused(contiguity(client, body, f"t={t},v1={digest},t={int(t) + 1}"), engine)


# --- Contiguity: what is signed -------------------------------------------------------------------


def test_contiguity_body_with_one_byte_flipped_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = contiguity(client, flip_one_byte(body), contiguity_header(body))
    assert_refused(answer, engine)


def test_contiguity_body_with_whitespace_added_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    header = contiguity_header(body)
    for changed in (body + b"\n", b" " + body, body.replace(b'", "', b'",  "', 1)):
        assert json.loads(changed) == json.loads(body)  # same meaning, other bytes
        assert_refused(contiguity(client, changed, header), engine)


def test_contiguity_body_with_json_keys_reordered_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = contiguity(client, reorder_keys(body), contiguity_header(body))
    assert_refused(answer, engine)


def test_contiguity_valid_signature_for_another_body_of_the_same_length_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body_a = contiguity_event("verified", "vs_aaaa", event_id="evt_same_length")
    body_b = contiguity_event("canceled", "vs_bbbb", event_id="evt_same_length")
    body_b = body_b.replace(b"canceled", b"verified")  # a different session, same size
    assert len(body_a) == len(body_b) and body_a != body_b
    assert_refused(contiguity(client, body_b, contiguity_header(body_a)), engine)


def test_contiguity_signature_over_the_body_only_without_the_t_prefix_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    assert_refused(contiguity(client, body, f"t={now()},v1={v1_over(body)}"), engine)


def test_contiguity_signature_with_another_secret_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    header = contiguity_header(body, secret="whsec_some_other_endpoints_secret")
    assert_refused(contiguity(client, body, header), engine)


# --- Contiguity: shape of the signature -----------------------------------------------------------


def test_contiguity_empty_signature_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    assert_refused(contiguity(client, body, ""), engine)


def test_contiguity_v0_only_with_the_right_digest_is_refused(client, engine):  # type: ignore[no-untyped-def]
    """Only the v1 scheme counts (as Stripe does): a v0 item is ignored, so nothing verifies."""
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    assert_refused(contiguity(client, body, f"t={t},v0={digest}"), engine)


def test_contiguity_truncated_hex_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    for kept in (63, 32, 8, 1):
        assert_refused(contiguity(client, body, f"t={t},v1={digest[:kept]}"), engine)


def test_contiguity_uppercase_hex_is_refused(client, engine):  # type: ignore[no-untyped-def]
    """Decision: refused. Contiguity signs like Stripe, whose verifier compares the lowercase
    hexdigest exactly; accepting another spelling would add nothing for a real sender and widen
    the set of strings that verify. (The digest is the same, so this is strictness, not a hole.)"""
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    assert_refused(contiguity(client, body, f"t={t},v1={digest.upper()}"), engine)


# --- Contiguity: header-name case -----------------------------------------------------------------


def test_contiguity_lowercase_header_name_still_verifies(client, engine):  # type: ignore[no-untyped-def]
    """HTTP header names are case-insensitive (RFC 9110 §5.1): the right value must pass."""
    body = contiguity_event("verified")
    answer = contiguity(client, body, contiguity_header(body), name="contiguity-signature")
    assert_accepted(answer, engine)


def test_contiguity_uppercase_header_name_still_verifies(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = contiguity(client, body, contiguity_header(body), name="CONTIGUITY-SIGNATURE")
    assert_accepted(answer, engine)


@pytest.mark.parametrize(
    "name",
    [
        "Contiguity-Signature",
        "contiguity-signature",
        "CONTIGUITY-SIGNATURE",
        "cOnTiGuItY-sIgNaTuRe",
    ],
)
def test_contiguity_wrong_value_is_refused_under_any_header_name_case(client, engine, name):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    header = contiguity_header(body, secret="whsec_wrong")
    assert_refused(contiguity(client, body, header, name=name), engine)


# --- Contiguity: whitespace inside the header value -----------------------------------------------
#
# Rule applied: whitespace that only separates items (around `,`, leading/trailing: HTTP's
# optional whitespace, SP and HTAB, which servers strip anyway) changes nothing that is signed,
# so it may pass. Whitespace inside an item (`t= 1`, `v1= …`, inside the hex) is refused: the
# timestamp and the digest must be exactly the decimal digits and the hex that were signed.


def test_contiguity_space_inside_the_timestamp_value_is_refused(client, engine):  # type: ignore[no-untyped-def]
    """`t= 1700…`: not a decimal timestamp as written; Stripe's own int() would accept it, but
    nothing a real sender emits needs it, so it is refused."""
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    for value in (f"t= {t},v1={digest}", f"t =\t{t},v1={digest}", f"t={t[:5]} {t[5:]},v1={digest}"):
        assert_refused(contiguity(client, body, value), engine)


def test_contiguity_timestamp_respelled_with_leading_zeros_is_refused(client, engine):  # type: ignore[no-untyped-def]
    """A genuine header respelled `t=0<t>` (or `+<t>`): the same number, so the same signature
    would verify. The timestamp must be the canonical digits that were signed."""
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    for value in (f"t=0{t},v1={digest}", f"t=000{t},v1={digest}", f"t=+{t},v1={digest}"):
        assert_refused(contiguity(client, body, value), engine)
    assert_accepted(contiguity(client, body, f"t={t},v1={digest}"), engine)


def test_contiguity_space_inside_the_signature_value_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    for value in (
        f"t={t},v1= {digest}",
        f"t={t},v1 ={digest}",
        f"t={t},v1={digest[:32]} {digest[32:]}",
    ):
        assert_refused(contiguity(client, body, value), engine)


def test_contiguity_spaces_around_the_comma_are_accepted(client, engine):  # type: ignore[no-untyped-def]
    """Separators only: `t` and the digest are untouched, so what is signed is unchanged."""
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    assert_accepted(contiguity(client, body, f"t={t} ,  v1={digest}"), engine)


def test_contiguity_trailing_spaces_are_accepted(client, engine):  # type: ignore[no-untyped-def]
    """Trailing OWS is not part of a header value (RFC 9110 §5.5); servers strip it anyway."""
    body = contiguity_event("verified")
    assert_accepted(contiguity(client, body, contiguity_header(body) + "   "), engine)


def test_contiguity_tab_after_the_comma_is_accepted(client, engine):  # type: ignore[no-untyped-def]
    """HTAB is HTTP optional whitespace like SP; the signed `t` and digest are unchanged."""
    body = contiguity_event("verified")
    t, digest = split_header(contiguity_header(body))
    assert_accepted(contiguity(client, body, f"t={t},\tv1={digest}"), engine)


# --- Contiguity: duplicate signature headers ------------------------------------------------------
#
# Under WSGI two header lines with the same name reach the app as ONE value joined with a comma.
# In production the receiver's gunicorn worker keeps the lines of a repeated header apart, so
# Delivery.single_header refuses any repeat (tests/test_repeated_headers.py, over a socket). The
# Flask test client used here joins them without saying so, like werkzeug's server: behind it,
# what protects us is how the joined value parses.


def test_contiguity_two_signature_headers_valid_then_invalid_are_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    valid = contiguity_header(body)
    invalid = contiguity_header(body, secret="whsec_wrong")
    assert_refused(contiguity(client, body, valid, invalid), engine)


def test_contiguity_two_signature_headers_invalid_then_valid_are_refused(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    valid = contiguity_header(body)
    invalid = contiguity_header(body, secret="whsec_wrong")
    assert_refused(contiguity(client, body, invalid, valid), engine)


@pytest.mark.parametrize("genuine_first", [True, False], ids=["genuine-first", "extra-first"])
def test_contiguity_second_signature_header_with_only_a_v1_cannot_make_a_forgery_verify(  # type: ignore[no-untyped-def]
    client, engine, genuine_first
):
    """Two Contiguity-Signature headers, one carrying only a `v1=`, behind a server that joins
    them without saying so (this test client; werkzeug's server): a genuine header plus
    `v1=<other>` arrives as `t=…,v1=<genuine>,v1=<other>`, byte for byte the multi-signature
    header a Stripe-style sender emits while rotating secrets, which must verify when any v1
    matches (test_signatures, test_ingest_contiguity). Nothing here can tell the two apart, and
    nothing is gained: an extra v1 cannot make another body or timestamp verify. So the genuine
    one is accepted, and a forged one stays refused whatever v1 is added to it. Under gunicorn
    (production), whose worker keeps the two lines apart, both are refused
    (tests/test_repeated_headers.py)."""
    body = contiguity_event("verified")
    extra = f"v1={'0' * 64}"

    def ordered(header: str) -> tuple[str, str]:
        return (header, extra) if genuine_first else (extra, header)

    forged = contiguity_header(body, secret="whsec_wrong")
    assert_refused(contiguity(client, body, *ordered(forged)), engine)
    assert_accepted(contiguity(client, body, *ordered(contiguity_header(body))), engine)


# --- Contiguity: replay ---------------------------------------------------------------------------


def test_contiguity_replay_of_an_old_capture_outside_the_tolerance_is_refused(client, engine):  # type: ignore[no-untyped-def]
    """A genuine delivery signed an hour ago, replayed now: refused, never counted as new."""
    body = contiguity_event("verified")
    captured = contiguity_header(body, timestamp=now() - 3600)
    assert_refused(contiguity(client, body, captured), engine)


def test_contiguity_replay_outside_the_tolerance_after_the_original_was_stored_is_refused(
    client, engine
):  # type: ignore[no-untyped-def]
    """The original (fresh) delivery was stored; an old capture of the same event is refused
    (not answered "duplicate": the answer must not depend on what we hold)."""
    body = contiguity_event("verified")
    assert_accepted(contiguity(client, body, contiguity_header(body)), engine)
    old = contiguity_header(body, timestamp=now() - 3600)
    assert_refused(contiguity(client, body, old), engine, before=1)


def test_contiguity_replay_inside_the_tolerance_is_a_duplicate_not_a_new_row(client, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    header = contiguity_header(body)
    first = contiguity(client, body, header)
    assert_accepted(first, engine)
    again = contiguity(client, body, header)
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate", "event_id": first.get_json()["event_id"]}
    assert rows(engine) == 1


# --- iDenfy ---------------------------------------------------------------------------------------


def test_idenfy_body_with_one_byte_flipped_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    assert_refused(idenfy(client, flip_one_byte(body), idenfy_signature(body)), engine)


def test_idenfy_body_with_whitespace_added_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    signature = idenfy_signature(body)
    for changed in (body + b"\n", b" " + body, body.replace(b'", "', b'",  "', 1)):
        assert json.loads(changed) == json.loads(body)
        assert_refused(idenfy(client, changed, signature), engine)


def test_idenfy_body_with_json_keys_reordered_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    assert_refused(idenfy(client, reorder_keys(body), idenfy_signature(body)), engine)


def test_idenfy_valid_signature_for_another_body_of_the_same_length_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body_a = idenfy_result("DENIED", "scan-aaaa")
    body_b = idenfy_result("DENIED", "scan-bbbb").replace(b"DENIED", b"ALLOW!")
    assert len(body_a) == len(body_b) and body_a != body_b
    assert_refused(idenfy(client, body_b, idenfy_signature(body_a)), engine)


def test_idenfy_signature_with_another_secret_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    signature = idenfy_signature(body, secret="another-tenants-signing-key")
    assert_refused(idenfy(client, body, signature), engine)


def test_idenfy_empty_signature_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    assert_refused(idenfy(client, body, ""), engine)


def test_idenfy_truncated_hex_is_refused(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    signature = idenfy_signature(body)
    for kept in (63, 32, 8, 1):
        assert_refused(idenfy(client, body, signature[:kept]), engine)


def test_idenfy_uppercase_hex_is_accepted(client, engine):  # type: ignore[no-untyped-def]
    """Decision: accepted. iDenfy documents a hex HMAC without fixing its case, and both
    spellings denote the same 32 bytes, so nothing about what is signed changes; refusing would
    only risk dropping real deliveries. (test_ingest_idenfy pins the same behaviour.)"""
    body = idenfy_result("APPROVED")
    assert_accepted(idenfy(client, body, idenfy_signature(body).upper()), engine)


def test_idenfy_lowercase_header_name_still_verifies(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    assert_accepted(idenfy(client, body, idenfy_signature(body), name="idenfy-signature"), engine)


def test_idenfy_uppercase_header_name_still_verifies(client, engine):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    assert_accepted(idenfy(client, body, idenfy_signature(body), name="IDENFY-SIGNATURE"), engine)


@pytest.mark.parametrize("name", ["Idenfy-Signature", "idenfy-signature", "IDENFY-SIGNATURE"])
def test_idenfy_wrong_value_is_refused_under_any_header_name_case(client, engine, name):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    assert_refused(idenfy(client, body, idenfy_signature(body, secret="wrong"), name=name), engine)


def test_idenfy_whitespace_inside_the_hex_is_refused(client, engine):  # type: ignore[no-untyped-def]
    """Leading/trailing whitespace is HTTP OWS (accepted, test_ingest_idenfy); inside the digest
    it is not the digest that was signed."""
    body = idenfy_result("APPROVED")
    signature = idenfy_signature(body)
    for value in (f"{signature[:32]} {signature[32:]}", f"{signature[:32]}\t{signature[32:]}"):
        assert_refused(idenfy(client, body, value), engine)


@pytest.mark.parametrize("valid_first", [True, False], ids=["valid-first", "invalid-first"])
def test_idenfy_two_signature_headers_one_valid_one_invalid_are_refused(
    client, engine, valid_first
):  # type: ignore[no-untyped-def]
    body = idenfy_result("APPROVED")
    valid, invalid = idenfy_signature(body), idenfy_signature(body, secret="wrong")
    headers = (valid, invalid) if valid_first else (invalid, valid)
    assert_refused(idenfy(client, body, *headers), engine)


def test_idenfy_signed_empty_body_is_quarantined_and_applies_nothing(client, engine, services):  # type: ignore[no-untyped-def]
    """The HMAC of an empty body made with the real key is authentic: only the key holder can
    make it. Decision, per the README ("authentic … not JSON … stored as quarantined, 202"):
    stored quarantined, never applied, and a replay of it is a duplicate, not a new row. It is
    not a bypass: no session or user can change through it."""
    answer = idenfy(client, b"", idenfy_signature(b""))
    assert answer.status_code == 202, answer.get_data()
    assert answer.get_json()["status"] == "quarantined"
    assert rows(engine) == 1
    again = idenfy(client, b"", idenfy_signature(b""))
    assert again.get_json() == {"status": "duplicate", "event_id": answer.get_json()["event_id"]}
    stats = drain_ready_events(services)
    assert (stats.applied, stats.failed) == (0, 0)
    with Session(engine) as db:
        assert db.execute(select(func.count()).select_from(VerificationSession)).scalar_one() == 0


def test_idenfy_empty_body_signed_with_an_empty_key_is_refused(client, engine):  # type: ignore[no-untyped-def]
    """The classic unconfigured-secret bypass: HMAC("", "") is public knowledge."""
    assert_refused(idenfy(client, b"", idenfy_signature(b"", secret="")), engine)


def test_idenfy_empty_body_with_an_empty_signature_is_refused(client, engine):  # type: ignore[no-untyped-def]
    assert_refused(idenfy(client, b"", ""), engine)


def test_idenfy_replay_is_a_duplicate_not_a_new_row(client, engine):  # type: ignore[no-untyped-def]
    """iDenfy signs no timestamp: a replay at any time is the same content, so a duplicate."""
    body = idenfy_result("APPROVED")
    first = idenfy(client, body, idenfy_signature(body))
    assert_accepted(first, engine)
    again = idenfy(client, body, idenfy_signature(body))
    assert again.get_json() == {"status": "duplicate", "event_id": first.get_json()["event_id"]}
    assert rows(engine) == 1


# --- idvapi: the URL-path token -------------------------------------------------------------------


def idvapi(client, token: str):  # type: ignore[no-untyped-def]
    return post(client, f"/webhooks/idvapi/{token}", idvapi_result("verified"), [])


def test_idvapi_token_prefix_is_refused(client, engine):  # type: ignore[no-untyped-def]
    for kept in (len(IDVAPI_TOKEN) - 1, len(IDVAPI_TOKEN) // 2, 1):
        assert_refused(idvapi(client, IDVAPI_TOKEN[:kept]), engine)


def test_idvapi_token_with_a_suffix_is_refused(client, engine):  # type: ignore[no-untyped-def]
    for suffix in ("0", "x", IDVAPI_TOKEN, "%2e", "=="):
        assert_refused(idvapi(client, IDVAPI_TOKEN + suffix), engine)


def test_idvapi_token_with_a_prefix_added_is_refused(client, engine):  # type: ignore[no-untyped-def]
    for prefix in ("x", "0", "%20"):
        assert_refused(idvapi(client, prefix + IDVAPI_TOKEN), engine)


def test_idvapi_token_in_another_case_is_refused(client, engine):  # type: ignore[no-untyped-def]
    """The token is a secret string, compared byte for byte: case is part of it."""
    for variant in (IDVAPI_TOKEN.upper(), IDVAPI_TOKEN.swapcase(), IDVAPI_TOKEN.capitalize()):
        assert variant != IDVAPI_TOKEN
        assert_refused(idvapi(client, variant), engine)


def test_idvapi_token_with_surrounding_whitespace_is_refused(client, engine):  # type: ignore[no-untyped-def]
    for variant in (f"%20{IDVAPI_TOKEN}", f"{IDVAPI_TOKEN}%20", f"{IDVAPI_TOKEN}+"):
        assert_refused(idvapi(client, variant), engine)


def test_idvapi_token_with_a_control_character_appended_is_refused_before_authentication(  # type: ignore[no-untyped-def]
    client, engine
):
    """NUL, TAB, LF after the token: the receiver refuses any URL holding a control character
    with 400 before any provider code runs (receiver/request_rules.py); nothing is stored either
    way."""
    for variant in (f"{IDVAPI_TOKEN}%00", f"{IDVAPI_TOKEN}%09", f"{IDVAPI_TOKEN}%0A"):
        answer = idvapi(client, variant)
        assert answer.status_code == 400, (variant, answer.status_code)
        assert rows(engine) == 0


def test_idvapi_right_token_outside_the_path_is_not_accepted(client, engine):  # type: ignore[no-untyped-def]
    """Only the path carries the token: in the query string or a header it authenticates nothing."""
    body = idvapi_result("verified")
    answers = [
        post(client, f"/webhooks/idvapi?token={IDVAPI_TOKEN}", body, []),
        post(client, "/webhooks/idvapi/x", body, [("Authorization", f"Bearer {IDVAPI_TOKEN}")]),
    ]
    for answer in answers:
        assert answer.status_code in (401, 404, 405), answer.status_code
    assert rows(engine) == 0


# --- docverify: the callback state ----------------------------------------------------------------


def add_docverify_session(engine: Engine, session_id: str, state: str) -> None:
    with Session(engine) as db:
        db.add(
            VerificationSession(
                provider="docverify",
                session_id=session_id,
                user_ref=f"user-{session_id}",
                state_digest=hashlib.sha256(state.encode()).hexdigest(),
            )
        )
        db.commit()


def test_docverify_state_of_another_session_is_refused(client, engine):  # type: ignore[no-untyped-def]
    add_docverify_session(engine, "dv-victim", "state-of-the-victim")
    add_docverify_session(engine, "dv-attacker", "state-of-the-attacker")
    for session_id, state in (
        ("dv-victim", "state-of-the-attacker"),
        ("dv-attacker", "state-of-the-victim"),
    ):
        answer = client.get(
            "/callbacks/docverify?" + urlencode({"sessionId": session_id, "state": state})
        )
        # a person is on the other end: sent on to the return URL, but nothing is stored
        assert answer.status_code == 302, (answer.status_code, answer.get_data())
        assert rows(engine) == 0
