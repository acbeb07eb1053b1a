"""iDenfy simulator.

Implements (docs/PROVIDERS.md "idenfy", shared/providers/idenfy.txt): HTTP Basic
`api_key:api_secret` on `POST /api/v2/token` (→ 201 token response echoing the request with
documented defaults, plus message, authToken, scanRef (uuid), clientId, digitString) and `POST
/api/v2/status {"scanRef"}` (→ status, final, autoDocument, autoFace, manualDocument, manualFace,
fraudTags, mismatchTags, scanRef, clientId); `GET /api/v2/redirect?authToken=` (trivial page).
Result-callback webhooks signed `Idenfy-Signature: hex(HMAC-SHA256(webhook_secret, raw body))`,
POSTed to `<webhook_url>/<notification>` (auto-finished, manual-finished, expired) when
`per_notification_urls` (default true), else to `webhook_url`; a token's `callbackUrl` overrides
both (as the document says).

ASSUMED / simulator-only: error bodies ({"identifier","message"}); the preliminary AUTO_FINISHED
(final=false) webhook before a manual review carries the opposite automatic verdict (APPROVED before
a manual DENIED, DENIED before a manual APPROVED, SUSPECTED before a manual SUSPECTED) while /status
reads REVIEWING; the expired webhook is final=true with empty data; CANCELLED and RESUBMITTED are
not simulated (their overall status is not documented).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .base import ProviderSimulator
from .delivery import Delivery
from .httputil import (
    dumps,
    html_page,
    json_body,
    json_response,
    random_alnum,
    with_path_segment,
)
from .payloads import IDENFY_TOKEN_DEFAULTS, idenfy_data
from .session import SimSession, Step

FILES_HOST = "s3.idenfy-sim.invalid"
OUTCOME_OVERALL = {"verified": "APPROVED", "rejected": "DENIED", "review": "SUSPECTED"}
PRELIMINARY_OVERALL = {"APPROVED": "DENIED", "DENIED": "APPROVED", "SUSPECTED": "SUSPECTED"}
# overall -> (document status, face status, mismatchTags)
VERDICT = {
    "APPROVED": ("DOC_VALIDATED", "FACE_MATCH", []),
    "DENIED": ("DOC_VALIDATED", "FACE_MISMATCH", []),
    "SUSPECTED": ("DOC_VALIDATED", "FACE_MATCH", ["SURNAME"]),
}
STATUS_KEYS = (
    "autoDocument",
    "autoFace",
    "manualDocument",
    "manualFace",
    "fraudTags",
    "mismatchTags",
)


def _error(status: int, identifier: str, message: str) -> Response:
    """iDenfy-style error body (ASSUMED shape)."""
    return json_response({"identifier": identifier, "message": message}, status)


class IdenfySimulator(ProviderSimulator):
    """iDenfy tokens, status fallback, and signed result-callback webhooks."""

    name = "idenfy"
    provider_defaults = {
        "api_key": "test_idenfy_api_key",
        "api_secret": "test_idenfy_api_secret",
        "webhook_secret": "test_idenfy_signing_key",
        "per_notification_urls": True,
    }
    provider_kinds = {
        "api_key": "credential",
        "api_secret": "credential",
        "per_notification_urls": "bool",
    }
    status_canonical = {
        "ACTIVE": "pending",
        "REVIEWING": "processing",
        "APPROVED": "verified",
        "DENIED": "rejected",
        "SUSPECTED": "review",
        "EXPIRED": "expired",
    }
    outcomes = ("verified", "rejected", "review", "expired")
    manual_outcomes = ("verified", "rejected", "review")

    def __init__(self, **config: Any) -> None:
        self.auth_tokens: dict[str, str] = {}  # authToken -> scanRef
        super().__init__(**config)

    def provider_rules(self) -> list[Rule]:
        """iDenfy API routes."""
        return [
            Rule("/api/v2/token", methods=["POST"], endpoint="token"),
            Rule("/api/v2/status", methods=["POST"], endpoint="status"),
            Rule("/api/v2/redirect", methods=["GET"], endpoint="redirect_page"),
        ]

    def reset_provider_state(self) -> None:
        """Forget auth tokens."""
        self.auth_tokens.clear()

    def _unauthorized(self, request: Request) -> Response | None:
        """A 401 unless HTTP Basic api_key:api_secret is right."""
        auth = request.authorization
        if (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest(auth.username or "", self.config["api_key"])
            and hmac.compare_digest(auth.password or "", self.config["api_secret"])
        ):
            return None
        message = "Provided API key or secret is invalid."
        return self.auth_failed(_error(401, "AUTHORIZATION_FAILED", message))

    def on_token(self, request: Request) -> Response:
        """POST /api/v2/token: create a verification (scanRef) and its authToken."""
        denied = self._unauthorized(request)
        if denied:
            return denied
        body = json_body(request) or {}
        client_id = body.get("clientId")
        if (
            not isinstance(client_id, str)
            or not 0 < len(client_id) <= 100
            or not client_id.isascii()
        ):
            return _error(400, "MISSING_PARAMETER", "clientId is required (ASCII, <= 100 chars).")
        self.count("create_calls")
        scan_ref, auth_token = str(uuid.uuid4()), random_alnum(40)
        answer = {
            **IDENFY_TOKEN_DEFAULTS,
            **{key: body[key] for key in IDENFY_TOKEN_DEFAULTS if key in body},
        }
        for name_key in ("firstName", "lastName"):
            if isinstance(answer[name_key], str):
                answer[name_key] = answer[name_key].upper()
        answer.update(message="Token created successfully", authToken=auth_token, scanRef=scan_ref)
        answer.update(clientId=client_id, digitString=None)
        answer["allowedDocuments"] = {"ALL": list(IDENFY_TOKEN_DEFAULTS["documents"])}
        callback_url = answer["callbackUrl"] if isinstance(answer["callbackUrl"], str) else None
        session = SimSession(id=scan_ref, provider_status="ACTIVE", user_ref=client_id)
        status: dict[str, Any] = {"overall": None, **dict.fromkeys(STATUS_KEYS)}
        status.update(fraudTags=[], mismatchTags=[])
        session.extra.update(auth_token=auth_token, external_ref=answer["externalRef"])
        session.extra.update(callback_url=callback_url, status=status, notifications=[])
        with self.lock:
            self.auth_tokens[auth_token] = scan_ref
            self.add_session(session)
        return json_response(answer, 201)

    def on_status(self, request: Request) -> Response:
        """POST /api/v2/status {"scanRef"} (honours status chaos)."""
        denied = self._unauthorized(request) or self.status_chaos("POST /api/v2/status")
        if denied:
            return denied
        scan_ref = (json_body(request) or {}).get("scanRef")
        with self.lock:
            session = self.sessions.get(scan_ref) if isinstance(scan_ref, str) else None
            if session is None:
                return _error(404, "NOT_FOUND", "Verification not found.")
            answer = {"status": session.provider_status, "final": session.final}
            answer.update({key: session.extra["status"][key] for key in STATUS_KEYS})
            answer.update(scanRef=session.id, clientId=session.user_ref)
            return json_response(answer)

    def on_redirect_page(self, request: Request) -> Response:
        """GET /api/v2/redirect?authToken=: the verification UI (trivial)."""
        if request.args.get("authToken") not in self.auth_tokens:
            return html_page("Not found", "Invalid or expired authToken.", 404)
        return html_page("iDenfy", "Simulated identity verification.")

    # ----- webhooks -------------------------------------------------------------------------------
    def _webhook(self, session: SimSession, notification: str) -> Delivery:
        """The signed result callback for the session's current state."""
        extra = session.extra
        if "person" not in extra and extra["status"]["overall"] != "EXPIRED":
            extra["person"] = self.pii.person()
            extra["file_urls"] = {
                kind: self.pii.file_url(FILES_HOST, f"{session.id}/{kind.lower()}.png")
                for kind in ("FRONT", "BACK", "FACE")
            }
            extra["client_ip"] = self.pii.client_ip()
        payload = {
            "final": session.final,
            "platform": "PC",
            "status": {**extra["status"], "additionalSteps": None},
            "data": idenfy_data(extra.get("person")),
            "fileUrls": extra.get("file_urls", {}),
            "AML": None,
            "LID": None,
            "scanRef": session.id,
            "externalRef": extra["external_ref"],
            "clientId": session.user_ref,
            "startTime": int(session.created_at),
            "finishTime": int(time.time()),
            "clientIp": extra.get("client_ip"),
            "clientIpCountry": "LT" if "client_ip" in extra else None,
        }
        body = dumps(payload)
        headers = {"Content-Type": "application/json", "User-Agent": "iDenfy-Webhooks/1.0"}
        secret = self.config["webhook_secret"]
        if secret:
            mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256)
            headers["Idenfy-Signature"] = mac.hexdigest()
        url = extra["callback_url"] or self.config["webhook_url"]
        if url and not extra["callback_url"] and self.config["per_notification_urls"]:
            url = with_path_segment(url, notification)
        extra["notifications"].append(notification)
        return Delivery(session.id, "webhook", notification, "POST", url, headers, body)

    def _step(self, notification: str, overall: str, status: str, final: bool) -> Step:
        """A callback with overall verdict; the session's provider status becomes status."""

        def apply(session: SimSession) -> list[Delivery]:
            session.set_status(status)
            session.final = final
            wire_status = session.extra["status"]
            wire_status["overall"] = overall
            if overall in VERDICT:
                document, face, mismatch_tags = VERDICT[overall]
                manual = notification == "manual-finished"
                prefix = "manual" if manual else "auto"
                wire_status.update({f"{prefix}Document": document, f"{prefix}Face": face})
                wire_status["mismatchTags"] = list(mismatch_tags)
                session.decided_by = "manual" if manual else ("auto" if final else None)
            return [self._webhook(session, notification)]

        return Step(f"{notification}:{overall}", apply)

    def plan(
        self, session: SimSession, outcome: str, manual: bool, provider_status: str | None
    ) -> list[Step]:
        """ACTIVE → AUTO_FINISHED | AUTO_FINISHED(preliminary) → MANUAL_FINISHED | EXPIRED."""
        if outcome == "expired":
            return [self._step("expired", "EXPIRED", "EXPIRED", True)]
        overall = OUTCOME_OVERALL[outcome]
        if not manual:
            return [self._step("auto-finished", overall, overall, True)]
        return [
            self._step("auto-finished", PRELIMINARY_OVERALL[overall], "REVIEWING", False),
            self._step("manual-finished", overall, overall, True),
        ]

    def truth_extra(self, session: SimSession) -> dict[str, Any]:
        """Adds clientId, authToken and the notifications sent."""
        extra = session.extra
        return {
            "scanRef": session.id,
            "clientId": session.user_ref,
            "authToken": extra["auth_token"],
            "notifications": list(extra["notifications"]),
        }
