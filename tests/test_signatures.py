"""Pure unit tests of receiver/signatures.py, cross-checked against the stripe package.

Headers are built here with hmac/hashlib or by `stripe.WebhookSignature.generate_signature_header`,
never with receiver code.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver import signatures
from receiver.exceptions import AuthenticationError
from receiver.signatures import (
    MAX_SIGNATURE_HEADER,
    parse_timestamped_header,
    sign_standard_webhook,
    tokens_equal,
    verify_body_hmac,
    verify_timestamped_hmac,
)

pytestmark = pytest.mark.unit

SECRET = "whsec_unit_test_secret"
BODY = b'{"id":"evt_1","type":"identity.verification_session.verified"}'
NOW = 1_700_000_000


def v1(body: bytes, t: int, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def verify(
    header: str,
    body: bytes = BODY,
    secrets: list[str] | None = None,
    *,
    now: float = NOW,
    tolerance: int = 300,
) -> int:
    keys = [s.encode() for s in (secrets if secrets is not None else [SECRET])]
    return verify_timestamped_hmac(header, body, keys, now=now, tolerance=tolerance)


def refused(header: str, reason: str | None = None, **kwargs: object) -> None:
    with pytest.raises(AuthenticationError) as info:
        verify(header, **kwargs)  # type: ignore[arg-type]
    if reason is not None:
        assert info.value.reason == reason


# --- t=,v1= ---------------------------------------------------------------------------------


def test_valid_header_returns_its_timestamp() -> None:
    assert verify(f"t={NOW},v1={v1(BODY, NOW)}") == NOW


def test_several_v1_accepted_if_any_matches() -> None:
    good = v1(BODY, NOW)
    for header in (
        f"t={NOW},v1={'0' * 64},v1={good}",
        f"t={NOW},v1={good},v1={'f' * 64}",
        f"v1={'a' * 64},t={NOW},v1={good},v0={'b' * 64}",
    ):
        assert verify(header) == NOW


def test_several_v1_none_matching_is_refused() -> None:
    refused(f"t={NOW},v1={'0' * 64},v1={'1' * 64}", "signature_mismatch")


def test_v0_only_is_refused_even_with_the_right_digest() -> None:
    refused(f"t={NOW},v0={v1(BODY, NOW)}", "no_v1_signature")


@pytest.mark.parametrize("header", ["", " ", ",", "t=", "v1=", "=", "t=,v1=", "foo=bar"])
def test_empty_or_meaningless_header_is_refused(header: str) -> None:
    refused(header)


def test_truncated_and_overlong_hex_are_refused() -> None:
    good = v1(BODY, NOW)
    refused(f"t={NOW},v1={good[:-1]}", "no_v1_signature")
    refused(f"t={NOW},v1={good[:32]}", "no_v1_signature")
    refused(f"t={NOW},v1={good}00", "no_v1_signature")


def test_uppercase_hex_is_refused_like_stripe_does() -> None:
    header = f"t={NOW},v1={v1(BODY, NOW).upper()}"
    refused(header)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(BODY.decode(), header, SECRET, tolerance=0)


def test_duplicate_timestamp_is_refused() -> None:
    good = v1(BODY, NOW)
    refused(f"t={NOW},t={NOW},v1={good}", "bad_timestamp")
    refused(f"t={NOW},v1={good},t={NOW + 1}", "bad_timestamp")


@pytest.mark.parametrize("t", ["-1", "+1700000000", "1700000000.0", "1e9", "０", " ", "0x10"])
def test_non_decimal_timestamps_are_refused(t: str) -> None:
    refused(f"t={t},v1={'a' * 64}", "bad_timestamp")


@pytest.mark.parametrize("t", ["01700000000", "00", "0" * 12, "1_700_000_000", "\u0661\u0667"])
def test_timestamps_not_in_canonical_decimal_are_refused(t: str) -> None:
    """A leading zero, an underscore, non-ASCII digits: `int()` reads them all."""
    refused(f"t={t},v1={v1(BODY, int(t))}", "bad_timestamp", tolerance=0)


def _underscored(digits: str) -> str:
    return digits[0] + "_" + digits[1:] if len(digits) > 1 else "0_" + digits


NON_CANONICAL = st.sampled_from(
    [
        lambda digits: "0" + digits,
        lambda digits: "00" + digits,
        lambda digits: "+" + digits,
        lambda digits: " " + digits,
        lambda digits: "\t" + digits,
        _underscored,
        lambda digits: "".join(chr(0x660 + int(c)) for c in digits),  # Arabic-Indic digits
    ]
)
"""Other spellings of a number that Python's `int()` reads as the same number (whitespace
around an item is HTTP's optional whitespace, stripped before the value is read: not here)."""


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=st.integers(min_value=0, max_value=10**11 - 1), spell=NON_CANONICAL)
def test_only_the_canonical_spelling_of_a_timestamp_verifies(t: int, spell) -> None:  # type: ignore[no-untyped-def]
    """Property: for any `t`, its canonical digits verify, and any other spelling of the same
    number (leading zeros, sign, whitespace inside the value, underscore) is refused, whether
    the signature covers the canonical digits (a captured header, respelled) or the spelling."""
    canonical = str(t)
    assert verify(f"t={canonical},v1={v1(BODY, t)}", now=t) == t
    other = spell(canonical)
    assert other != canonical and int(other) == t
    for digest in (
        v1(BODY, t),
        hmac.new(SECRET.encode(), f"{other}.".encode() + BODY, hashlib.sha256).hexdigest(),
    ):
        refused(f"t={other},v1={digest}", "bad_timestamp", now=t)


