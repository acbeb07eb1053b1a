"""`POST /api/v1/users/<user_ref>/forget`: the operator API for erasing one person (issue 6).

The same as `verihook users forget [--at-provider]`: statuses stay under a pseudonym, personal
data is shredded, the erasure is written to the audit history under the token's name.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request

from receiver.services import get_services
from reconciler.api.auth import require_role
from reconciler.api.openapi import ERROR_400, describe, json_response
from reconciler.privacy.at_providers import erase_at_providers, sessions_of
from reconciler.privacy.lifecycle import forget_user

bp = Blueprint("erasure_api", __name__, url_prefix="/api/v1")

MAX_USER_REF = 128
ERASURE = {
    "type": "object",
    "properties": {
        "user_ref": {"type": "string", "description": "the pseudonym the sessions now carry"},
        "events": {"type": "integer"},
        "observations": {"type": "integer"},
        "sessions": {"type": "integer"},
        "notifications": {"type": "integer"},
        "audit_entries": {"type": "integer"},
        "at_provider": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "provider": {"type": "string"},
                    "session_id": {"type": "string"},
                    "outcome": {
                        "type": "string",
                        "enum": ["deleted", "not_found", "unsupported", "failed"],
                    },
                    "detail": {"type": "string"},
                },
            },
        },
    },
}


@bp.post("/users/<user_ref>/forget")
@require_role("operator")
@describe(
    summary="Erase one person's personal data (and, on request, at the providers)",
    description=(
        'Body `{"confirm": true, "at_provider"?: bool}`. Shreds the person\'s raw deliveries,'
        " personal details and notifications, replaces their ref with a pseudonym and records the"
        " erasure in the audit history; `audit verify` still passes. With `at_provider`, providers"
        " with a deletion endpoint (docverify) are asked to delete the sessions too."
    ),
    tag="users",
    roles=("operator",),
    path={"user_ref": "the product's user reference"},
    body={
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["confirm"],
                    "properties": {
                        "confirm": {"type": "boolean", "const": True},
                        "at_provider": {"type": "boolean"},
                    },
                }
            }
        },
    },
    responses={200: json_response("What was erased", ERASURE), 400: ERROR_400},
)
def forget(user_ref: str):  # type: ignore[no-untyped-def]
    """Erase the person; 400 unless the body confirms it."""
    body: Any = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("confirm") is not True:
        return jsonify({"error": 'send {"confirm": true} to erase this person'}), 400
    at_provider = body.get("at_provider", False)
    if not isinstance(at_provider, bool):
        return jsonify({"error": "at_provider must be true or false"}), 400
    if len(user_ref) > MAX_USER_REF:
        return jsonify({"error": f"user_ref is longer than {MAX_USER_REF} characters"}), 400
    services = get_services()
    sessions = sessions_of(services, user_ref) if at_provider else []
    stats = forget_user(services, user_ref, actor=g.principal.name)
    outcomes = erase_at_providers(services, sessions)
    return jsonify(
        {
            "user_ref": stats.user_ref_digest,
            "events": stats.events,
            "observations": stats.observations,
            "sessions": stats.sessions,
            "notifications": stats.notifications,
            "audit_entries": stats.audit_entries,
            "at_provider": [
                {
                    "provider": o.provider,
                    "session_id": o.session_id,
                    "outcome": o.outcome,
                    "detail": o.detail,
                }
                for o in outcomes
            ],
        }
    )
