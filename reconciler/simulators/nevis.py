"""Nevis Authentication Cloud identity-verification simulator.

Implements (docs/PROVIDERS.md "nevis"): `Authorization: Bearer <access_key>` on, under `/api/v1`,
`POST /idverification/sessions` → {"sessionId": "<9 digits>", "startUrl":
"<root>/idv/welcome.html?tc=<id>"} and `GET /idverification/sessions/{id}` → {"sessionId", "status",
"updatedAt"} plus "result" when final. The hosted page `GET /idv/welcome.html?tc=` is trivial. No
webhooks: when the session finishes the simulator performs the browser redirect itself to the
customer's redirect URL (config `callback_url`: Nevis fixes it per customer when ordering).

The redirect, by default `GET <callback_url>?sessionId=<id>` (our ASSUMPTION: Nevis documents the
redirect with no parameters at all), has real-world variants (script "variant", or config
"variants" shares):
- `bare_redirect`: `GET <callback_url>` with no parameters, as documented: it names no session, so
  only polling can settle it (delivery event "redirect:bare").
- `unknown_id_redirect`: `GET <callback_url>?sessionId=<nine digits no session has>` (a stale,
  foreign or forged link; delivery event "redirect:unknown_id").

ASSUMED (as PROVIDERS.md): the /api/v1 prefix, final statuses verified|failed, `updatedAt`, the
redirect's `sessionId` parameter. Simulator-only: the create answer is 200, the contents of `result`
(errorCode on failure; person and document fake PII on success), error bodies, and the errorCode
values.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .base import ProviderSimulator
from .delivery import BROWSER_USER_AGENT, Delivery
from .httputil import bearer_token, html_page, iso_utc, json_response, with_query
from .payloads import nevis_result
from .session import SimSession, Step

ERROR_CODES = (
    "DOCUMENT_NOT_READABLE",
    "FACE_MISMATCH",
    "DOCUMENT_EXPIRED",
    "LIVENESS_CHECK_FAILED",
)
OUTCOME_STATUS = {"verified": "verified", "rejected": "failed"}
VARIANTS = {
    "bare_redirect": "the redirect to the fixed customer URL with no parameters (as documented)",
    "unknown_id_redirect": "the redirect naming a session id nobody created",
}


class NevisSimulator(ProviderSimulator):
    """Nevis identity-verification sessions, status polling and the end-of-flow redirect."""

    name = "nevis"
    api_prefix = "/api/v1"
    provider_defaults = {"access_key": "test_nevis_access_key"}
    provider_kinds = {"access_key": "credential"}
    status_canonical = {
        "pending": "pending",
        "in_progress": "processing",
        "verified": "verified",
        "failed": "rejected",
    }
    outcomes = ("verified", "rejected")
    variants = VARIANTS

    def provider_rules(self) -> list[Rule]:
        """Nevis API routes and the hosted page."""
        return [
            Rule("/api/v1/idverification/sessions", methods=["POST"], endpoint="create"),
            Rule("/api/v1/idverification/sessions/<session_id>", methods=["GET"], endpoint="get"),
            Rule("/idv/welcome.html", methods=["GET"], endpoint="welcome_page"),
        ]

    def _unauthorized(self, request: Request) -> Response | None:
        """A 401 unless the Bearer access key is right."""
        token = bearer_token(request)
        if token is not None and hmac.compare_digest(token, self.config["access_key"]):
            return None
        return self.auth_failed(
            json_response({"error": "unauthorized", "message": "Invalid access key"}, 401)
        )

    def on_create(self, request: Request) -> Response:
        """POST /api/v1/idverification/sessions."""
        denied = self._unauthorized(request)
        if denied:
            return denied
        if request.get_data() and not isinstance(request.get_json(force=True, silent=True), dict):
            return json_response(
                {"error": "bad_request", "message": "body must be a JSON object"}, 400
            )
        self.count("create_calls")
        with self.lock:
            session_id = self._unused_id()
            session = self.add_session(SimSession(id=session_id, provider_status="pending"))
            session.extra["result"] = None
        return json_response(
            {
                "sessionId": session_id,
                "startUrl": f"{self.root_url}/idv/welcome.html?tc={session_id}",
            }
        )

    def _unused_id(self) -> str:
        """A nine-digit session id no session has (lock held)."""
        session_id = str(secrets.randbelow(900_000_000) + 100_000_000)
        while session_id in self.sessions:
            session_id = str(secrets.randbelow(900_000_000) + 100_000_000)
        return session_id

    def on_get(self, request: Request, session_id: str) -> Response:
        """GET /api/v1/idverification/sessions/{id} (honours status chaos)."""
        denied = self._unauthorized(request) or self.status_chaos(
            "GET /api/v1/idverification/sessions/{id}"
        )
        if denied:
            return denied
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                return json_response({"error": "not_found", "message": "Unknown session"}, 404)
            answer: dict[str, Any] = {
                "sessionId": session.id,
                "status": session.provider_status,
                "updatedAt": iso_utc(session.updated_at),
            }
            if session.final:
                answer["result"] = session.extra["result"]
            return json_response(answer)

    def on_welcome_page(self, request: Request) -> Response:
        """GET /idv/welcome.html?tc=: the hosted flow (trivial)."""
        if request.args.get("tc") not in self.sessions:
            return html_page("Not found", "Unknown verification session.", 404)
        return html_page("Identity verification", "Simulated consent and document capture.")

    def _result(self, status: str) -> dict[str, Any]:
        """The ASSUMED result object of a finished session."""
        if status == "failed":
            return {"errorCode": secrets.choice(ERROR_CODES)}
        return nevis_result(self.pii.person())

    def _redirect(self, session: SimSession, variant: str | None) -> Delivery:
        """The user's browser sent on to the customer's fixed redirect URL."""
        target, event = self.config["callback_url"], "redirect"
        if target and variant == "bare_redirect":
            event = "redirect:bare"
        elif target and variant == "unknown_id_redirect":
            target, event = (
                with_query(target, {"sessionId": self._unused_id()}),
                "redirect:unknown_id",
            )
        elif target:
            target = with_query(target, {"sessionId": session.id})
        headers = {"User-Agent": BROWSER_USER_AGENT}
        return Delivery(session.id, "redirect", event, "GET", target, headers)

    def _step(self, status: str, variant: str | None = None) -> Step:
        """A transition to status; a final one ends with the browser redirect."""

        def apply(session: SimSession) -> list[Delivery]:
            session.set_status(status)
            session.final = status in ("verified", "failed")
            if not session.final:
                return []
            session.decided_by = "auto"
            session.extra["result"] = self._result(status)
            return [self._redirect(session, variant)]

        return Step(status, apply)

    def plan(
        self,
        session: SimSession,
        outcome: str,
        manual: bool,
        provider_status: str | None,
        variant: str | None,
    ) -> list[Step]:
        """pending → in_progress → verified|failed (the redirect as the variant says)."""
        lead_in = [self._step("in_progress")] if session.provider_status == "pending" else []
        return [*lead_in, self._step(OUTCOME_STATUS[outcome], variant)]