@pytest.mark.parametrize("t", [10**12, 10**309], ids=["13-digits", "310-digits"])
def test_timestamps_over_twelve_digits_are_refused_before_any_arithmetic(t: int) -> None:
    """A genuine signature over an absurd `t` is refused as bad_timestamp, with or without the
    age check: 310 digits used to overflow the float comparison with the clock (a 500)."""
    header = f"t={t},v1={v1(BODY, t)}"
    refused(header, "bad_timestamp")
    refused(header, "bad_timestamp", tolerance=0)


def test_twelve_digit_timestamp_is_read() -> None:
    t = 10**12 - 1
    assert verify(f"t={t},v1={v1(BODY, t)}", tolerance=0) == t


def test_whitespace_after_commas_is_accepted() -> None:
    good = v1(BODY, NOW)
    assert verify(f"t={NOW}, v1={good}") == NOW
    assert verify(f" t={NOW} ,  v1={good} ") == NOW


def test_signature_is_over_timestamp_dot_raw_body() -> None:
    # the digest of the body alone, or with another separator, is not accepted
    body_only = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    refused(f"t={NOW},v1={body_only}", "signature_mismatch")
    colon = hmac.new(SECRET.encode(), f"{NOW}:".encode() + BODY, hashlib.sha256).hexdigest()
    refused(f"t={NOW},v1={colon}", "signature_mismatch")
    # one byte of the body changed
    refused(f"t={NOW},v1={v1(BODY, NOW)}", "signature_mismatch", body=BODY + b" ")


