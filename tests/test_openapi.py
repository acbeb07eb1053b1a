"""The OpenAPI document: valid, complete (every URL rule of the app, nothing more), and true.

"True" is checked by schemathesis: it generates requests from the document for every operation
and sends them in-process to the real app (real database and Redis) with an operator token; no
answer may be a server error, and the app checks each JSON answer against its response model
(VALIDATE_RESPONSES: an answer that does not fit its model is a 500).
"""

from __future__ import annotations

import pytest
import schemathesis
from flask import Blueprint
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from pydantic import BaseModel

from app import create_app
from reconciler import jobs
from reconciler.api import openapi
from reconciler.api.auth import ROLES
from reconciler.api.spec import VALIDATE_RESPONSES, answers, bearer, spec
from tests.support.flow import API_TOKENS, BACKEND, OPERATOR, apply_all, send_contiguity
from tests.support.signing import contiguity_event
from tests.test_audit import build_app

IGNORED = {"HEAD", "OPTIONS"}
EXAMPLES_PER_OPERATION = 10
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@pytest.fixture
def app(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    built = build_app(services)
    built.config["services_for_test"] = services
    built.config[VALIDATE_RESPONSES] = True
    return built


def served(flask_app) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(OpenAPI path, method) for every URL rule and method the app serves."""
    return {
        (openapi.openapi_path(rule), method.lower())
        for rule in flask_app.url_map.iter_rules()
        for method in (rule.methods or set()) - IGNORED
    }


def test_document_needs_no_token_and_is_valid_openapi(app):  # type: ignore[no-untyped-def]
    answer = app.test_client().get("/api/v1/openapi.json")
    assert answer.status_code == 200
    document = answer.get_json()
    assert document["openapi"].startswith("3.1")
    validate(document)  # openapi-spec-validator: raises on any violation of the 3.1 schema
    assert app.test_client().get("/api/v1/openapi.json").get_json() == document  # cached


def test_every_route_is_described_and_nothing_else(app):  # type: ignore[no-untyped-def]
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    assert openapi.undocumented_endpoints(app) == [], "describe these (@spec.validate)"
    assert openapi.stale_stand_ins(app) == [], "these stand-ins describe no served endpoint"
    described = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert described == served(app)
    operation_ids = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert "x-undocumented" not in operation, where
            assert operation["summary"] and operation["responses"], where
            operation_ids.append(operation["operationId"])
            codes = set(operation["responses"])
            if operation["security"]:  # the roles that may call it (OAS 3.1 role names)
                [requirement] = operation["security"]
                assert set(requirement) == {"bearerAuth"}, where
                assert requirement["bearerAuth"] and set(requirement["bearerAuth"]) <= ROLES
                assert {"401", "403"} <= codes, where
            if method == "post":
                assert operation["requestBody"]["content"], where
            arguments = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            templated = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            assert arguments == templated, where
    assert len(operation_ids) == len(set(operation_ids))
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    # the contract's endpoints are all there (DESIGN §3)
    for path, method in [
        ("/webhooks/{name}", "post"),
        ("/webhooks/{name}/{segment}", "post"),
        ("/callbacks/{name}", "get"),
        ("/api/v1/sessions", "post"),
        ("/api/v1/users/{user_ref}", "get"),
        ("/api/v1/sessions/{provider}/{session_id}", "get"),
        ("/api/v1/audit", "get"),
        ("/api/v1/audit/verify", "get"),
        ("/api/v1/openapi.json", "get"),
        ("/healthz", "get"),
    ]:
        assert method in document["paths"][path], path


def test_a_new_undescribed_route_fails_the_check(make_services):  # type: ignore[no-untyped-def]
    extra = Blueprint("extra", __name__)

    @extra.get("/api/v1/brand-new/<int:thing>")
    def brand_new(thing: int):  # type: ignore[no-untyped-def]
        return {"thing": thing}

    flask_app = create_app(services=make_services())
    flask_app.register_blueprint(extra)
    assert openapi.undocumented_endpoints(flask_app) == ["extra.brand_new"]
    document = openapi.build_document(flask_app)
    assert "/api/v1/brand-new/{thing}" in document["paths"]
    operation = document["paths"]["/api/v1/brand-new/{thing}"]["get"]
    assert operation["x-undocumented"] is True
    assert operation["parameters"][0]["schema"]["type"] == "integer"
    validate(document)  # still a valid document, so the endpoint never breaks in production


class Thing(BaseModel):
    """A thing to make."""

    name: str


def test_described_by_decorator_next_to_the_view(make_services):  # type: ignore[no-untyped-def]
    extra = Blueprint("extra2", __name__)

    @extra.post("/api/v1/things")
    @spec.validate(
        json=Thing,
        resp=answers(guarded=True, HTTP_201=(Thing, "Made")),
        tags=["things"],
        security=bearer("operator"),
    )
    def make_thing(json: Thing):  # type: ignore[no-untyped-def]
        """Make a thing

        With a name.
        """
        return {"name": json.name}, 201

    flask_app = create_app(services=make_services())
    flask_app.register_blueprint(extra)
    assert "extra2.make_thing" not in openapi.undocumented_endpoints(flask_app)
    operation = openapi.build_document(flask_app)["paths"]["/api/v1/things"]["post"]
    assert operation["security"] == [{"bearerAuth": ["operator"]}]
    assert set(operation["responses"]) == {"201", "400", "401", "403"}
    assert (operation["summary"], operation["description"]) == ("Make a thing", "With a name.")
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Thing"}
    client = flask_app.test_client()
    assert client.post("/api/v1/things", json={"name": "x"}).get_json() == {"name": "x"}
    refused = client.post("/api/v1/things", json={"name": 5})
    assert refused.status_code == 400
    assert refused.get_json() == {"error": "name: Input should be a valid string"}


def test_answers_are_checked_against_their_models_only_when_asked(make_services):  # type: ignore[no-untyped-def]
    extra = Blueprint("extra3", __name__)

    @extra.get("/api/v1/thing")
    @spec.validate(resp=answers(HTTP_200=(Thing, "A thing")), tags=["things"])
    def thing():  # type: ignore[no-untyped-def]
        """A thing that does not fit its model"""
        return {"name": 5}

    flask_app = create_app(services=make_services())
    flask_app.register_blueprint(extra)
    client = flask_app.test_client()
    assert client.get("/api/v1/thing").get_json() == {"name": 5}  # production: as it is
    flask_app.config[VALIDATE_RESPONSES] = True
    assert client.get("/api/v1/thing").status_code == 500


BAD_INPUT = [  # (method, url, token, JSON body or raw text, the answer's error)
    (
        "post",
        "/api/v1/sessions",
        BACKEND,
        {"provider": "nevis", "user_ref": 5},
        "user_ref: Input should be a valid string",
    ),
    (
        "post",
        "/api/v1/sessions",
        BACKEND,
        {"provider": "nevis", "user_ref": "   "},
        "user_ref must be 1 to 128 characters, not only white space, without control characters",
    ),
    (
        "post",
        "/api/v1/sessions",
        BACKEND,
        {"provider": "nevis", "user_ref": "u", "session_id": None},
        "session_id: Input should be a valid string",
    ),
    ("post", "/api/v1/sessions", BACKEND, ["provider"], "expected a JSON object"),
    ("post", "/api/v1/events/1/replay", OPERATOR, "{not json", "expected a JSON object"),
    (
        "post",
        "/api/v1/events/1/replay",
        OPERATOR,
        {"dry_run": "yes"},
        "dry_run must be true or false",
    ),
    (
        "post",
        "/api/v1/replays",
        OPERATOR,
        {"filter": {"state": "lost"}},
        "state must be one of applied, failed, quarantined, received, superseded",
    ),
    (
        "post",
        "/api/v1/replays",
        OPERATOR,
        {"filter": {"state": "failed"}, "colour": 1},
        "unknown field colour",
    ),
    ("post", "/api/v1/users/u-1/forget", OPERATOR, {}, "confirm is required"),
    (
        "post",
        "/api/v1/users/u-1/forget",
        OPERATOR,
        {"confirm": True, "at_provider": "yes"},
        "at_provider must be true or false",
    ),
    (
        "get",
        "/api/v1/audit?limit=1001",
        OPERATOR,
        None,
        "limit: Input should be less than or equal to 1000",
    ),
    ("get", "/api/v1/audit?format=xml", OPERATOR, None, "format must be one of json, csv, jsonl"),
    ("get", "/api/v1/audit/as-of?user_ref=u-1", OPERATOR, None, "user_ref and at are required"),
    ("get", "/api/v1/replays?limit=0", OPERATOR, None, "limit must be an integer from 1 to 500"),
]


def test_bad_input_is_a_400_naming_the_field(app):  # type: ignore[no-untyped-def]
    client = app.test_client()
    for method, url, token, body, message in BAD_INPUT:
        given = (
            {"data": body, "content_type": "application/json"}
            if isinstance(body, str)
            else {"json": body}
        )
        answer = client.open(url, method=method.upper(), headers=token, **given)
        assert (answer.status_code, answer.get_json()) == (400, {"error": message}), url
    # the token is checked first: no input is looked at without one
    assert client.post("/api/v1/sessions", json={}).status_code == 401
    assert client.post("/api/v1/sessions", json={}, headers=OPERATOR).status_code == 403


def sample(schema: dict) -> object:  # type: ignore[type-arg]
    """A plain valid value for a parameter schema."""
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("type") == "integer":
        return schema.get("minimum", 1)
    if schema.get("format") == "date-time":
        return "2024-05-01T12:00:00Z"
    return "x"


def edge_values(schema: dict) -> list[object]:  # type: ignore[type-arg]
    """Values at and just past a parameter's documented bounds."""
    if schema.get("type") == "integer" and "maximum" in schema:
        return [schema["maximum"], schema["maximum"] + 1, 10**30]
    if schema.get("type") == "string" and "maxLength" in schema and "enum" not in schema:
        return ["y" * schema["maxLength"], "y" * (schema["maxLength"] + 1)]
    return []


def test_documented_bounds_hold_without_server_errors(app):  # type: ignore[no-untyped-def]
    """Each integer parameter at its maximum, one past it and far past it; each string one past
    its maxLength; all other parameters valid. Schemathesis's coverage phase tests the lower
    bounds; this tests the upper ones (a 64-bit id or a 32-bit seq overflowing in PostgreSQL)."""
    client = app.test_client()
    document = client.get("/api/v1/openapi.json").get_json()
    probes, failures = 0, []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = [
                p for p in operation.get("parameters", []) if p["in"] in ("path", "query")
            ]
            for target in parameters:
                for value in edge_values(target["schema"]):
                    values = {p["name"]: sample(p["schema"]) for p in parameters if p["required"]}
                    values[target["name"]] = value
                    url = path
                    for p in parameters:
                        if p["in"] == "path":
                            url = url.replace("{" + p["name"] + "}", str(values.pop(p["name"])))
                    query = {k: str(v) for k, v in values.items()}
                    answer = client.open(
                        url,
                        method=method.upper(),
                        query_string=query,
                        headers=OPERATOR,
                        json={} if method == "post" else None,
                    )
                    probes += 1
                    if answer.status_code >= 500:
                        failures.append(f"{method.upper()} {url} {query} -> {answer.status_code}")
    assert probes >= 10
    assert failures == []


def record_server_error(case, failures: list[str], how: str) -> None:  # type: ignore[no-untyped-def]
    """Send one generated request with an operator token; note it when the answer is a 5xx."""
    response = case.call(headers=dict(OPERATOR))
    if response.status_code >= 500:
        failures.append(
            f"{case.operation.label} ({how}) -> {response.status_code}: {case.as_curl_command()}"
        )


def boundaries(operation, failures: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Schemathesis's coverage phase: each parameter at and past its bounds, missing, wrong type."""
    schema = operation.schema
    for case in schema.iter_coverage_cases(
        operation,
        generation_modes=list(MODES),
        generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
    ):
        record_server_error(case, failures, "coverage")


def fuzz(operation, mode, failures: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Schemathesis's fuzzing phase: bounded Hypothesis examples of one mode."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def probe(case) -> None:  # type: ignore[no-untyped-def]
        record_server_error(case, failures, mode.value)

    try:
        probe()
    except Unsatisfiable:
        # nothing to make invalid (no parameters, no body): only positive cases exist
        assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label


def test_schemathesis_finds_no_server_error(app):  # type: ignore[no-untyped-def]
    """Every operation: boundary cases, then positive and negative examples; never a 5xx."""
    services = app.config["services_for_test"]
    client = app.test_client()
    for at, kind in ((100, "processing"), (200, "verified")):  # some history to read
        body = contiguity_event(kind, "vs_fuzz", user_ref="user-fuzz", timestamp=at)
        send_contiguity(client, body)
    apply_all(services)

    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    fuzzed = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        fuzzed.add((operation.path, operation.method.lower()))
        boundaries(operation, failures)
        for mode in MODES:
            fuzz(operation, mode, failures)
    # schemathesis leaves out the document's own path (it has no parameters: fetched above)
    assert fuzzed == served(app) - {("/api/v1/openapi.json", "get")}
    assert failures == []


def test_a_domain_checked_model_without_its_parser_is_refused_when_defined() -> None:
    from reconciler.api.schemas.common import DomainChecked

    with pytest.raises(TypeError, match="must define the classmethod check"):

        class Forgotten(DomainChecked):
            name: str | None = None

    class Checked(DomainChecked):
        name: str | None = None

        @classmethod
        def check(cls, values: dict) -> str:  # type: ignore[type-arg]
            if values.get("name") == "bad":
                raise ValueError("name must not be bad")
            return "ok"

    assert Checked.model_validate({"name": "x"}).parsed == "ok"
