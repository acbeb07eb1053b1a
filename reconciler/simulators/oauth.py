"""OAuth 2.0 client-credentials access tokens (JWT-shaped, HS256, expiring) for docverify."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time


def _b64url(raw: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """Issues access tokens and remembers when each one expires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}  # token -> unix time it stops being valid
        self._key = secrets.token_bytes(32)

    def issue(self, *, issuer: str, subject: str, audience: str, lifetime_s: int) -> str:
        """A new token valid for lifetime_s seconds (expired tokens are forgotten meanwhile)."""
        now = time.time()
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": int(now),
            "exp": int(now + lifetime_s),
            "jti": secrets.token_hex(8),
        }
        signing_input = (
            _b64url(b'{"alg":"HS256","typ":"JWT"}')
            + "."
            + _b64url(json.dumps(claims).encode("utf-8"))
        )
        signature = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        token = signing_input + "." + _b64url(signature)
        with self._lock:
            for stale in [known for known, expiry in self._expiry.items() if expiry <= now]:
                del self._expiry[stale]
            self._expiry[token] = now + lifetime_s
        return token

    def is_valid(self, token: str | None) -> bool:
        """True for a token this issuer made that has not expired."""
        with self._lock:
            expiry = self._expiry.get(token or "")
        return expiry is not None and expiry > time.time()
