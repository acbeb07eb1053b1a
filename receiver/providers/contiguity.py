"""Contiguity Identity: v2 webhooks signed `Contiguity-Signature: t=…,v1=…`, plus `GET /vs`.

ASSUMED (docs/PROVIDERS.md): `data` is the session object, its `status` values mirror the event
suffixes, and `GET /vs?id=` returns that object.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

import httpx

from receiver.canonical import DecidedBy, Observation, Source, Status, from_unix
from receiver.exceptions import AuthenticationError, ParseError, UnknownValueError
from receiver.providers.base import (
    AuthContext,
    CreatedSession,
    Delivery,
    Parsed,
    ProviderClient,
    content_digest,
    load_json_object,
    optional_str,
    require_str,
    storable,
)
from receiver.providers.http import request_json
from receiver.settings import ProviderSettings
from receiver.signatures import verify_timestamped_hmac

SIGNATURE_HEADER = "Contiguity-Signature"
SESSION_EVENT_PREFIX = "identity.verification_session."
REPORT_EVENT_PREFIX = "identity.verification_report."
REPORT_ID_PREFIX = "vr_"

STATUS_MAP: dict[str, tuple[Status, DecidedBy]] = {
    "created": (Status.PENDING, DecidedBy.AUTO),
    "started": (Status.PROCESSING, DecidedBy.AUTO),
    "processing": (Status.PROCESSING, DecidedBy.AUTO),
    "requires_input": (Status.REQUIRES_INPUT, DecidedBy.AUTO),
    "verified": (Status.VERIFIED, DecidedBy.AUTO),
    "failed": (Status.REJECTED, DecidedBy.AUTO),
    "manually_approved": (Status.VERIFIED, DecidedBy.MANUAL),
    "manually_denied": (Status.REJECTED, DecidedBy.MANUAL),
    "canceled": (Status.CANCELED, DecidedBy.AUTO),
}
"""Contiguity session status (event suffix) → canonical status and who decided."""


class ContiguityProvider:
    """Contiguity Identity (webhooks + session GET)."""

    name: ClassVar[str] = "contiguity"
    content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    sources: ClassVar[frozenset[Source]] = frozenset({Source.WEBHOOK})
    path_segment: ClassVar[str | None] = None

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

    def is_enabled(self) -> bool:
        """Enabled once a webhook signing secret is configured."""
        return bool(self.settings.webhook_secrets)

    def authenticate(self, delivery: Delivery, context: AuthContext) -> None:
        """Check the `t=,v1=` HMAC over the raw body with any configured secret."""
        if delivery.source is not Source.WEBHOOK:
            raise AuthenticationError("unsupported_source")
        verify_timestamped_hmac(
            delivery.single_header(SIGNATURE_HEADER),
            delivery.body,
            self.settings.webhook_secrets,
            now=context.now,
            tolerance=self.settings.signature_tolerance_seconds,
        )

    def parse(self, delivery: Delivery) -> Parsed:
        """Read the v2 envelope; session events become one observation each."""
        envelope = load_json_object(delivery.body)
        event_id = require_str(envelope, "id")
        event_type = require_str(envelope, "type")
        timestamp = envelope.get("timestamp")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            raise ParseError("field 'timestamp' missing or not a number")
        data = envelope.get("data")
        if not event_type.startswith("identity."):
            return Parsed(session_id=None, user_ref=None, delivery_id=event_id)
        if not isinstance(data, dict):
            raise ParseError("field 'data' missing or not an object")
        if event_type.startswith(REPORT_EVENT_PREFIX):
            return replace(_report(data), delivery_id=event_id)
        if not event_type.startswith(SESSION_EVENT_PREFIX):
            raise UnknownValueError(self.name, "type", "event type")
        suffix = event_type.removeprefix(SESSION_EVENT_PREFIX)
        if suffix == "completed":
            return replace(_completed(data), delivery_id=event_id)
        if suffix not in STATUS_MAP:
            raise UnknownValueError(self.name, "type", "event type")
        occurred = from_unix(timestamp, field="timestamp")
        parsed = _parsed(data, suffix, occurred, Source.WEBHOOK)
        return replace(parsed, delivery_id=event_id)

    def dedupe_key(self, delivery: Delivery, parsed: Parsed | None) -> str:
        """The envelope id (`evt_…`); a content hash when the body is not understood."""
        if parsed is not None and parsed.delivery_id:
            return "evt:" + parsed.delivery_id
        return "sha256:" + content_digest(delivery.body)

    def parse_status(self, session_id: str, answer: Any, received_at: datetime) -> Parsed:
        """The session object from `GET /vs?id=` → one observation (source poll)."""
        if not isinstance(answer, dict):
            raise ParseError("session object is not a JSON object")
        status = require_str(answer, "status", max_length=40)
        if status not in STATUS_MAP:
            raise UnknownValueError(self.name, "status")
        updated = answer.get("updated")
        occurred = received_at
        if isinstance(updated, int | float) and not isinstance(updated, bool):
            occurred = from_unix(updated, field="updated")
        return _parsed(
            {**answer, "id": answer.get("id", session_id)}, status, occurred, Source.POLL
        )

    def client(self, http: httpx.Client) -> ProviderClient:
        """This provider's API client."""
        return ContiguityClient(self.settings, http)


