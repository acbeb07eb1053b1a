"""Transmit Security Verify ("Document Verification"): a redirect callback and a result poll.

No webhooks. The browser returns to `/callbacks/docverify?sessionId=…&state=…`; the `state` must
match the one generated at session creation (stored as a digest). The callback carries no result:
it only makes the session due for a poll of `GET …/api/v1/verification/{sid}/result`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from receiver.canonical import Observation, Source, Status
from receiver.exceptions import AuthenticationError, ParseError, UnknownValueError
from receiver.providers.base import (
    AuthContext,
    CreatedSession,
    Delivery,
    Parsed,
    ProviderClient,
    content_digest,
    require_str,
)
from receiver.providers.http import ProviderRejected, request_json
from receiver.settings import ProviderSettings
from receiver.signatures import tokens_equal

MAX_ID_LENGTH = 128

INCOMPLETE_MAP: dict[str, Status] = {
    "pending": Status.PENDING,
    "capturing": Status.PROCESSING,
    "processing": Status.PROCESSING,
    "recapture": Status.REQUIRES_INPUT,
    "error": Status.REQUIRES_INPUT,
}
"""`IncompleteSessionResult` status → canonical. `error` is incomplete, never a verdict: it is
requires_input with reason provider_error (a person or a new session decides)."""

RECOMMENDATION_MAP: dict[str, Status] = {
    "ALLOW": Status.VERIFIED,
    "CHALLENGE": Status.REVIEW,
    "DENY": Status.REJECTED,
}
"""`complete` result recommendation → canonical."""


def state_digest(state: str) -> str:
    """How a callback `state` is kept at rest: only its sha256."""
    return hashlib.sha256(state.encode()).hexdigest()


class DocverifyProvider:
    """Transmit Security Verify (redirect callback + result polling)."""

    name: ClassVar[str] = "docverify"
    content_types: ClassVar[frozenset[str]] = frozenset()
    sources: ClassVar[frozenset[Source]] = frozenset({Source.CALLBACK})
    path_segment: ClassVar[str | None] = None

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

    def is_enabled(self) -> bool:
        """Enabled once OAuth client credentials are configured."""
        return bool(self.settings.client_id and self.settings.client_secret)

    def authenticate(self, delivery: Delivery, context: AuthContext) -> None:
        """The callback's `state` must match the digest stored when we created the session."""
        session_id = _session_id(delivery)
        state = delivery.query_value("state")
        if not state or len(state) > 512:
            raise AuthenticationError("missing_state")
        expected = context.stored_state_digest(session_id)
        if expected is None:
            raise AuthenticationError("unknown_session")
        if not tokens_equal(state_digest(state), expected):
            raise AuthenticationError("state_mismatch")

    def parse(self, delivery: Delivery) -> Parsed:
        """A callback says nothing about the result: poll the session now."""
        return Parsed(
            session_id=_session_id(delivery), user_ref=None, poll_now=True, creates_session=False
        )

    def dedupe_key(self, delivery: Delivery, parsed: Parsed | None) -> str:
        """One callback per session and state (a reloaded redirect is a duplicate)."""
        return "callback:" + content_digest(
            _session_id(delivery), delivery.query_value("state") or ""
        )

    def parse_status(self, session_id: str, answer: Any, received_at: datetime) -> Parsed:
        """A `/result` answer → one observation (source poll).

        verihook asks `detailed=true` (`CompleteSessionResult` / `IncompleteSessionResult`); a
        `DeprecatedSessionResult` (what Transmit answers when `detailed` is not true) is read
        too, keeping its `rejection_description` as reasons and its extracted/verified info."""
        if not isinstance(answer, dict):
            raise ParseError("result is not a JSON object")
        status_name = require_str(answer, "status", max_length=40)
        reasons: tuple[str, ...] = ()
        if status_name == "complete":
            recommendation = require_str(answer, "recommendation", max_length=40)
            if recommendation not in RECOMMENDATION_MAP:
                raise UnknownValueError(self.name, "recommendation")
            status, provider_status = (
                RECOMMENDATION_MAP[recommendation],
                f"complete:{recommendation}",
            )
            reasons = _check_reasons(answer.get("checks")) + _descriptions(
                answer.get("rejection_description")
            )
        elif status_name in INCOMPLETE_MAP:
            status, provider_status = INCOMPLETE_MAP[status_name], status_name
            reasons = ("provider_error",) if status_name == "error" else ()
        else:
            raise UnknownValueError(self.name, "status")
        details = {k: answer[k] for k in DETAIL_FIELDS if k in answer}
        observation = Observation(
            provider=self.name,
            session_id=session_id,
            status=status,
            final=status_name == "complete",
            occurred_at=received_at,
            source=Source.POLL,
            provider_status=provider_status,
            reasons=reasons,
            details=details,
        )
        return Parsed(session_id=session_id, user_ref=None, observations=(observation,))

    def client(self, http: httpx.Client) -> ProviderClient:
        """This provider's API client (its OAuth token is cached until it expires)."""
        return DocverifyClient(self.settings, http)


