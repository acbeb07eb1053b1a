"""docverify (Transmit Security Verify) simulator.

Implements (docs/PROVIDERS.md "docverify"; the Transmit Verify OpenAPI, api-evangelist/
transmit-security openapi/_original/transmit-security-identity-verification-openapi.yml @05e4c0d9):
`POST /oidc/token` (form: client_id, client_secret, grant_type=client_credentials,
resource=https://verify.identity.security; HTTP Basic client auth also accepted) issuing JWT-shaped
Bearer tokens that expire after `token_expires_in` seconds; under `/verify`: `POST
/api/v1/verification` → 201, `GET /api/v1/verification/{sid}/result`, `DELETE
/api/v1/verification/{sid}`, and the hosted page `GET /app/{start_token}`. No webhooks: when a
session reaches `complete` or `error` the simulator performs the browser redirect itself, `GET
callback_url?sessionId=<sid>&state=<state>` (redirects not followed).

The result answers in the shape the deprecated `detailed` query parameter asks for: `detailed=true`
gets `CompleteSessionResult` / `IncompleteSessionResult` ({"session_id", "status"} only, status
pending|capturing|processing|recapture|error); anything else (absent, `false`) gets
`DeprecatedSessionResult` (status pending|…|complete|error; once complete `recommendation`, and
`verified_info` when ALLOW, else `rejection_description` and `extracted_info`). Each session's truth
counts the reads of each shape (`result_reads`).

`error` is an incomplete status, not a verdict: script it as outcome `requires_input` with
`provider_status: "error"` (canonical requires_input, DESIGN §2); `recapture` is the other way to
requires_input (the user stays in the hosted app: no redirect).

ASSUMED / simulator-only (not in the provider documents): error bodies, the 200 body of DELETE, the
check `reasons` and `rejection_description` strings, no redirect after `recapture`, that `error` is
final and redirects, and that a session deleted before completion counts as canonical `canceled`.
Issued tokens survive /_sim/reset.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .base import ProviderSimulator
from .delivery import BROWSER_USER_AGENT, Delivery
from .httputil import (
    bearer_token,
    html_page,
    iso_utc,
    json_body,
    json_response,
    random_alnum,
    with_query,
)
from .oauth import TokenIssuer
from .payloads import docverify_deprecated_result, docverify_result
from .session import SimSession, Step

RESOURCE = "https://verify.identity.security"
RECOMMENDATION_CANONICAL = {"ALLOW": "verified", "CHALLENGE": "review", "DENY": "rejected"}
OUTCOME_RECOMMENDATION = {"verified": "ALLOW", "review": "CHALLENGE", "rejected": "DENY"}
LEAD_IN = {
    "pending": ("capturing", "processing"),
    "capturing": ("processing",),
    "processing": (),
    "recapture": ("capturing", "processing"),
}
TOKEN_ERROR = {"message": "Access token is malformed, missing data, or expired", "error_code": 401}


def _oauth_error(status: int, error: str, description: str) -> Response:
    """An OAuth 2.0 error response."""
    return json_response({"error": error, "error_description": description}, status)


class DocverifySimulator(ProviderSimulator):
    """Transmit Verify: client-credentials tokens, sessions, results and browser redirects."""

    name = "docverify"
    api_prefix = "/verify"
    token_path = "/oidc/token"
    provider_defaults = {
        "client_id": "test_docverify_client_id",
        "client_secret": "test_docverify_client_secret",
        "token_expires_in": 3600,
    }
    provider_kinds = {
        "client_id": "credential",
        "client_secret": "credential",
        "token_expires_in": ("int", 1, 86400),
    }
    status_canonical = {
        "pending": "pending",
        "capturing": "processing",
        "processing": "processing",
        "recapture": "requires_input",
        "error": "requires_input",
    }
    outcomes = ("verified", "review", "rejected", "requires_input")
    alternatives = {"requires_input": ("recapture", "error")}

    def __init__(self, **config: Any) -> None:
        self.tokens = TokenIssuer()
        self.start_tokens: dict[str, str] = {}  # start token -> session id
        super().__init__(**config)

    def provider_rules(self) -> list[Rule]:
        """Token endpoint and the /verify API."""
        return [
            Rule("/oidc/token", methods=["POST"], endpoint="token"),
            Rule("/verify/api/v1/verification", methods=["POST"], endpoint="create"),
            Rule("/verify/api/v1/verification/<sid>/result", methods=["GET"], endpoint="result"),
            Rule("/verify/api/v1/verification/<sid>", methods=["DELETE"], endpoint="delete"),
            Rule("/verify/app/<start_token>", methods=["GET"], endpoint="app_page"),
        ]

    def reset_provider_state(self) -> None:
        """Forget start tokens (access tokens stay valid)."""
        self.start_tokens.clear()

    # ----- token endpoint -----------------------------------------------------------------------
    def on_token(self, request: Request) -> Response:
        """POST /oidc/token (client credentials grant; form fields or HTTP Basic client auth)."""
        self.count("token_calls")
        if request.mimetype != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "expected a form body")
        form = request.form
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if request.authorization is not None and request.authorization.type == "basic":
            client_id = request.authorization.username or ""
            client_secret = request.authorization.password or ""
        if not (
            hmac.compare_digest(client_id, self.config["client_id"])
            and hmac.compare_digest(client_secret, self.config["client_secret"])
        ):
            return self.auth_failed(_oauth_error(401, "invalid_client", "authentication failed"))
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "use client_credentials")
        if form.get("resource") != RESOURCE:
            return _oauth_error(400, "invalid_target", f"resource must be {RESOURCE}")
        lifetime = self.config["token_expires_in"]
        token = self.tokens.issue(
            issuer=f"{self.root_url}/oidc",
            subject=client_id,
            audience=RESOURCE,
            lifetime_s=lifetime,
        )
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        return json_response(answer)

    def _unauthorized(self, request: Request) -> Response | None:
        """A 401 unless the request carries a valid, unexpired Bearer token."""
        if self.tokens.is_valid(bearer_token(request)):
            return None
        return self.auth_failed(json_response(TOKEN_ERROR, 401))

    # ----- verification API -----------------------------------------------------------------------
    def on_create(self, request: Request) -> Response:
        """POST /verify/api/v1/verification."""
        denied = self._unauthorized(request)
        if denied:
            return denied
        body = json_body(request)
        callback_url, state = (body or {}).get("callback_url"), (body or {}).get("state")
        customer = (body or {}).get("customer_information") or {}
        if (
            body is None
            or not isinstance(callback_url, (str, type(None)))
            or not isinstance(state, (str, type(None)))
            or not isinstance(customer, dict)
        ):
            return json_response(
                {"message": "Request is malformed or missing required fields"}, 400
            )
        self.count("create_calls")
        session_id = random_alnum(20)
        start_token = secrets.token_hex(16)
        session = SimSession(
            id=session_id, provider_status="pending", user_ref=customer.get("external_user_id")
        )
        session.extra.update(
            callback_url=callback_url,
            state=state,
            start_token=start_token,
            recommendation=None,
            result=None,
            deprecated=None,
            result_reads={"detailed": 0, "deprecated": 0},
        )
        with self.lock:
            self.start_tokens[start_token] = session_id
            self.add_session(session)
        return json_response(
            {
                "start_token": start_token,
                "session_id": session_id,
                "expiration": iso_utc(time.time() + 86400),
                "missing_images": ["document_front", "document_back", "selfie"],
            },
            201,
        )

    def on_result(self, request: Request, sid: str) -> Response:
        """GET /verify/api/v1/verification/{sid}/result (honours status chaos)."""
        denied = self._unauthorized(request) or self.status_chaos(
            "GET /verify/api/v1/verification/{sid}/result"
        )
        if denied:
            return denied
        detailed = request.args.get("detailed", "").lower() == "true"
        with self.lock:
            session = self.sessions.get(sid)
            if session is None or session.deleted:
                return json_response({"message": "Session not found"}, 404)
            session.extra["result_reads"]["detailed" if detailed else "deprecated"] += 1
            if session.provider_status != "complete":
                return json_response({"session_id": sid, "status": session.provider_status})
            return json_response(
                {
                    "session_id": sid,
                    "status": "complete",
                    "recommendation": session.extra["recommendation"],
                    **session.extra["result" if detailed else "deprecated"],
                }
            )

    def on_delete(self, request: Request, sid: str) -> Response:
        """DELETE /verify/api/v1/verification/{sid}: the session and its PII are gone."""
        denied = self._unauthorized(request)
        if denied:
            return denied
        with self.lock:
            session = self.sessions.get(sid)
            if session is None or session.deleted:
                return json_response({"message": "Session not found"}, 404)
            self.abort_script(session)
            session.deleted = True
            session.extra.update(result=None, deprecated=None)
            return json_response({"session_id": sid, "deleted": True})

    def on_app_page(self, request: Request, start_token: str) -> Response:
        """GET /verify/app/{start_token}: the hosted flow (trivial page)."""
        if start_token not in self.start_tokens:
            return html_page("Not found", "Unknown start token.", 404)
        return html_page("Identity verification", "Simulated document capture.")

    # ----- scripting ------------------------------------------------------------------------------
    def _redirect(self, session: SimSession) -> Delivery:
        """The user's browser returning to callback_url?sessionId=&state=."""
        target = session.extra["callback_url"] or self.config["callback_url"]
        params = {"sessionId": session.id}
        if session.extra["state"] is not None:
            params["state"] = session.extra["state"]
        return Delivery(
            session.id,
            "redirect",
            "redirect",
            "GET",
            with_query(target, params) if target else None,
            {"User-Agent": BROWSER_USER_AGENT},
        )

    def _results(self, recommendation: str) -> dict[str, Any]:
        """A complete session's detailed and deprecated result fields (fake PII, recorded)."""
        serial_number = secrets.token_hex(4).upper()
        self.pii.record(serial_number)
        person = self.pii.person()
        return {
            "result": docverify_result(person, serial_number, recommendation),
            "deprecated": docverify_deprecated_result(person, serial_number, recommendation),
        }

    def _step(self, status: str, recommendation: str | None = None) -> Step:
        """A transition to status (complete carries a recommendation)."""

        def apply(session: SimSession) -> list[Delivery]:
            session.set_status(status)
            session.decided_by = "auto" if status in ("complete", "error", "recapture") else None
            session.final = status in ("complete", "error")
            if recommendation is not None:
                session.extra.update(recommendation=recommendation, **self._results(recommendation))
            return [self._redirect(session)] if session.final else []

        return Step(status if recommendation is None else f"{status}:{recommendation}", apply)

    def plan(
        self,
        session: SimSession,
        outcome: str,
        manual: bool,
        provider_status: str | None,
        variant: str | None,
    ) -> list[Step]:
        """pending → capturing → processing → complete(ALLOW|CHALLENGE|DENY) | error | recapture."""
        lead_in = [self._step(status) for status in LEAD_IN[session.provider_status]]
        if outcome == "requires_input":
            return [*lead_in, self._step(provider_status or "recapture")]
        return [*lead_in, self._step("complete", OUTCOME_RECOMMENDATION[outcome])]

    def canonical(self, session: SimSession) -> str:
        """complete maps by recommendation; a session deleted before finishing is canceled."""
        if session.deleted and not session.final:
            return "canceled"
        if session.provider_status == "complete":
            return RECOMMENDATION_CANONICAL[session.extra["recommendation"]]
        return self.status_canonical[session.provider_status]

    def truth_extra(self, session: SimSession) -> dict[str, Any]:
        """Adds the recommendation, state and the reads of each result shape."""
        return {
            "recommendation": session.extra["recommendation"],
            "state": session.extra["state"],
            "result_reads": dict(session.extra["result_reads"]),
        }