def _session_id(data: dict[str, Any]) -> str:
    """The session a session event is about: `data.verification_session` (a string or an
    object with an `id`) when present, else `data.id` (ASSUMED: `data` is the session). A
    report id (`vr_…`) is never taken for a session id."""
    session_id = _session_reference(data) or optional_str(data, "id")
    if session_id is None:
        raise ParseError("no session id in data.id or data.verification_session")
    if session_id.startswith(REPORT_ID_PREFIX):
        raise UnknownValueError(ContiguityProvider.name, "data.id", "session reference")
    return session_id


def _session_reference(data: dict[str, Any]) -> str | None:
    """`data.verification_session` (string or `{id}`), the only way a report names its session."""
    nested = data.get("verification_session")
    if isinstance(nested, dict):
        nested = nested.get("id")
    if not isinstance(nested, str) or not nested.strip():
        return None
    if len(nested) > 128:
        raise ParseError("field 'verification_session' is longer than 128 characters")
    return storable(nested, "verification_session")


def _report(data: dict[str, Any]) -> Parsed:
    """An `identity.verification_report.*` event: no status. A report that names its session
    is attached to it; one that names none is kept for a person (quarantined, counted), never
    guessed from the report's own id."""
    session_id = _session_reference(data)
    if session_id is None or session_id.startswith(REPORT_ID_PREFIX):
        raise UnknownValueError(
            ContiguityProvider.name, "data.verification_session", "session reference"
        )
    return Parsed(session_id=session_id, user_ref=optional_str(data, "client_reference_id"))


def _completed(data: dict[str, Any]) -> Parsed:
    """`identity.verification_session.completed`, named only in the docs' prose: it says the
    flow ended, not how. Attached to its session, which is polled now for the outcome."""
    return Parsed(
        session_id=_session_id(data),
        user_ref=optional_str(data, "client_reference_id"),
        poll_now=True,
    )


def _parsed(
    data: dict[str, Any], status_name: str, occurred_at: datetime, source: Source
) -> Parsed:
    session_id = _session_id(data)
    status, decided_by = STATUS_MAP[status_name]
    user_ref = optional_str(data, "client_reference_id")
    reasons = []
    error = data.get("error") or data.get("last_error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        reasons.append(error["code"][:64])
    details: dict[str, object] = {
        k: data[k] for k in ("metadata", "verification_report", "error") if k in data
    }
    observation = Observation(
        provider=ContiguityProvider.name,
        session_id=session_id,
        status=status,
        occurred_at=occurred_at,
        source=source,
        decided_by=decided_by,
        user_ref=user_ref,
        provider_status=status_name,
        reasons=tuple(reasons),
        details=details,
    )
    return Parsed(session_id=session_id, user_ref=user_ref, observations=(observation,))


class ContiguityClient:
    """Contiguity Identity API: `Authorization: Token …`, JSON only."""

    def __init__(self, settings: ProviderSettings, http: httpx.Client) -> None:
        self.settings, self.http = settings, http

    def _headers(self) -> dict[str, str]:
        token = self.settings.api_token.get_secret_value() if self.settings.api_token else ""
        return {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def create_session(
        self, user_ref: str, options: dict[str, Any], *, callback_url: str | None
    ) -> CreatedSession:
        """`POST /vs/create`; the answer's `url` is where the user goes (single use, 24 h)."""
        body = {
            "type": "document",
            "client_reference_id": user_ref,
            "metadata": options.get("metadata", {}),
            "options": options.get("options", {}),
            "return_url": self.settings.return_url or None,
        }
        answer = request_json(
            self.http,
            "POST",
            f"{self.settings.base_url}/vs/create",
            json=body,
            headers=self._headers(),
        )
        return CreatedSession(session_id=str(answer["id"]), start_url=answer.get("url"))

    def fetch_status(self, session_id: str) -> Any:
        """`GET /vs?id=` (ASSUMED shape, docs/PROVIDERS.md)."""
        return request_json(
            self.http,
            "GET",
            f"{self.settings.base_url}/vs",
            params={"id": session_id},
            headers=self._headers(),
        )