def _session_id(delivery: Delivery) -> str:
    session_id = delivery.query_value("sessionId")
    if not session_id or len(session_id) > MAX_ID_LENGTH or not session_id.isprintable():
        raise AuthenticationError("missing_session_id")
    return session_id


DETAIL_FIELDS = (
    "person",
    "document",
    "risk_details",
    "additional_info",
    "rejection_description",
    "extracted_info",
    "verified_info",
)
"""What a result keeps, encrypted, beside its status: the detailed shape's person, document and
risk details, and the deprecated shape's rejection description and extracted/verified info."""


def _descriptions(descriptions: object) -> tuple[str, ...]:
    """The deprecated shape's `rejection_description` lines, as short reasons."""
    if not isinstance(descriptions, list):
        return ()
    return tuple(
        f"rejection:{d}"[:64] for d in descriptions[:10] if isinstance(d, str) and d.isprintable()
    )


def _check_reasons(checks: object) -> tuple[str, ...]:
    if not isinstance(checks, dict):
        return ()
    reasons = []
    for name, check in list(checks.items())[:20]:
        if isinstance(check, dict) and check.get("recommendation") not in (None, "ALLOW", "N/A"):
            reasons.append(f"{name}:{check['recommendation']}"[:64])
    return tuple(reasons)


TOKEN_RESOURCE = "https://verify.identity.security"
"""The resource Transmit requires verify access tokens to target."""

TOKEN_EXPIRY_MARGIN_SECONDS = 30.0
"""Renew a cached token this long before it expires."""


class DocverifyClient:
    """Transmit Security Verify API with an OAuth client-credentials token, cached until expiry."""

    _tokens: ClassVar[dict[tuple[str, str], tuple[str, float]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: ProviderSettings, http: httpx.Client) -> None:
        self.settings, self.http = settings, http

    @property
    def token_url(self) -> str:
        """`TOKEN_URL`, else `/oidc/token` on `BASE_URL`'s host."""
        if self.settings.token_url:
            return self.settings.token_url
        parts = urlsplit(self.settings.base_url)
        return urlunsplit((parts.scheme, parts.netloc, "/oidc/token", "", ""))

    def access_token(self) -> str:
        """A cached bearer token, fetched again shortly before it expires."""
        key = (self.token_url, self.settings.client_id or "")
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            secret = self.settings.client_secret
            answer = request_json(
                self.http,
                "POST",
                self.token_url,
                data={
                    "client_id": self.settings.client_id or "",
                    "client_secret": secret.get_secret_value() if secret else "",
                    "grant_type": "client_credentials",
                    "resource": TOKEN_RESOURCE,
                },
            )
            token, ttl = str(answer["access_token"]), float(answer.get("expires_in", 300))
            self._tokens[key] = (token, time.monotonic() + ttl - TOKEN_EXPIRY_MARGIN_SECONDS)
            return token

    def forget_token(self) -> None:
        """Drop the cached token (after a 401)."""
        with self._lock:
            self._tokens.pop((self.token_url, self.settings.client_id or ""), None)

    def _authed(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.settings.base_url}{path}"
        try:
            return request_json(
                self.http,
                method,
                url,
                headers={"Authorization": f"Bearer {self.access_token()}"},
                **kwargs,
            )
        except ProviderRejected as exc:
            if exc.status_code != 401:
                raise
            self.forget_token()
            return request_json(
                self.http,
                method,
                url,
                headers={"Authorization": f"Bearer {self.access_token()}"},
                **kwargs,
            )

    def create_session(
        self, user_ref: str, options: dict[str, Any], *, callback_url: str | None
    ) -> CreatedSession:
        """`POST /api/v1/verification` with a fresh `state`, kept as a digest for the callback."""
        state = secrets.token_urlsafe(24)
        answer = self._authed(
            "POST",
            "/api/v1/verification",
            json={
                "callback_url": callback_url,
                "state": state,
                "customer_information": {"external_user_id": user_ref},
            },
        )
        start = answer.get("start_token")
        return CreatedSession(
            session_id=str(answer["session_id"]),
            start_url=f"{self.settings.base_url}/app/{start}" if start else None,
            state=state,
        )

    def fetch_status(self, session_id: str) -> Any:
        """`GET /api/v1/verification/{sid}/result?detailed=true`: the Complete/Incomplete result
        shapes, not the deprecated one (which loses the checks and the risk details)."""
        return self._authed(
            "GET", f"/api/v1/verification/{session_id}/result", params={"detailed": "true"}
        )

    def delete_session(self, session_id: str) -> bool:
        """`DELETE /api/v1/verification/{sid}`: the provider deletes the session and the personal
        data it collected. True when deleted, False when the provider no longer knows it (404)."""
        try:
            self._authed("DELETE", f"/api/v1/verification/{quote(session_id, safe='')}")
        except ProviderRejected as exc:
            if exc.status_code == 404:
                return False
            raise
        return True