def test_key_is_the_whsec_string_as_is_not_base64_decoded() -> None:
    import base64

    decoded_key = base64.b64decode("dW5pdF90ZXN0X3NlY3JldA==")
    digest = hmac.new(decoded_key, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    refused(f"t={NOW},v1={digest}", secrets=["whsec_dW5pdF90ZXN0X3NlY3JldA=="])
    assert (
        verify(
            f"t={NOW},v1={v1(BODY, NOW, 'whsec_dW5pdF90ZXN0X3NlY3JldA==')}",
            secrets=["whsec_dW5pdF90ZXN0X3NlY3JldA=="],
        )
        == NOW
    )


def test_any_of_several_secrets_verifies() -> None:
    header = f"t={NOW},v1={v1(BODY, NOW, 'old')}"
    assert verify(header, secrets=["new", "old"]) == NOW
    refused(header, "signature_mismatch", secrets=["new", "other"])


def test_no_secret_configured_is_refused() -> None:
    refused(f"t={NOW},v1={v1(BODY, NOW)}", "no_secret_configured", secrets=[])


def test_tolerance_applies_both_ways() -> None:
    for t, ok in ((NOW - 300, True), (NOW + 300, True), (NOW - 301, False), (NOW + 301, False)):
        header = f"t={t},v1={v1(BODY, t)}"
        if ok:
            assert verify(header) == t
        else:
            refused(header, "timestamp_outside_tolerance")


def test_tolerance_zero_disables_the_age_check() -> None:
    for t in (0, NOW - 10**8, NOW + 10**8):
        assert verify(f"t={t},v1={v1(BODY, t)}", tolerance=0) == t


def test_stale_header_with_a_wrong_signature_reports_the_mismatch() -> None:
    refused(f"t={NOW - 10_000},v1={'0' * 64}", "signature_mismatch")


def test_header_too_long_is_refused_unparsed() -> None:
    header = f"t={NOW},v1={v1(BODY, NOW)}," + "x" * MAX_SIGNATURE_HEADER
    refused(header, "signature_header_too_long")


def test_parse_ignores_unknown_schemes_and_items_without_equals() -> None:
    good = v1(BODY, NOW)
    assert parse_timestamped_header(f"t={NOW},v1={good},v0=zz,junk,x=1") == (NOW, [good])


# --- raw-body HMAC (iDenfy) ------------------------------------------------------------------

IDENFY_KEY = b"idenfy-key"


def body_hmac(body: bytes, key: bytes = IDENFY_KEY) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def test_body_hmac_accepts_the_hex_digest_of_the_raw_body() -> None:
    verify_body_hmac(body_hmac(BODY), BODY, [IDENFY_KEY])
    verify_body_hmac(body_hmac(BODY).upper(), BODY, [IDENFY_KEY])
    verify_body_hmac(f"  {body_hmac(BODY)}\t", BODY, [IDENFY_KEY])
    verify_body_hmac(body_hmac(BODY, b"old"), BODY, [IDENFY_KEY, b"old"])


@pytest.mark.parametrize(
    "signature,reason",
    [
        ("", "malformed_signature"),
        ("zz", "malformed_signature"),
        ("sha256=" + "a" * 64, "malformed_signature"),
        ("a" * 63, "malformed_signature"),
        ("a" * 65, "malformed_signature"),
        ("a" * 64, "signature_mismatch"),
        (f"{body_hmac(BODY)}, {'0' * 64}", "repeated_signature_header"),
        (f"{'0' * 64},{body_hmac(BODY)}", "repeated_signature_header"),
    ],
)
def test_body_hmac_refuses_malformed_or_wrong(signature: str, reason: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        verify_body_hmac(signature, BODY, [IDENFY_KEY])
    assert info.value.reason == reason


def test_body_hmac_refuses_other_body_key_and_no_key() -> None:
    with pytest.raises(AuthenticationError):
        verify_body_hmac(body_hmac(BODY), BODY + b"\n", [IDENFY_KEY])
    with pytest.raises(AuthenticationError):
        verify_body_hmac(body_hmac(BODY, b"other"), BODY, [IDENFY_KEY])
    with pytest.raises(AuthenticationError) as info:
        verify_body_hmac(body_hmac(BODY), BODY, [])
    assert info.value.reason == "no_secret_configured"


# --- constant time ---------------------------------------------------------------------------


class CompareSpy:
    """Wraps hmac.compare_digest (the stdlib constant-time comparison) and counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = hmac.compare_digest

    def __call__(self, a, b) -> bool:  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.real(a, b)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> CompareSpy:
    found = CompareSpy()
    monkeypatch.setattr(signatures.hmac, "compare_digest", found)
    return found


def test_timestamped_check_compares_every_pair_in_constant_time(spy: CompareSpy) -> None:
    good = v1(BODY, NOW, "k2")
    # the match is the very first pair: no early exit, every pair is still compared
    verify(f"t={NOW},v1={good},v1={'0' * 64},v1={'1' * 64}", secrets=["k2", "k1"])
    assert spy.calls == 3 * 2


def test_body_hmac_compares_in_constant_time(spy: CompareSpy) -> None:
    verify_body_hmac(body_hmac(BODY), BODY, [IDENFY_KEY, b"old", b"older"])
    assert spy.calls == 3


def test_tokens_equal_compares_in_constant_time(spy: CompareSpy) -> None:
    assert tokens_equal("abc", "abc") and not tokens_equal("abc", "abd")
    assert not tokens_equal("é", "e") and tokens_equal("é", "é".encode())
    assert spy.calls == 4


# --- Standard Webhooks (our own notifications), checked against the standardwebhooks package --


def test_standard_webhook_signature_verifies_with_the_reference_package() -> None:
    import base64

    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    now = int(time.time())
    body = b'{"user_ref":"u1","status":"verified"}'
    header = sign_standard_webhook(secret, "msg_1", now, body)
    Webhook(secret).verify(
        body, {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": header}
    )


# --- cross-check with stripe -----------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
secret_texts = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=40
)


@settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(body=texts, secret=secret_texts, age=st.integers(min_value=0, max_value=299))
def test_agrees_with_stripe_on_headers_stripe_generates(body: str, secret: str, age: int) -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=now - age)
    assert stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300)
    assert (
        verify_timestamped_hmac(header, body.encode(), [secret.encode()], now=now, tolerance=300)
        == now - age
    )


@settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(body=texts, secret=secret_texts, other=secret_texts, suffix=st.text(min_size=1, max_size=5))
def test_agrees_with_stripe_on_refusals(body: str, secret: str, other: str, suffix: str) -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=now)
    cases = [(body + suffix, secret)]  # tampered body
    if other != secret:
        cases.append((body, other))  # wrong secret
    for payload, key in cases:
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.WebhookSignature.verify_header(payload, header, key, tolerance=300)
        with pytest.raises(AuthenticationError):
            verify_timestamped_hmac(
                header, payload.encode(), [key.encode()], now=now, tolerance=300
            )


@settings(max_examples=25, deadline=None, database=None)
@given(body=texts, age=st.integers(min_value=301, max_value=10**6))
def test_agrees_with_stripe_on_stale_headers(body: str, age: int) -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(body, SECRET, timestamp=now - age)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body, header, SECRET, tolerance=300)
    with pytest.raises(AuthenticationError) as info:
        verify_timestamped_hmac(header, body.encode(), [SECRET.encode()], now=now, tolerance=300)
    assert info.value.reason == "timestamp_outside_tolerance"
