"""Nevis Authentication Cloud identity verification: a redirect and a status poll, no webhooks.

Nevis's redirect URL is fixed per customer (set when ordering) and documented with no
parameters, so the redirect (`/callbacks/nevis`) authenticates nothing and is only a hint: one
that names a session (`?sessionId=…`, ASSUMED) makes that session due for
`GET …/idverification/sessions/{id}` if the backend registered it, and never creates one; one
that names none makes the recently started sessions due early (coalesced per minute). The
browser always goes on to the return URL. The statuses `pending`, `in_progress`, `verified` and
`failed` are documented; ASSUMED (docs/PROVIDERS.md): the answer's shape, and that `updatedAt`
dates the status.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar

import httpx

from receiver.canonical import Observation, Source, Status
from receiver.exceptions import ParseError, UnknownValueError
from receiver.providers.base import (
    AuthContext,
    CreatedSession,
    Delivery,
    Parsed,
    ProviderClient,
    require_str,
)
from receiver.providers.http import request_json
from receiver.settings import ProviderSettings

SESSION_ID = re.compile(r"[0-9]{9}")
"""Nevis session ids are nine-digit numbers."""

STATUS_MAP: dict[str, Status] = {
    "pending": Status.PENDING,
    "in_progress": Status.PROCESSING,
    "verified": Status.VERIFIED,
    "failed": Status.REJECTED,
}


class NevisProvider:
    """Nevis Authentication Cloud (redirect + status polling)."""

    name: ClassVar[str] = "nevis"
    content_types: ClassVar[frozenset[str]] = frozenset()
    sources: ClassVar[frozenset[Source]] = frozenset({Source.CALLBACK})
    path_segment: ClassVar[str | None] = None

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

    def is_enabled(self) -> bool:
        """Enabled once the access key is configured."""
        key = self.settings.access_key
        return key is not None and bool(key.get_secret_value())

    def authenticate(self, delivery: Delivery, context: AuthContext) -> None:
        """Nothing to authenticate: a redirect is a hint, and what it may do is bounded."""

    def parse(self, delivery: Delivery) -> Parsed:
        """A redirect naming a well-formed session id polls that session now if it exists; any
        other redirect polls the recently started sessions early. Neither creates a session."""
        session_id = _session_id(delivery)
        if session_id is None:
            return Parsed(session_id=None, user_ref=None, poll_recent=True)
        return Parsed(session_id=session_id, user_ref=None, poll_now=True, creates_session=False)

    def dedupe_key(self, delivery: Delivery, parsed: Parsed | None) -> str:
        """One redirect per session; redirects naming none coalesce per minute."""
        session_id = _session_id(delivery)
        if session_id is not None:
            return "callback:" + session_id
        minute = int(delivery.received_at.timestamp() // 60)
        return f"callback:recent:{minute}"

    def parse_status(self, session_id: str, answer: Any, received_at: datetime) -> Parsed:
        """The session answer → one observation (source poll)."""
        if not isinstance(answer, dict):
            raise ParseError("session answer is not a JSON object")
        status_name = require_str(answer, "status", max_length=40)
        if status_name not in STATUS_MAP:
            raise UnknownValueError(self.name, "status")
        result = answer.get("result") if isinstance(answer.get("result"), dict) else {}
        code = result.get("errorCode") if isinstance(result, dict) else None
        observation = Observation(
            provider=self.name,
            session_id=session_id,
            status=STATUS_MAP[status_name],
            occurred_at=_updated_at(answer.get("updatedAt")) or received_at,
            source=Source.POLL,
            provider_status=status_name,
            reasons=(f"errorCode:{code}"[:64],) if isinstance(code, str | int) else (),
            details={"result": result} if result else {},
        )
        return Parsed(session_id=session_id, user_ref=None, observations=(observation,))

    def client(self, http: httpx.Client) -> ProviderClient:
        """This provider's API client."""
        return NevisClient(self.settings, http)


def _session_id(delivery: Delivery) -> str | None:
    """The redirect's nine-digit `sessionId`, if it names one (anything else names none)."""
    session_id = delivery.query_value("sessionId")
    return session_id if session_id is not None and SESSION_ID.fullmatch(session_id) else None


def _updated_at(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


class NevisClient:
    """Nevis Authentication Cloud API: `Authorization: Bearer <access key>`."""

    def __init__(self, settings: ProviderSettings, http: httpx.Client) -> None:
        self.settings, self.http = settings, http

    def _headers(self) -> dict[str, str]:
        key = self.settings.access_key.get_secret_value() if self.settings.access_key else ""
        return {"Authorization": f"Bearer {key}"}

    def create_session(
        self, user_ref: str, options: dict[str, Any], *, callback_url: str | None
    ) -> CreatedSession:
        """`POST idverification/sessions` → a nine-digit `sessionId` and its `startUrl`."""
        answer = request_json(
            self.http,
            "POST",
            f"{self.settings.base_url}/idverification/sessions",
            json={},
            headers=self._headers(),
        )
        session_id = str(answer["sessionId"])
        if not SESSION_ID.fullmatch(session_id):
            raise ParseError("Nevis answered a session id that is not nine digits")
        return CreatedSession(session_id=session_id, start_url=answer.get("startUrl"))

    def fetch_status(self, session_id: str) -> Any:
        """`GET idverification/sessions/{id}`."""
        return request_json(
            self.http,
            "GET",
            f"{self.settings.base_url}/idverification/sessions/{session_id}",
            headers=self._headers(),
        )
