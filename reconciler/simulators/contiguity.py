"""Contiguity Identity simulator.

Implements (docs/PROVIDERS.md "contiguity"): `POST /vs/create`, `GET /vs?id=`, `POST /vs/cancel`,
all with `Authorization: Token <api_token>` and JSON bodies; v2 webhook envelopes POSTed to
`webhook_url`, signed `Contiguity-Signature: t=<unix>,v1=<hex HMAC-SHA256(key=whsec string,
msg=f"{t}.{raw body}")>`.

Real-world variants (script "variant", or config "variants" shares), from the docs' event list and
prose (contiguity/docs api-reference/webhook/example-v2.mdx, products/identity/vr.mdx): when the
session first reaches verified, failed or requires_input (a Verification Report is generated "even
if a Verification Session fails or requires input"), besides the session event:
- `report_event`: `identity.verification_report.generated`, whose `data` is the report object
  (`id` `vr_…`, `object`, `verification_session` naming the session, `type`, `created`, and the
  "non-sensitive" `age` and `country_of_residence`);
- `anonymous_report_event`: the same report without `verification_session` (only the session's
  `data.verification_report` links them);
- `completed_event`: `identity.verification_session.completed` (named only in the prose: "In
  addition to identity.verification_session.completed, you will also receive this event"; its
  `data` ASSUMED to be the session object) and the report event.
None of them changes the session's status.

ASSUMED (as PROVIDERS.md, which marks these ASSUMED): the get/cancel paths, the Stripe-like session
object and its status values, and that webhook `data` is that object; the report object's fields.
Simulator-only choices (not in PROVIDERS.md): cancel is allowed in created/started/requires_input
(else 400) and sends no webhook; no `.created` or `.canceled` webhook is sent; a `requires_input`
session can be scripted again (user retries, or a manual decision); `verified_outputs` (fake PII)
is added to the object once approved; the start URL is `<base>/start/<vs_id>`, a trivial page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .base import ProviderSimulator, ScriptError
from .delivery import Delivery
from .fakedata import Person
from .httputil import bearer_token, dumps, html_page, json_body, json_response
from .payloads import contiguity_verified_outputs
from .session import SimSession, Step

API_VERSION = "v2025.9.7"
EVENT_STATUSES = (
    "started",
    "processing",
    "verified",
    "failed",
    "requires_input",
    "manually_approved",
    "manually_denied",
)
FINAL_STATUSES = ("verified", "failed", "manually_approved", "manually_denied", "canceled")
CANCELABLE_STATUSES = ("created", "started", "requires_input")
REPORT_STATUSES = ("verified", "failed", "requires_input")
ERROR_MESSAGES = {
    "document_expired": "The provided identity document has expired.",
    "selfie_document_mismatch": "The selfie does not match the face on the document.",
    "document_type_not_supported": "The provided identity document type is not supported.",
    "under_supported_age": "The user is under the supported age.",
}
REPORT_EVENT = "identity.verification_report.generated"
COMPLETED_EVENT = "identity.verification_session.completed"
VARIANT_EVENTS = {
    "report_event": (REPORT_EVENT,),
    "anonymous_report_event": (REPORT_EVENT,),
    "completed_event": (COMPLETED_EVENT, REPORT_EVENT),
}
VARIANTS = {
    "report_event": "identity.verification_report.generated naming its session",
    "anonymous_report_event": "identity.verification_report.generated naming no session",
    "completed_event": "identity.verification_session.completed and the report event",
}
OUTCOME_STATUS = {"verified": "verified", "rejected": "failed", "requires_input": "requires_input"}
MANUAL_STATUS = {"verified": "manually_approved", "rejected": "manually_denied"}
DECIDED_BY = {"verified": "auto", "failed": "auto", "requires_input": "auto"}
DECIDED_BY.update(manually_approved="manual", manually_denied="manual")
LEAD_IN = {
    "created": ("started", "processing"),
    "started": ("processing",),
    "processing": (),
    "requires_input": ("processing",),
}


def _error(status: int, code: str, message: str) -> Response:
    """An error response (ASSUMED shape, Stripe-like)."""
    return json_response({"error": {"code": code, "message": message}}, status)


class ContiguitySimulator(ProviderSimulator):
    """Contiguity Identity verification sessions and signed v2 webhooks."""

    name = "contiguity"
    provider_defaults = {
        "api_token": "test_contiguity_api_token",
        "webhook_secret": "whsec_test_contiguity_secret",
    }
    provider_kinds = {"api_token": "credential"}
    status_canonical = {
        "created": "pending",
        "started": "processing",
        "processing": "processing",
        "requires_input": "requires_input",
        "verified": "verified",
        "failed": "rejected",
        "manually_approved": "verified",
        "manually_denied": "rejected",
        "canceled": "canceled",
    }
    outcomes = ("verified", "rejected", "requires_input", "canceled")
    manual_outcomes = ("verified", "rejected")
    variants = VARIANTS

    def provider_rules(self) -> list[Rule]:
        """Contiguity API routes."""
        return [
            Rule("/vs/create", methods=["POST"], endpoint="create"),
            Rule("/vs", methods=["GET"], endpoint="get"),
            Rule("/vs/cancel", methods=["POST"], endpoint="cancel"),
            Rule("/start/<vs_id>", methods=["GET"], endpoint="start_page"),
        ]

    # ----- API ----------------------------------------------------------------------------------
    def _unauthorized(self, request: Request) -> Response | None:
        """A 401 response unless the request carries the right `Token` credential."""
        token = bearer_token(request, "Token")
        if token is not None and hmac.compare_digest(token, self.config["api_token"]):
            return None
        return self.auth_failed(_error(401, "unauthorized", "Missing or invalid API token"))

    def on_create(self, request: Request) -> Response:
        """POST /vs/create."""
        denied = self._unauthorized(request)
        if denied:
            return denied
        body = json_body(request)
        if body is None or body.get("type") != "document":
            return _error(400, "invalid_request", "JSON body with type 'document' is required")
        if not isinstance(body.get("metadata", {}), dict):
            return _error(400, "invalid_request", "metadata must be an object")
        self.count("create_calls")
        vs_id = "vs_" + secrets.token_hex(12)
        session = SimSession(
            id=vs_id, provider_status="created", user_ref=body.get("client_reference_id")
        )
        session.extra.update(
            metadata=body.get("metadata") or {},
            options=body.get("options") or {},
            return_url=body.get("return_url"),
            error=None,
            verification_report=None,
            verified_outputs=None,
            url=f"{self.root_url}/start/{vs_id}",
        )
        self.add_session(session)
        with self.lock:
            return json_response(self._object(session))

    def _lookup(self, session_id: Any) -> SimSession | Response:
        """The session, or a 400/404 response."""
        if not isinstance(session_id, str) or not session_id:
            return _error(400, "invalid_request", "id is required")
        session = self.sessions.get(session_id)
        if session is None:
            return _error(404, "not_found", "No such verification session")
        return session

    def on_get(self, request: Request) -> Response:
        """GET /vs?id=<vs_id> (honours status chaos)."""
        denied = self._unauthorized(request) or self.status_chaos("GET /vs")
        if denied:
            return denied
        with self.lock:
            found = self._lookup(request.args.get("id"))
            return found if isinstance(found, Response) else json_response(self._object(found))

    def on_cancel(self, request: Request) -> Response:
        """POST /vs/cancel {"id"}."""
        denied = self._unauthorized(request)
        if denied:
            return denied
        with self.lock:
            found = self._lookup((json_body(request) or {}).get("id"))
            if isinstance(found, Response):
                return found
            if found.provider_status not in CANCELABLE_STATUSES:
                message = f"cannot cancel a {found.provider_status} session"
                return _error(400, "session_invalid_state", message)
            self.abort_script(found)
            found.set_status("canceled")
            found.final = True
            return json_response(self._object(found))

    def on_start_page(self, request: Request, vs_id: str) -> Response:
        """The hosted verification page (trivial)."""
        if vs_id not in self.sessions:
            return html_page("Not found", "This verification link is invalid or expired.", 404)
        return html_page("Contiguity Identity", "Simulated verification flow.")

    # ----- objects and webhooks ---------------------------------------------------------------
    def _object(self, session: SimSession) -> dict[str, Any]:
        """The ASSUMED session object."""
        extra = session.extra
        vs_object: dict[str, Any] = {
            "id": session.id,
            "object": "identity.verification_session",
            "status": session.provider_status,
            "type": "document",
            "client_reference_id": session.user_ref,
            "metadata": extra["metadata"],
            "url": extra["url"],
            "return_url": extra["return_url"],
            "error": extra["error"],
            "verification_report": extra["verification_report"],
            "created": int(session.created_at),
            "updated": int(session.updated_at),
        }
        if extra["verified_outputs"] is not None:
            vs_object["verified_outputs"] = extra["verified_outputs"]
        return vs_object

    def _webhook(self, session: SimSession, event_type: str, data: dict[str, Any]) -> Delivery:
        """A signed v2 event about the session."""
        timestamp = str(int(time.time()))
        body = dumps(
            {
                "id": "evt_" + secrets.token_hex(12),
                "type": event_type,
                "timestamp": int(timestamp),
                "api_version": API_VERSION,
                "data": data,
            }
        )
        headers = {"Content-Type": "application/json", "User-Agent": "Contiguity-Webhooks/2.0"}
        secret = self.config["webhook_secret"]
        if secret:
            signature = hmac.new(
                secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256
            ).hexdigest()
            headers["Contiguity-Signature"] = f"t={timestamp},v1={signature}"
        url = self.config["webhook_url"]
        return Delivery(session.id, "webhook", event_type, "POST", url, headers, body)

    def _person(self, session: SimSession) -> Person:
        """The session's fake person (made on first use; its PII is recorded)."""
        if "person" not in session.extra:
            session.extra["person"] = self.pii.person()
        person: Person = session.extra["person"]
        return person

    def _report(self, session: SimSession, named: bool) -> dict[str, Any]:
        """The ASSUMED Verification Report object of a report event (non-sensitive fields)."""
        person = self._person(session)
        report: dict[str, Any] = {
            "id": session.extra["verification_report"],
            "object": "identity.verification_report",
        }
        if named:
            report["verification_session"] = session.id
        report.update(
            type="document",
            created=int(time.time()),
            age=person.age,
            country_of_residence=person.nationality,
        )
        return report

    def _variant_events(self, session: SimSession, variant: str) -> list[Delivery]:
        """The extra events a variant sends beside the session event."""
        if session.extra["verification_report"] is None:
            session.extra["verification_report"] = "vr_" + secrets.token_hex(12)
        deliveries = []
        for event_type in VARIANT_EVENTS[variant]:
            if event_type == COMPLETED_EVENT:
                data = self._object(session)
            else:
                data = self._report(session, named=variant != "anonymous_report_event")
            deliveries.append(self._webhook(session, event_type, data))
        return deliveries

    def _step(self, status: str, variant: str | None = None) -> Step:
        """A transition to status, with its webhook when the status has an event (and the
        variant's extra events, when given)."""

        def apply(session: SimSession) -> list[Delivery]:
            session.set_status(status)
            extra = session.extra
            extra["error"] = None
            if status == "requires_input":
                code = secrets.choice(list(ERROR_MESSAGES))
                extra["error"] = {"code": code, "message": ERROR_MESSAGES[code]}
            if status in REPORT_STATUSES:
                extra["verification_report"] = "vr_" + secrets.token_hex(12)
            if status in ("verified", "manually_approved"):
                extra["verified_outputs"] = contiguity_verified_outputs(self._person(session))
            session.decided_by = DECIDED_BY.get(status)
            session.final = status in FINAL_STATUSES
            event_type = f"identity.verification_session.{status}"
            deliveries = [self._webhook(session, event_type, self._object(session))]
            if status not in EVENT_STATUSES:
                deliveries = []
            return deliveries + (self._variant_events(session, variant) if variant else [])

        return Step(status, apply)

    def variant_problem(
        self, variant: str, outcome: str, manual: bool, provider_status: str | None
    ) -> str | None:
        """A canceled session gets no report."""
        return "a canceled session has no report" if outcome == "canceled" else None

    def plan(
        self,
        session: SimSession,
        outcome: str,
        manual: bool,
        provider_status: str | None,
        variant: str | None,
    ) -> list[Step]:
        """created → started → processing → verified|failed|requires_input[→ manually_*]; a
        variant's events go with the first status that has a report."""
        current = session.provider_status
        if outcome == "canceled":
            if current not in CANCELABLE_STATUSES:
                raise ScriptError(409, f"a {current} session cannot be canceled")
            return [self._step("canceled")]
        if manual:
            statuses = () if current == "requires_input" else (*LEAD_IN[current], "requires_input")
            statuses = (*statuses, MANUAL_STATUS[outcome])
        else:
            statuses = (*LEAD_IN[current], OUTCOME_STATUS[outcome])
        reported = next(
            index
            for index, status in enumerate(statuses)
            if status in REPORT_STATUSES or index == len(statuses) - 1
        )
        return [
            self._step(status, variant if index == reported else None)
            for index, status in enumerate(statuses)
        ]

    def truth_extra(self, session: SimSession) -> dict[str, Any]:
        """Adds the error code and report id."""
        return {
            "error": session.extra["error"],
            "verification_report": session.extra["verification_report"],
        }
