"""`GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every endpoint the app serves.

spectree writes it (reconciler/api/spec.py) from the app's URL map and the pydantic models each
view is described with (`@spec.validate` next to the view; stand-ins in
reconciler/api/inbound_openapi.py for the webhook and health views). An endpoint nobody described
still appears, marked `x-undocumented`, and tests/test_openapi.py fails until it is described
(`undocumented_endpoints`).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from werkzeug.routing import Rule

from receiver.request_rules import ViewResult
from reconciler.api import inbound_openapi  # noqa: F401  (registers the stand-ins)
from reconciler.api.schemas.inbound import Document
from reconciler.api.spec import STAND_INS, answers, is_described, spec

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

EXTENSION_KEY = "verihook.openapi"
_GENERATING = threading.Lock()


def openapi_path(rule: Rule) -> str:
    """A Flask rule as an OpenAPI path template: `/events/<int:event_id>` → `/events/{event_id}`."""
    path: str
    path, _ = spec.backend.parse_path(rule, None)
    return path


def undocumented_endpoints(app: Flask) -> list[str]:
    """Endpoints the app serves that are not described."""
    return sorted(
        {
            rule.endpoint
            for rule in app.url_map.iter_rules()
            if rule.endpoint not in STAND_INS
            and not is_described(app.view_functions[rule.endpoint])
        }
    )


def stale_stand_ins(app: Flask) -> list[str]:
    """Stand-ins for endpoints the app does not serve."""
    return sorted(set(STAND_INS) - {rule.endpoint for rule in app.url_map.iter_rules()})


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of everything `app` serves."""
    with _GENERATING, app.app_context():
        models = copy.deepcopy(spec.models)  # spectree moves nested $defs out as it generates
        try:
            document = spec._generate_spec()
        finally:
            spec.models = models
    for operations in document["paths"].values():
        for operation in operations.values():
            if not operation["responses"]:  # not described: keep the document valid, say so
                operation["responses"] = {"default": {"description": "undocumented"}}
                operation["x-undocumented"] = True
    return document


@bp.get("/openapi.json")
@spec.validate(
    resp=answers(HTTP_200=(Document, "OpenAPI 3.1 document")),
    tags=["meta"],
    security={},
)
def openapi_json() -> ViewResult:
    """This OpenAPI document

    Every endpoint the app serves; no token needed.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    document = app.extensions.get(EXTENSION_KEY)
    if document is None:
        document = app.extensions[EXTENSION_KEY] = build_document(app)
    return jsonify(document)
