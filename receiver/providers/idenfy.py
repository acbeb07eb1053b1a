"""iDenfy: result webhooks signed `Idenfy-Signature` (hex HMAC of the raw body), no timestamp.

The payload names no event type, so the notification comes from the URL path
(`/webhooks/idenfy/<notification>`), or is None on the legacy single URL. Status is polled only as
a rare fallback (`POST /api/v2/status`), as iDenfy asks.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar

import httpx

from receiver.canonical import (
    IN_FLIGHT_STATUSES,
    DecidedBy,
    Observation,
    Source,
    Status,
    from_unix,
)
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
)
from receiver.providers.http import request_json
from receiver.settings import ProviderSettings
from receiver.signatures import verify_body_hmac

SIGNATURE_HEADER = "Idenfy-Signature"

NOTIFICATIONS = frozenset(
    {"auto-finished", "manual-finished", "resubmitted", "cancelled", "expired"}
)
"""The per-notification URL suffixes iDenfy can be configured with."""

OVERALL_MAP: dict[str, Status] = {
    "APPROVED": Status.VERIFIED,
    "DENIED": Status.REJECTED,
    "SUSPECTED": Status.REVIEW,
    "REVIEWING": Status.PROCESSING,
    "ACTIVE": Status.PENDING,
    "EXPIRED": Status.EXPIRED,
    "EXPIRED-DELETED": Status.EXPIRED,
}
"""iDenfy `status.overall` → canonical status."""

VERDICT_VALUES = frozenset({"APPROVED", "DENIED", "SUSPECTED"})
"""Overall values that carry a decision. With `final: false` one is preliminary (a manual review
follows), so it reads as review."""

NOTIFICATION_NAME = re.compile(r"[a-z][a-z-]{0,39}")
"""What a notification URL segment may look like; a well-formed unknown one is quarantined."""

MANUAL_FIELDS = ("manualDocument", "manualFace")

LIFECYCLE_ONLY = frozenset({"DELETED", "ARCHIVED"})
"""Overall values about data lifecycle, not about the verification: recorded, no observation."""

REASON_FIELDS = ("autoDocument", "autoFace", "manualDocument", "manualFace")
TAG_FIELDS = ("fraudTags", "mismatchTags", "suspicionReasons")


class IdenfyProvider:
    """iDenfy (webhooks; status endpoint as fallback only)."""

    name: ClassVar[str] = "idenfy"
    content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    sources: ClassVar[frozenset[Source]] = frozenset({Source.WEBHOOK})
    path_segment: ClassVar[str | None] = "notification"

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

    def is_enabled(self) -> bool:
        """Enabled once a webhook signing key is configured."""
        return bool(self.settings.webhook_secrets)

    def authenticate(self, delivery: Delivery, context: AuthContext) -> None:
        """Check the hex HMAC-SHA256 of the raw body with any configured key."""
        if delivery.source is not Source.WEBHOOK:
            raise AuthenticationError("unsupported_source")
        if delivery.notification is not None and not NOTIFICATION_NAME.fullmatch(
            delivery.notification
        ):
            raise AuthenticationError("unknown_notification")
        verify_body_hmac(
            delivery.single_header(SIGNATURE_HEADER), delivery.body, self.settings.webhook_secrets
        )

    def parse(self, delivery: Delivery) -> Parsed:
        """The result callback → one observation (none for DELETED/ARCHIVED notes)."""
        if delivery.notification is not None and delivery.notification not in NOTIFICATIONS:
            raise UnknownValueError(IdenfyProvider.name, "notification", "notification")
        payload = load_json_object(delivery.body)
        status = payload.get("status")
        if not isinstance(status, dict):
            raise ParseError("field 'status' missing or not an object")
        overall = require_str(status, "overall", max_length=40)
        occurred = _occurred_at(payload, delivery.received_at)
        return _parsed(payload, status, overall, occurred, Source.WEBHOOK, delivery.notification)

    def dedupe_key(self, delivery: Delivery, parsed: Parsed | None) -> str:
        """iDenfy signs no id or timestamp: the same content is the same delivery."""
        return "sha256:" + content_digest(delivery.body)

    def parse_status(self, session_id: str, answer: Any, received_at: datetime) -> Parsed:
        """The `/api/v2/status` answer (`status` is the overall value) → one observation."""
        if not isinstance(answer, dict):
            raise ParseError("status answer is not a JSON object")
        overall = require_str(answer, "status", max_length=40)
        answer = {**answer, "scanRef": answer.get("scanRef") or session_id}
        return _parsed(answer, answer, overall, received_at, Source.POLL, None)

    def client(self, http: httpx.Client) -> ProviderClient:
        """This provider's API client."""
        return IdenfyClient(self.settings, http)


def _occurred_at(payload: dict[str, Any], received_at: datetime) -> datetime:
    for key in ("finishTime", "startTime"):
        value = payload.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return from_unix(value, field=key)
    return received_at


