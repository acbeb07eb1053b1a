"""`POST /api/v1/users/<user_ref>/forget`: the operator API for erasing one person (issue 6).

The same as `verihook users forget [--at-provider]`: statuses stay under a pseudonym, personal
data is shredded, the erasure is written to the audit history under the token's name.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from receiver.request_rules import ViewResult
from receiver.services import get_services
from reconciler.api.auth import require_role
from reconciler.api.schemas.erasure import Erasure, ForgetRequest
from reconciler.api.spec import answers, bearer, spec
from reconciler.privacy.at_providers import erase_at_providers, sessions_of
from reconciler.privacy.lifecycle import forget_user

bp = Blueprint("erasure_api", __name__, url_prefix="/api/v1")


@bp.post("/users/<ref:user_ref>/forget")
@require_role("operator")
@spec.validate(
    json=ForgetRequest,
    resp=answers(guarded=True, HTTP_200=(Erasure, "What was erased")),
    tags=["users"],
    security=bearer("operator"),
    path_parameter_descriptions={"user_ref": "the product's user reference"},
)
def forget(user_ref: str, json: ForgetRequest) -> ViewResult:
    """Erase one person's personal data (and, on request, at the providers)

    Shreds the person's raw deliveries, personal details and notifications, replaces their ref
    with a pseudonym and records the erasure in the audit history; `audit verify` still passes.
    With `at_provider`, providers with a deletion endpoint (docverify) are asked to delete the
    sessions too.
    """
    services = get_services()
    sessions = sessions_of(services, user_ref) if json.at_provider else []
    stats = forget_user(services, user_ref, actor=g.principal.name)
    outcomes = erase_at_providers(services, sessions)
    erased = Erasure.from_row(stats, user_ref=stats.user_ref_digest, at_provider=outcomes)
    return jsonify(erased.answer())
