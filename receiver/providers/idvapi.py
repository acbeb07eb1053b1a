"""The small `/verif/` Identity Verification API: unsigned webhooks, no status endpoint.

The provider signs nothing, so the webhook URL carries a secret token
(`/webhooks/idvapi/<WEBHOOK_TOKEN>`), compared in constant time, and `check_id` must be a UUID.
ASSUMED (docs/PROVIDERS.md): our session id is the `user_identifier` of the start URL.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx

from receiver.canonical import Observation, Source, Status, provider_time
from receiver.exceptions import AuthenticationError, ParseError, UnknownValueError
from receiver.providers.base import (
    AuthContext,
    CreatedSession,
    Delivery,
    Parsed,
    ProviderClient,
    content_digest,
    load_json_object,
    require_str,
)
from receiver.settings import ProviderSettings
from receiver.signatures import tokens_equal

STATUS_MAP = {"verified": Status.VERIFIED, "rejected": Status.REJECTED}


class IdvapiProvider:
    """The `/verif/` Identity Verification API (webhooks only)."""

    name: ClassVar[str] = "idvapi"
    content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    sources: ClassVar[frozenset[Source]] = frozenset({Source.WEBHOOK})
    path_segment: ClassVar[str | None] = "token"

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

    def is_enabled(self) -> bool:
        """Enabled once the URL-path token is configured."""
        token = self.settings.webhook_token
        return token is not None and bool(token.get_secret_value())

    def authenticate(self, delivery: Delivery, context: AuthContext) -> None:
        """Compare the URL-path token in constant time, then require a UUID `check_id`."""
        expected = self.settings.webhook_token
        given = delivery.path_token
        if expected is None or not given:
            raise AuthenticationError("missing_token")
        if not tokens_equal(given, expected.get_secret_value()):
            raise AuthenticationError("token_mismatch")
        try:
            payload = load_json_object(delivery.body)
        except ParseError:
            return  # authentic but not understood: parse() quarantines it
        if "check_id" in payload and not is_check_id(payload["check_id"]):
            raise AuthenticationError("malformed_check_id")

    def parse(self, delivery: Delivery) -> Parsed:
        """The result webhook → one observation on the user_identifier's session."""
        payload = load_json_object(delivery.body)
        check_id = payload.get("check_id")
        if not is_check_id(check_id):
            raise ParseError("field 'check_id' missing or not a UUID")
        user_identifier = require_str(payload, "user_identifier")
        result = payload.get("verification_result")
        if not isinstance(result, dict):
            raise ParseError("field 'verification_result' missing or not an object")
        status_name = require_str(result, "status", max_length=40)
        if status_name not in STATUS_MAP:
            raise UnknownValueError(self.name, "verification_result.status")
        occurred = _timestamp(payload, "completed_at") or _timestamp(result, "timestamp")
        assessment = result.get("verificationAssessment")
        assessment = assessment if isinstance(assessment, dict) else {}
        confidence = assessment.get("confidenceLevel")
        observation = Observation(
            provider=self.name,
            session_id=user_identifier,
            status=STATUS_MAP[status_name],
            occurred_at=occurred or delivery.received_at,
            source=Source.WEBHOOK,
            user_ref=user_identifier,
            provider_status=status_name,
            reasons=(f"confidence:{confidence}"[:64],) if isinstance(confidence, str) else (),
            details={
                "check_id": check_id,
                "faceComparison": result.get("faceComparison"),
                "verificationAssessment": assessment,
                "selfie_video_url": payload.get("selfie_video_url"),
                "id_photo_url": payload.get("id_photo_url"),
            },
        )
        return Parsed(
            session_id=user_identifier, user_ref=user_identifier, observations=(observation,)
        )

    def dedupe_key(self, delivery: Delivery, parsed: Parsed | None) -> str:
        """The check id plus the content: a retried webhook is byte-identical."""
        prefix = "sha256:"
        if parsed is not None and parsed.observations:
            prefix = f"check:{parsed.observations[0].details['check_id']}:"
        return prefix + content_digest(delivery.body)

    def parse_status(self, session_id: str, answer: Any, received_at: datetime) -> Parsed:
        """idvapi has no status endpoint."""
        raise ParseError("idvapi has no status endpoint")

    def client(self, http: httpx.Client) -> ProviderClient:
        """This provider's API client."""
        return IdvapiClient(self.settings, http)


def is_check_id(value: object) -> bool:
    """True for a canonical UUID string."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _timestamp(data: dict[str, Any], key: str) -> datetime | None:
    """`data[key]` as a UTC time: None when absent or not an ISO time with an offset, ParseError
    when it is one but has no UTC equivalent (e.g. `0001-01-01T00:00:00+14:00`)."""
    value = data.get(key)
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return provider_time(parsed, field=key) if parsed.tzinfo else None


class IdvapiClient:
    """The `/verif/` API has no create or status endpoint: we only build the start URL."""

    def __init__(self, settings: ProviderSettings, http: httpx.Client) -> None:
        self.settings = settings

    def create_session(
        self, user_ref: str, options: dict[str, Any], *, callback_url: str | None
    ) -> CreatedSession:
        """The session is the user identifier (ASSUMED); the start URL carries our API key."""
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        query = urlencode({"api_key": key, "user_identifier": user_ref})
        return CreatedSession(
            session_id=user_ref, start_url=f"{self.settings.base_url}/verif/?{query}"
        )

    def fetch_status(self, session_id: str) -> Any:
        """There is none: an idvapi session silent too long is flagged overdue for people."""
        raise ParseError("idvapi has no status endpoint")
