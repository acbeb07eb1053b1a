"""`GET /api/v1/openapi.json`: an OpenAPI 3.1 document of every endpoint the app serves.

The paths come from the app's URL map, so the document cannot list a route the app does not
serve, nor miss one. What each endpoint does (summary, roles, parameters, body, answers) is kept
next to its view with the `describe` decorator:

    @bp.get("/things/<int:thing_id>")
    @require_role("operator")
    @describe(
        summary="One thing",
        tag="things",
        roles=("operator",),
        path={"thing_id": "the thing's id"},
        responses={200: json_response("The thing", ref("Thing")), 404: ERROR_404},
    )
    def get_thing(thing_id): ...

Views whose modules carry no decorator (yet) are described in `DOCS` below, keyed by endpoint
name. An endpoint with no description still appears, marked `x-undocumented`, and
tests/test_openapi.py fails until it is described; a `DOCS` entry for an endpoint the app no longer
serves fails that test too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from werkzeug.routing import Rule

from receiver.canonical import Source
from receiver.providers import REGISTRY

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

OPENAPI_VERSION = "3.1.0"
EXTENSION_KEY = "verihook.openapi"
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
ATTRIBUTE = "openapi_doc"


@dataclass(frozen=True)
class Doc:
    """What one endpoint does, for the OpenAPI document.

    `roles`: the bearer-token roles allowed (empty: no token). `path`: a description (or a full
    parameter object) per path argument; the argument's schema comes from its URL converter
    unless given. `query`: extra parameter objects (query or header). `body`: a requestBody
    object. `responses`: status code → response object (401/403 are added for `roles`).
    """

    summary: str
    tag: str
    responses: Mapping[int | str, Mapping[str, Any]]
    roles: tuple[str, ...] = ()
    path: Mapping[str, str | Mapping[str, Any]] = field(default_factory=dict)
    query: tuple[Mapping[str, Any], ...] = ()
    body: Mapping[str, Any] | None = None
    description: str | None = None


def describe(**fields: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: attach a Doc to a view (put it under the route decorator)."""
    doc = Doc(**fields)

    def attach(view: Callable[..., Any]) -> Callable[..., Any]:
        setattr(view, ATTRIBUTE, doc)
        return view

    return attach


def ref(name: str) -> dict[str, str]:
    """A reference to a schema in components."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(description: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON response object."""
    return {
        "description": description,
        "content": {"application/json": {"schema": dict(schema or ref("Error"))}},
    }


def error(description: str) -> dict[str, Any]:
    """A `{"error": …}` response object."""
    return json_response(description, ref("Error"))