def _decided_by(status: dict[str, Any], notification: str | None, final: object) -> DecidedBy:
    """Manual only when a person decided: the manual-finished notification, or a result whose
    manual fields are filled. A `final: false` result is preliminary whatever its manual fields
    say (go-idenfy testdata/webhook.1.json): the automation's, until the final one."""
    if notification == "manual-finished":
        return DecidedBy.MANUAL
    if final is False:
        return DecidedBy.AUTO
    filled = any(isinstance(status.get(k), str) and status[k] for k in MANUAL_FIELDS)
    return DecidedBy.MANUAL if filled else DecidedBy.AUTO


def _reasons(status: dict[str, Any]) -> tuple[str, ...]:
    reasons = [
        f"{k}:{status[k]}"[:64]
        for k in REASON_FIELDS
        if isinstance(status.get(k), str) and status[k]
    ]
    for key in TAG_FIELDS:
        tags = status.get(key)
        if isinstance(tags, list):
            reasons.extend(f"{key}:{t}"[:64] for t in tags[:20] if isinstance(t, str))
    return tuple(reasons)


def _canonical(overall: str, notification: str | None, final: object) -> Status | None:
    """DESIGN §2: a verdict in `status.overall` is read on every notification, the expired and
    cancelled ones too (iDenfy sends its expiry webhook late, after the decision); otherwise
    those two end the session. A `final: false` verdict is review until the final one."""
    if overall in VERDICT_VALUES:
        return Status.REVIEW if final is False else OVERALL_MAP[overall]
    if notification == "cancelled":
        return Status.CANCELED
    if notification == "expired":
        return Status.EXPIRED
    if overall in LIFECYCLE_ONLY:
        return None
    if overall not in OVERALL_MAP:
        raise UnknownValueError(IdenfyProvider.name, "status.overall")
    return OVERALL_MAP[overall]


def _parsed(
    payload: dict[str, Any],
    status: dict[str, Any],
    overall: str,
    occurred: datetime,
    source: Source,
    notification: str | None,
) -> Parsed:
    scan_ref = require_str(payload, "scanRef", max_length=64)
    user_ref = optional_str(payload, "clientId", max_length=100)
    canonical = _canonical(overall, notification, payload.get("final"))
    if canonical is None:
        return Parsed(session_id=scan_ref, user_ref=user_ref)
    details: dict[str, object] = {
        k: payload[k]
        for k in ("data", "fileUrls", "final", "platform", "externalRef")
        if k in payload
    }
    observation = Observation(
        provider=IdenfyProvider.name,
        session_id=scan_ref,
        status=canonical,
        occurred_at=occurred,
        source=source,
        decided_by=_decided_by(status, notification, payload.get("final")),
        user_ref=user_ref,
        provider_status=f"{notification or 'status'}:{overall}"[:64],
        reasons=_reasons(status),
        details=details,
        final=_final(payload.get("final"), canonical),
    )
    return Parsed(session_id=scan_ref, user_ref=user_ref, observations=(observation,))


def _final(flag: object, canonical: Status) -> bool | None:
    """iDenfy's `final` flag: True means no further webhook for this verification."""
    if not isinstance(flag, bool):
        return None
    return flag and canonical not in IN_FLIGHT_STATUSES


class IdenfyClient:
    """iDenfy API: HTTP Basic with API key and secret."""

    def __init__(self, settings: ProviderSettings, http: httpx.Client) -> None:
        self.settings, self.http = settings, http

    def _auth(self) -> tuple[str, str]:
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        secret = self.settings.api_secret.get_secret_value() if self.settings.api_secret else ""
        return key, secret

    def create_session(
        self, user_ref: str, options: dict[str, Any], *, callback_url: str | None
    ) -> CreatedSession:
        """`POST /api/v2/token {clientId}`; never sends `callbackUrl` (it would bypass the
        per-notification webhook URLs we route on)."""
        body = {k: v for k, v in options.items() if k in CREATE_OPTIONS}
        body["clientId"] = user_ref
        answer = request_json(
            self.http,
            "POST",
            f"{self.settings.base_url}/api/v2/token",
            json=body,
            auth=self._auth(),
        )
        token = answer["authToken"]
        return CreatedSession(
            session_id=str(answer["scanRef"]),
            start_url=f"{self.settings.base_url}/api/v2/redirect?authToken={token}",
        )

    def fetch_status(self, session_id: str) -> Any:
        """`POST /api/v2/status {scanRef}` — a rare fallback only, as iDenfy asks."""
        return request_json(
            self.http,
            "POST",
            f"{self.settings.base_url}/api/v2/status",
            json={"scanRef": session_id},
            auth=self._auth(),
        )


CREATE_OPTIONS = frozenset(
    {
        "locale",
        "expiryTime",
        "sessionLength",
        "documents",
        "country",
        "tokenType",
        "successUrl",
        "errorUrl",
        "unverifiedUrl",
        "externalRef",
    }
)
"""Token options a caller may pass through `options` (never callbackUrl)."""
