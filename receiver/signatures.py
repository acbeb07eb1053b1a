"""Pure signature schemes over raw bytes: no I/O, no Flask. Every comparison is constant-time.

- `verify_timestamped_hmac`: Contiguity's (and Stripe's) `t=<unix>,v1=<hex>` scheme.
- `verify_body_hmac`: iDenfy's hex HMAC-SHA256 of the raw body.
- `sign_standard_webhook`: the Standard Webhooks scheme we use for our own notifications.
- `tokens_equal`: a URL or bearer token check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from receiver.exceptions import AuthenticationError

_HEX = re.compile(r"[0-9a-f]{64}")
MAX_SIGNATURE_HEADER = 4096
"""Longest signature header we look at; anything longer is refused unparsed."""
MAX_TIMESTAMP_DIGITS = 12
"""Longest `t=` we read: unix seconds until the year 33658. More digits are refused before any
arithmetic (a 310-digit `t` would overflow the float comparison with the clock)."""
_TIMESTAMP = re.compile(rf"(?:0|[1-9][0-9]{{0,{MAX_TIMESTAMP_DIGITS - 1}}})")
"""A canonical decimal `t`: ASCII digits, no leading zero, sign, space or underscore. `t=0<t>`
would otherwise read as the same number as `t=<t>` and verify with the same signature, so one
signed header would have many spellings."""


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    """Hex HMAC-SHA256."""
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def tokens_equal(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time equality of two tokens (str is compared as UTF-8)."""
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def _any_match(candidates: list[str], expected: list[str]) -> bool:
    """Constant-time: does any candidate equal any expected value? (Checks every pair.)"""
    matched = False
    for candidate in candidates:
        for value in expected:
            matched |= hmac.compare_digest(candidate.encode(), value.encode())
    return matched


def parse_timestamped_header(header: str) -> tuple[int, list[str]]:
    """Split `t=<unix>,v1=<hex>[,v1=…]` into the timestamp and the v1 signatures.

    Other schemes (`v0`, …) are ignored, as Stripe does; exactly one `t` is required, written
    in canonical decimal (ASCII digits, no leading zero) of at most MAX_TIMESTAMP_DIGITS digits.
    WSGI servers join repeated header lines with a comma, so two signature headers that both
    carry a `t` arrive as one value with two `t` items: refused here, whichever is genuine.
    """
    if len(header) > MAX_SIGNATURE_HEADER:
        raise AuthenticationError("signature_header_too_long")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise AuthenticationError("bad_timestamp")
    valid = [s for s in signatures if _HEX.fullmatch(s)]
    if not valid:
        raise AuthenticationError("no_v1_signature")
    return int(timestamps[0]), valid


def verify_timestamped_hmac(
    header: str, body: bytes, secrets: list[bytes], *, now: float, tolerance: int
) -> int:
    """Verify `t=…,v1=…` over `t + "." + body` with any of `secrets`; return the timestamp.

    `tolerance` seconds apply both ways (stale and future); 0 disables the age check.
    """
    if not secrets:
        raise AuthenticationError("no_secret_configured")
    timestamp, signatures = parse_timestamped_header(header)
    expected = [hmac_sha256_hex(key, f"{timestamp}.".encode() + body) for key in secrets]
    if not _any_match(signatures, expected):
        raise AuthenticationError("signature_mismatch")
    if tolerance and abs(now - timestamp) > tolerance:
        raise AuthenticationError("timestamp_outside_tolerance")
    return timestamp


def verify_body_hmac(signature: str, body: bytes, secrets: list[bytes]) -> None:
    """Verify a hex HMAC-SHA256 of the raw body with any of `secrets` (iDenfy).

    A value holding a comma is how WSGI servers present repeated header lines: refused, even
    when one of the joined values is genuine.
    """
    if not secrets:
        raise AuthenticationError("no_secret_configured")
    if "," in signature:
        raise AuthenticationError("repeated_signature_header")
    candidate = signature.strip().lower()
    if not _HEX.fullmatch(candidate):
        raise AuthenticationError("malformed_signature")
    if not _any_match([candidate], [hmac_sha256_hex(key, body) for key in secrets]):
        raise AuthenticationError("signature_mismatch")


def standard_webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64-decode it after `whsec_`."""
    encoded = secret.removeprefix("whsec_")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def sign_standard_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value (`v1,<base64>`) for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_webhook_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