def query_param(
    name: str, description: str, schema: Mapping[str, Any] | None = None, required: bool = False
) -> dict[str, Any]:
    """A query parameter object."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": dict(schema or {"type": "string"}),
    }


def header_param(name: str, description: str) -> dict[str, Any]:
    """An optional header parameter object."""
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
STATUS = {
    "type": "string",
    "enum": [
        "pending",
        "processing",
        "requires_input",
        "review",
        "verified",
        "rejected",
        "canceled",
        "expired",
    ],
}
ERROR_400 = error("Invalid parameters or body")
ERROR_404 = error("Not found")

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "IngestAnswer": {
        "type": "object",
        "required": ["status", "event_id"],
        "properties": {
            "status": {"type": "string", "enum": ["accepted", "duplicate", "quarantined"]},
            "event_id": {"type": "integer"},
        },
    },
    "Session": {
        "type": "object",
        "properties": {
            "provider": {"type": "string"},
            "session_id": {"type": "string"},
            "user_ref": NULLABLE_STRING,
            "status": STATUS,
            "decided_by": {"type": ["string", "null"], "enum": ["auto", "manual", None]},
            "status_observed_at": NULLABLE_TIME,
            "created_at": NULLABLE_TIME,
            "updated_at": NULLABLE_TIME,
            "next_check_at": NULLABLE_TIME,
            "overdue": {"type": "boolean"},
        },
    },
    "HistoryItem": {
        "type": "object",
        "properties": {
            "status": STATUS,
            "decided_by": {"type": "string"},
            "occurred_at": NULLABLE_TIME,
            "source": {"type": "string"},
            "provider_status": NULLABLE_STRING,
            "reasons": {"type": "array", "items": {"type": "string"}},
            "event_id": {"type": ["integer", "null"]},
            "disposition": {"type": "string", "enum": ["applied", "superseded"]},
            "recorded_at": NULLABLE_TIME,
        },
    },
    "SessionDetail": {
        "allOf": [
            ref("Session"),
            {
                "type": "object",
                "properties": {"history": {"type": "array", "items": ref("HistoryItem")}},
            },
        ]
    },
    "SessionCreated": {
        "type": "object",
        "required": ["provider", "session_id"],
        "properties": {
            "provider": {"type": "string"},
            "session_id": {"type": "string"},
            "start_url": NULLABLE_STRING,
        },
    },
    "User": {
        "type": "object",
        "required": ["user_ref", "status", "sessions"],
        "properties": {
            "user_ref": {"type": "string"},
            "status": {"type": "string", "enum": [*STATUS["enum"], "unknown"]},
            "decided_by": NULLABLE_STRING,
            "provider": NULLABLE_STRING,
            "session_id": NULLABLE_STRING,
            "updated_at": NULLABLE_TIME,
            "verified_at": NULLABLE_TIME,
            "sessions": {"type": "array", "items": ref("Session")},
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["seq", "at", "subject", "prev_hash", "entry_hash"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "at": {"type": "string", "format": "date-time"},
            "actor": {"type": "string"},
            "source": {"type": "string"},
            "subject": {"type": "string", "enum": ["session", "user"]},
            "provider": NULLABLE_STRING,
            "session_id": NULLABLE_STRING,
            "user_ref": {
                "type": ["string", "null"],
                "description": "null once the person was erased",
            },
            "user_digest": {"type": ["string", "null"], "description": "sha256 of the user ref"},
            "previous_status": NULLABLE_STRING,
            "new_status": NULLABLE_STRING,
            "decided_by": NULLABLE_STRING,
            "event_id": {"type": ["integer", "null"]},
            "reason": {"type": "string"},
            "prev_hash": {"type": "string"},
            "entry_hash": {"type": "string"},
        },
    },
    "AuditPage": {
        "type": "object",
        "required": ["entries", "next_cursor"],
        "properties": {
            "entries": {"type": "array", "items": ref("AuditEntry")},
            "next_cursor": {
                "type": ["integer", "null"],
                "description": "pass as `cursor` for the next page; null on the last page",
            },
        },
    },
    "AuditVerify": {
        "type": "object",
        "required": ["ok", "entries", "head", "first_bad"],
        "properties": {
            "ok": {"type": "boolean"},
            "entries": {"type": "integer", "description": "entries read"},
            "head": {"type": "string", "description": "hash of the last entry that chains"},
            "first_bad": {
                "type": ["integer", "null"],
                "description": "seq of the first entry that does not chain",
            },
            "problem": NULLABLE_STRING,
        },
    },
    "AsOf": {
        "type": "object",
        "required": ["user_ref", "at", "status", "entries"],
        "properties": {
            "user_ref": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "status": {"type": "string", "enum": [*STATUS["enum"], "unknown"]},
            "decided_by": NULLABLE_STRING,
            "provider": NULLABLE_STRING,
            "session_id": NULLABLE_STRING,
            "entries": {"type": "array", "items": ref("AuditEntry")},
        },
    },
    "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
    "Ready": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "role": {"type": "string", "enum": ["web", "worker", "scheduler"]},
            "checks": {
                "type": "object",
                "description": "database, migrations, redis: true when fine, false when failing;"
                ' the web role reports an unreachable Redis as "degraded" and stays ready',
                "additionalProperties": {
                    "oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["degraded"]}]
                },
            },
        },
    },
}


def _providers(source: Source) -> list[str]:
    return sorted(name for name, cls in REGISTRY.items() if source in cls.sources)


def _ingest_responses() -> dict[int | str, dict[str, Any]]:
    return {
        200: json_response("Stored: `accepted` (new) or `duplicate`", ref("IngestAnswer")),
        202: json_response(
            "Authentic but not understood: stored for replay (`quarantined`)", ref("IngestAnswer")
        ),
        401: error("Authentication failed (nothing stored)"),
        404: error("Unknown or disabled provider"),
        413: error("Body over the limit"),
        415: error("Wrong content type"),
        503: error("Store unavailable: retry later"),
    }


DOCS: dict[str, Doc] = {
    "webhooks.webhook": Doc(
        summary="Receive a provider webhook",
        description=(
            "Authenticated by the provider's own scheme over the raw body (Contiguity-Signature,"
            " Idenfy-Signature, or idvapi's secret URL token). Answers 2xx only once the event"
            " is committed."
        ),
        tag="inbound",
        path={
            "name": {
                "description": "provider",
                "schema": {"type": "string", "enum": _providers(Source.WEBHOOK)},
            },
            "segment": (
                "idvapi: the secret webhook token; idenfy: the notification type (auto-finished,"
                " manual-finished, resubmitted, cancelled, expired)"
            ),
        },
        query=(
            header_param(
                "Contiguity-Signature",
                "contiguity: `t=<unix>,v1=<hex HMAC-SHA256>` (one or more v1)",
            ),
            header_param("Idenfy-Signature", "idenfy: hex HMAC-SHA256 of the raw body"),
        ),
        body={
            "required": True,
            "description": "The provider's payload, exactly as it sent it",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        responses=_ingest_responses(),
    ),
    "webhooks.callback": Doc(
        summary="Receive a provider's browser redirect",
        description=(
            "Records the redirect and schedules an immediate status poll; a status in the URL is"
            " never trusted. Redirects (302) to the provider's configured return URL when set."
        ),
        tag="inbound",
        path={
            "name": {
                "description": "provider",
                "schema": {"type": "string", "enum": _providers(Source.CALLBACK)},
            }
        },
        query=(
            query_param("sessionId", "docverify: the session id"),
            query_param("state", "docverify: the state stored when the session was created"),
        ),
        responses={
            200: json_response("Recorded (no return URL configured)", ref("IngestAnswer")),
            302: {"description": "Recorded; redirect to the configured return URL"},
            401: error("The callback did not validate"),
            404: error("Unknown or disabled provider"),
            503: error("Store unavailable"),
        },
    ),
    "api.get_user": Doc(
        summary="A user's verification status and sessions",
        tag="users",
        roles=("backend", "operator", "auditor"),
        path={"user_ref": "the product's user reference"},
        responses={
            200: json_response("The user", ref("User")),
            404: json_response("Never seen: status `unknown`", ref("User")),
        },
    ),
    "api.get_session": Doc(
        summary="A session, its status and its whole history",
        tag="sessions",
        roles=("backend", "operator", "auditor"),
        path={"provider": "provider name", "session_id": "the provider's session id"},
        responses={
            200: json_response("The session", ref("SessionDetail")),
            404: error("Unknown session"),
        },
    ),
    "api.post_session": Doc(
        summary="Create a session at a provider, or register one created elsewhere",
        description=(
            "`{provider, user_ref, options?}` creates the session at the provider;"
            " `{provider, session_id, user_ref}` registers one created elsewhere."
        ),
        tag="sessions",
        roles=("backend",),
        body={
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["provider", "user_ref"],
                        "properties": {
                            "provider": {"type": "string", "enum": sorted(REGISTRY)},
                            "user_ref": {"type": "string", "minLength": 1, "maxLength": 128},
                            "session_id": {"type": "string", "minLength": 1, "maxLength": 128},
                            "options": {"type": "object"},
                        },
                    }
                }
            },
        },
        responses={
            200: json_response("Already registered to this user", ref("Session")),
            201: json_response(
                "Created at the provider, or registered",
                {"oneOf": [ref("SessionCreated"), ref("Session")]},
            ),
            400: ERROR_400,
            404: error("Provider not configured"),
            409: error("Registered to another user"),
            502: error("The provider did not create the session"),
            503: error(
                "The database is unavailable: retry after `Retry-After` seconds (checked before"
                " the provider is called)"
            ),
        },
    ),
    "health.healthz": Doc(
        summary="The process is alive",
        tag="health",
        responses={200: json_response("Alive", ref("Health"))},
    ),
    "health.readyz": Doc(
        summary="Ready: database at the newest schema (workers and the scheduler: and Redis)",
        tag="health",
        responses={
            200: json_response("Ready", ref("Ready")),
            503: json_response("Not ready", ref("Ready")),
        },
    ),
    "health.metrics": Doc(
        summary="Prometheus metrics",
        tag="health",
        responses={
            200: {
                "description": "Prometheus text exposition",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    ),
}
"""Descriptions of endpoints whose modules carry no `describe` decorator, by endpoint name."""

OPTIONAL_DOCS: frozenset[str] = frozenset()
"""DOCS entries that may describe an endpoint the app does not register."""

_ARGUMENT = re.compile(r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {  # `<int:…>` ids are 64-bit (BIG_ID) columns
    "int": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
    "path": {"type": "string", "minLength": 1},
    "default": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "string": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
}


def openapi_path(rule: Rule) -> tuple[str, list[tuple[str, str]]]:
    """A Flask rule as an OpenAPI path template, and its (converter, argument) pairs."""
    arguments: list[tuple[str, str]] = []

    def replace(match: re.Match[str]) -> str:
        arguments.append((match.group("converter") or "default", match.group("name")))
        return "{" + match.group("name") + "}"

    return _ARGUMENT.sub(replace, rule.rule), arguments


def doc_for(app: Flask, endpoint: str) -> Doc | None:
    """An endpoint's Doc: from its view's `describe` decorator, else from DOCS."""
    view = app.view_functions.get(endpoint)
    found = getattr(view, ATTRIBUTE, None)
    return found if isinstance(found, Doc) else DOCS.get(endpoint)


def undocumented_endpoints(app: Flask) -> list[str]:
    """Endpoints the app serves that have no description."""
    return sorted(
        {r.endpoint for r in app.url_map.iter_rules() if doc_for(app, r.endpoint) is None}
    )


def stale_docs(app: Flask) -> list[str]:
    """DOCS entries for endpoints the app does not serve."""
    served = {r.endpoint for r in app.url_map.iter_rules()}
    return sorted(set(DOCS) - served - OPTIONAL_DOCS)


def _parameter(converter: str, name: str, given: str | Mapping[str, Any] | None) -> dict[str, Any]:
    schema = dict(_CONVERTER_SCHEMAS.get(converter, _CONVERTER_SCHEMAS["default"]))
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
    if isinstance(given, str):
        parameter["description"] = given
    elif given is not None:
        parameter.update({k: v for k, v in given.items() if k not in ("name", "in", "required")})
    return parameter


def _operation_id(rule: Rule, method: str, endpoint_rules: int, arguments: list[str]) -> str:
    base = rule.endpoint.replace(".", "_")
    if endpoint_rules > 1:
        base += "".join(f"_{a}" for a in arguments) or "_bare"
    methods = (rule.methods or set()) - IGNORED_METHODS
    return f"{base}_{method.lower()}" if len(methods) > 1 else base


def _operation(app: Flask, rule: Rule, method: str, endpoint_rules: int) -> dict[str, Any]:
    path, arguments = openapi_path(rule)
    doc = doc_for(app, rule.endpoint)
    operation_id = _operation_id(rule, method, endpoint_rules, [a for _, a in arguments])
    if doc is None:
        return {
            "operationId": operation_id,
            "summary": f"(undocumented: {rule.endpoint})",
            "x-undocumented": True,
            "parameters": [_parameter(c, a, None) for c, a in arguments],
            "responses": {"default": {"description": "undocumented"}},
        }
    operation: dict[str, Any] = {"operationId": operation_id, "summary": doc.summary}
    operation["tags"] = [doc.tag]
    description = doc.description or _docstring(app, rule.endpoint)
    if doc.roles:
        description = f"{description}\n\nRoles: {', '.join(doc.roles)}.".strip()
    if description:
        operation["description"] = description
    parameters = [_parameter(c, a, doc.path.get(a)) for c, a in arguments]
    parameters += [dict(p) for p in doc.query]
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = dict(doc.body)
    responses = {str(code): dict(answer) for code, answer in doc.responses.items()}
    if doc.roles:
        responses.setdefault("401", error("No valid bearer token"))
        responses.setdefault("403", error("The token's role may not call this"))
        operation["security"] = [{"bearerAuth": []}]
        operation["x-roles"] = list(doc.roles)
    else:
        operation["security"] = []
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _docstring(app: Flask, endpoint: str) -> str:
    view = app.view_functions.get(endpoint)
    text = (getattr(view, "__doc__", None) or "").strip()
    return " ".join(text.split())


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of everything `app` serves."""
    rules = sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))
    per_endpoint: dict[str, int] = {}
    for rule in rules:
        per_endpoint[rule.endpoint] = per_endpoint.get(rule.endpoint, 0) + 1
    paths: dict[str, dict[str, Any]] = {}
    for rule in rules:
        path, _ = openapi_path(rule)
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            paths.setdefault(path, {})[method.lower()] = _operation(
                app, rule, method, per_endpoint[rule.endpoint]
            )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "verihook",
            "version": _version(),
            "description": (
                "Trusted ingest and reconciliation of identity-verification webhooks and results."
                " Inbound endpoints are authenticated by each provider's scheme; the API by"
                " `Authorization: Bearer <token>` with role backend, operator or auditor."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from VERIHOOK_API_TOKENS or `verihook tokens create`",
                }
            },
        },
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("verihook")
    except PackageNotFoundError:
        return "0.0.0"


@bp.get("/openapi.json")
@describe(
    summary="This OpenAPI document",
    tag="meta",
    responses={200: json_response("OpenAPI 3.1 document", {"type": "object"})},
)
def openapi_json():  # type: ignore[no-untyped-def]
    """The OpenAPI 3.1 description of every endpoint (no token needed)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    document = app.extensions.get(EXTENSION_KEY)
    if document is None:
        document = app.extensions[EXTENSION_KEY] = build_document(app)
    return jsonify(document)
