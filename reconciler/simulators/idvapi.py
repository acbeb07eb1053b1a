"""idvapi (the small `/verif/` Identity Verification API) simulator.

Implements (docs/PROVIDERS.md "idvapi" and shared/providers/idvapi.txt): `GET
/verif/?api_key=&user_identifier=` (or `user_id`) serving the verification page (400 "API key is
required" / "User identifier is required", 401 "Invalid API key"), and `POST /verif/submit`
(multipart: api_key, user_identifier, selfie_video, id_photo, optional user_email/user_phone)
answering the documented result. On completion the documented webhook is POSTed, unsigned, with
`User-Agent: IdentityVerification/1.0`, to `webhook_url` exactly (it carries verihook's secret path
token). There is no status endpoint.

ASSUMED (PROVIDERS.md): `check_id` is a uuid4 string; the session id is the `user_identifier`.
Simulator-only: a script (or the page) creates the session implicitly; internal statuses pending →
processing → verified|rejected; a final session may be scripted again (a new check, new check_id);
/verif/submit without a script uses config `default_outcome`; `riskFactors` appears on rejected
results (as the doc's sample code reads).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .base import ProviderSimulator
from .delivery import Delivery
from .httputil import dumps, html_page, iso_utc, json_response
from .payloads import idvapi_submit_answer, idvapi_webhook
from .session import SimSession, Step

USER_AGENT = "IdentityVerification/1.0"
STORAGE_HOST = "idvapi-storage.sim.invalid"


class IdvapiSimulator(ProviderSimulator):
    """The /verif/ API: a hosted page, a multipart submit, and unsigned result webhooks."""

    name = "idvapi"
    provider_defaults = {"api_key": "test_idvapi_api_key", "default_outcome": "verified"}
    provider_kinds = {
        "api_key": "credential",
        "default_outcome": ("choice", ("verified", "rejected")),
    }
    status_canonical = {
        "pending": "pending",
        "processing": "processing",
        "verified": "verified",
        "rejected": "rejected",
    }
    outcomes = ("verified", "rejected")
    rescript_final = True

    def provider_rules(self) -> list[Rule]:
        """The page and the submit endpoint."""
        return [
            Rule("/verif/", methods=["GET"], endpoint="page"),
            Rule("/verif/submit", methods=["POST"], endpoint="submit"),
        ]

    def implicit_session(self, session_id: str) -> SimSession:
        """Sessions are keyed by user_identifier and created on first sight."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                session = SimSession(id=session_id, provider_status="pending", user_ref=session_id)
                session.extra.update(check_id=None, checks=[])
                self.add_session(session)
            return session

    def _credentials_error(
        self, api_key: str | None, user_identifier: str | None
    ) -> Response | None:
        """The documented 400/401 errors, or None."""
        if not api_key:
            return json_response({"success": False, "error": "API key is required"}, 400)
        if not user_identifier:
            return json_response({"success": False, "error": "User identifier is required"}, 400)
        if not hmac.compare_digest(api_key, self.config["api_key"]):
            return self.auth_failed(
                json_response({"success": False, "error": "Invalid API key"}, 401)
            )
        return None

    def on_page(self, request: Request) -> Response:
        """GET /verif/?api_key=&user_identifier=: the verification interface."""
        user_identifier = request.args.get("user_identifier") or request.args.get("user_id") or ""
        error = self._credentials_error(request.args.get("api_key"), user_identifier)
        if error:
            return error
        self.implicit_session(user_identifier)
        return html_page(
            "Identity Verification", "Record a selfie video and upload a photo of your ID."
        )

    def on_submit(self, request: Request) -> Response:
        """POST /verif/submit (multipart): completes the check at once and sends the webhook."""
        user_identifier = request.form.get("user_identifier") or request.form.get("user_id") or ""
        error = self._credentials_error(request.form.get("api_key"), user_identifier)
        if error:
            return error
        if "selfie_video" not in request.files or "id_photo" not in request.files:
            return json_response(
                {"success": False, "error": "Both selfie video and ID photo are required"}, 400
            )
        self.count("create_calls")
        with self.lock:
            session = self.implicit_session(user_identifier)
            outcome: str = self.config["default_outcome"]
            if session.script_active and session.scripted_outcome:
                outcome = session.scripted_outcome
            self.abort_script(session)
            session.scripted_outcome = outcome
            self.emit(session, self._finish(outcome)(session), self.dice.next_run())
            check = session.extra["last_check"]
        return json_response(idvapi_submit_answer(check["webhook"], check["selfie"], check["id"]))

    def _finish(self, outcome: str) -> Callable[[SimSession], list[Delivery]]:
        """The step function completing a check with outcome and building its webhook."""

        def apply(session: SimSession) -> list[Delivery]:
            check_id, timestamp = str(uuid.uuid4()), iso_utc()
            stamp = timestamp.replace("-", "").replace(":", "").replace(".", "")
            selfie_file, id_file = f"{check_id}_selfie_{stamp}.mp4", f"{check_id}_id_{stamp}.jpg"
            selfie_url = self.pii.file_url(STORAGE_HOST, f"verifications/{selfie_file}")
            id_url = self.pii.file_url(STORAGE_HOST, f"verifications/{id_file}")
            webhook = idvapi_webhook(check_id, session.id, outcome, timestamp, selfie_url, id_url)
            session.set_status(outcome)
            session.decided_by, session.final = "auto", True
            session.extra["check_id"] = check_id
            session.extra["checks"].append(check_id)
            session.extra["last_check"] = {"webhook": webhook, "selfie": selfie_file, "id": id_file}
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
            event, url = f"verification.{outcome}", self.config["webhook_url"]
            return [Delivery(session.id, "webhook", event, "POST", url, headers, dumps(webhook))]

        return apply

    def plan(
        self,
        session: SimSession,
        outcome: str,
        manual: bool,
        provider_status: str | None,
        variant: str | None,
    ) -> list[Step]:
        """(pending|final) → processing → verified|rejected, with one webhook at the end."""

        def start_processing(current: SimSession) -> list[Delivery]:
            current.set_status("processing")
            current.final, current.decided_by = False, None
            return []

        return [Step("processing", start_processing), Step(outcome, self._finish(outcome))]

    def truth_extra(self, session: SimSession) -> dict[str, Any]:
        """Adds the latest check_id and all check ids."""
        return {"check_id": session.extra["check_id"], "checks": list(session.extra["checks"])}
