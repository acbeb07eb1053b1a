"""iDenfy simulator.

Implements (docs/PROVIDERS.md "idenfy", shared/providers/idenfy.txt): HTTP Basic
`api_key:api_secret` on `POST /api/v2/token` (→ 201 token response echoing the request with
documented defaults, plus message, authToken, scanRef (uuid), clientId, digitString) and `POST
/api/v2/status {"scanRef"}` (→ status, final, autoDocument, autoFace, manualDocument, manualFace,
fraudTags, mismatchTags, scanRef, clientId); `GET /api/v2/redirect?authToken=` (trivial page).
Result-callback webhooks signed `Idenfy-Signature: hex(HMAC-SHA256(webhook_secret, raw body))`,
POSTed to `<webhook_url>/<notification>` (auto-finished, manual-finished, expired, cancelled) when
`per_notification_urls` (default true), else to `webhook_url`; a token's `callbackUrl` overrides
both (as the document says).

Real-world variants (script "variant", or config "variants" shares), from public examples:
- `late_expiry`: after the decision, the `expired` notification arrives `late_notification_delay`
  seconds later with the verdict still in `status.overall` and `final: true` (iDenfy holds its
  expiry webhook until the token's lifetime is over, decided or not; the documented
  identification-expired example carries APPROVED with the manual fields filled). /status keeps
  answering the verdict.
- `late_cancel`: the same with a `cancelled` notification (ASSUMED: its payload is not documented;
  the result shape with the verdict is sent).
- `manual_prefilled` (manual review only): the preliminary AUTO_FINISHED (`final: false`) already
  carries the eventual verdict with `manualDocument`/`manualFace` filled (as gboddin/go-idenfy
  testdata/webhook.1.json @342750f5), then MANUAL_FINISHED `final: true`.
- `legacy_shape`: the older callback (idenfy/Documentation pages/ResultCallback.md @0c7b4bd8): no
  `final` field; `status{overall, suspicionReasons, autoDocument, autoFace, manualDocument,
  manualFace}`, a smaller `data`, `fileUrls`, `aml`, `lid`, `scanRef`, `clientId`, `platform`;
  POSTed to the single `webhook_url` (the legacy one-URL IDENTIFICATION setup). With a manual
  review it is the old two-callback flow: the automatic result, then the manual one.

ASSUMED / simulator-only: error bodies ({"identifier","message"}); the preliminary AUTO_FINISHED
(final=false) webhook before a manual review carries the opposite automatic verdict (APPROVED before
a manual DENIED, DENIED before a manual APPROVED, SUSPECTED before a manual SUSPECTED) while /status
reads REVIEWING; the expired webhook of a session never decided is final=true with empty data;
RESUBMITTED is not simulated (its overall status is not documented).
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
from .payloads import IDENFY_TOKEN_DEFAULTS, idenfy_data, idenfy_legacy_data
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
LATE_NOTIFICATIONS = {"late_expiry": "expired", "late_cancel": "cancelled"}
VARIANTS = {
    "late_expiry": "after the decision, the expired notification carrying the verdict",
    "late_cancel": "after the decision, a cancelled notification carrying the verdict",
    "manual_prefilled": "a final:false verdict with the manual fields filled, then the final one",
    "legacy_shape": "the older callback with no final field, on the single webhook URL",
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
        "late_notification_delay": 0.5,
    }
    provider_kinds = {
        "api_key": "credential",
        "api_secret": "credential",
        "per_notification_urls": "bool",
        "late_notification_delay": ("float", 0.0, 3600.0),
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
    variants = VARIANTS

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
    def _webhook(self, session: SimSession, notification: str, legacy: bool = False) -> Delivery:
        """The signed result callback for the session's current state (legacy: the older shape
        with no `final`, sent to the single webhook URL)."""
        extra = session.extra
        if "person" not in extra and extra["status"]["overall"] != "EXPIRED":
            extra["person"] = self.pii.person()
            extra["file_urls"] = {
                kind: self.pii.file_url(FILES_HOST, f"{session.id}/{kind.lower()}.png")
                for kind in ("FRONT", "BACK", "FACE")
            }
            extra["client_ip"] = self.pii.client_ip()
        payload = self._legacy_payload(session) if legacy else self._payload(session)
        body = dumps(payload)
        headers = {"Content-Type": "application/json", "User-Agent": "iDenfy-Webhooks/1.0"}
        secret = self.config["webhook_secret"]
        if secret:
            mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256)
            headers["Idenfy-Signature"] = mac.hexdigest()
        url = extra["callback_url"] or self.config["webhook_url"]
        if url and not extra["callback_url"] and self.config["per_notification_urls"]:
            url = url if legacy else with_path_segment(url, notification)
        extra["notifications"].append(notification)
        return Delivery(session.id, "webhook", notification, "POST", url, headers, body)

    def _payload(self, session: SimSession) -> dict[str, Any]:
        """The current callback shape."""
        extra = session.extra
        return {
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

    def _legacy_payload(self, session: SimSession) -> dict[str, Any]:
        """The older callback shape (idenfy/Documentation ResultCallback.md): no `final`."""
        extra, status = session.extra, session.extra["status"]
        return {
            "clientId": session.user_ref,
            "scanRef": session.id,
            "platform": "PC",
            "status": {
                "overall": status["overall"],
                "suspicionReasons": [],
                **{key: status[key] for key in STATUS_KEYS[:4]},
            },
            "data": idenfy_legacy_data(extra.get("person")),
            "fileUrls": extra.get("file_urls", {}),
            "aml": None,
            "lid": None,
        }

    def _step(
        self,
        notification: str,
        overall: str,
        status: str,
        final: bool,
        *,
        legacy: bool = False,
        prefilled: bool = False,
    ) -> Step:
        """A callback with overall verdict; the session's provider status becomes status
        (prefilled: the manual fields are filled as well as the automatic ones)."""

        def apply(session: SimSession) -> list[Delivery]:
            session.set_status(status)
            session.final = final
            wire_status = session.extra["status"]
            wire_status["overall"] = overall
            if overall in VERDICT:
                document, face, mismatch_tags = VERDICT[overall]
                manual = notification == "manual-finished"
                prefixes = ("auto", "manual") if prefilled else ("manual" if manual else "auto",)
                for prefix in prefixes:
                    wire_status.update({f"{prefix}Document": document, f"{prefix}Face": face})
                wire_status["mismatchTags"] = list(mismatch_tags)
                session.decided_by = "manual" if manual else ("auto" if final else None)
            if final:
                session.extra["final_notification"] = notification
            return [self._webhook(session, notification, legacy)]

        return Step(f"{notification}:{overall}", apply)

    def _late_step(self, notification: str) -> Step:
        """A late notification about a decided session: its state as it is, nothing changes."""

        def apply(session: SimSession) -> list[Delivery]:
            return [self._webhook(session, notification)]

        return Step(f"{notification}:late", apply, pause=self.config["late_notification_delay"])

    def variant_problem(
        self, variant: str, outcome: str, manual: bool, provider_status: str | None
    ) -> str | None:
        """Late notifications follow a decision; manual_prefilled needs a manual review."""
        if variant in LATE_NOTIFICATIONS and outcome == "expired":
            return "a late notification follows a decision (not an expiry)"
        if variant == "manual_prefilled" and not manual:
            return "goes with a manual review only"
        return None

    def plan(
        self,
        session: SimSession,
        outcome: str,
        manual: bool,
        provider_status: str | None,
        variant: str | None,
    ) -> list[Step]:
        """ACTIVE → AUTO_FINISHED | AUTO_FINISHED(preliminary) → MANUAL_FINISHED | EXPIRED, then
        the late notification of the variant, if any."""
        legacy = variant == "legacy_shape"
        if outcome == "expired":
            return [self._step("expired", "EXPIRED", "EXPIRED", True, legacy=legacy)]
        overall = OUTCOME_OVERALL[outcome]
        if not manual:
            steps = [self._step("auto-finished", overall, overall, True, legacy=legacy)]
        else:
            prefilled = variant == "manual_prefilled"
            preliminary = overall if prefilled else PRELIMINARY_OVERALL[overall]
            steps = [
                self._step(
                    "auto-finished",
                    preliminary,
                    "REVIEWING",
                    False,
                    legacy=legacy,
                    prefilled=prefilled,
                ),
                self._step("manual-finished", overall, overall, True, legacy=legacy),
            ]
        if variant in LATE_NOTIFICATIONS:
            steps.append(self._late_step(LATE_NOTIFICATIONS[variant]))
        return steps

    def truth_extra(self, session: SimSession) -> dict[str, Any]:
        """Adds clientId, authToken and the notifications sent."""
        extra = session.extra
        return {
            "scanRef": session.id,
            "clientId": session.user_ref,
            "authToken": extra["auth_token"],
            "notifications": list(extra["notifications"]),
            "final_notification": extra.get("final_notification"),
        }
