"""The OpenAPI document: valid, complete (every URL rule of the app, nothing more), and true.

"True" is checked by schemathesis: it generates requests from the document for every operation
and sends them in-process to the real app (real database and Redis) with an operator token; no
answer may be a server error.
"""

from __future__ import annotations

import pytest
import schemathesis
from flask import Blueprint
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate

from app import create_app
from reconciler import jobs
from reconciler.api import openapi
from tests.support.flow import API_TOKENS, OPERATOR, apply_all, send_contiguity
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
    return built


def served(flask_app) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(OpenAPI path, method) for every URL rule and method the app serves."""
    return {
        (openapi.openapi_path(rule)[0], method.lower())
        for rule in flask_app.url_map.iter_rules()
        for method in (rule.methods or set()) - IGNORED
    }


def test_document_needs_no_token_and_is_valid_openapi(app):  # type: ignore[no-untyped-def]
    answer = app.test_client().get("/api/v1/openapi.json")
    assert answer.status_code == 200
    document = answer.get_json()
    assert document["openapi"].startswith("3.1")
    validate(document)  # openapi-spec-validator: raises on any violation of the 3.1 schema


def test_every_route_is_described_and_nothing_else(app):  # type: ignore[no-untyped-def]
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    assert openapi.undocumented_endpoints(app) == [], "describe these endpoints (openapi.py)"
    assert openapi.stale_docs(app) == [], "these DOCS entries describe no served endpoint"
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
            if operation["security"]:
                assert operation["security"] == [{"bearerAuth": []}], where
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
    operation = document["paths"]["/api/v1/brand-new/{thing}"]["get"]
    assert operation["x-undocumented"] is True
    assert operation["parameters"][0]["schema"]["type"] == "integer"
    validate(document)  # still a valid document, so the endpoint never breaks in production


def test_described_by_decorator_next_to_the_view(make_services):  # type: ignore[no-untyped-def]
    extra = Blueprint("extra2", __name__)

    @extra.post("/api/v1/things")
    @openapi.describe(
        summary="Make a thing",
        tag="things",
        roles=("operator",),
        body={"content": {"application/json": {"schema": {"type": "object"}}}},
        responses={201: openapi.json_response("Made", {"type": "object"})},
    )
    def make_thing():  # type: ignore[no-untyped-def]
        """Make a thing."""
        return {}, 201

    flask_app = create_app(services=make_services())
    flask_app.register_blueprint(extra)
    assert "extra2.make_thing" not in openapi.undocumented_endpoints(flask_app)
    operation = openapi.build_document(flask_app)["paths"]["/api/v1/things"]["post"]
    assert operation["security"] == [{"bearerAuth": []}]
    assert set(operation["responses"]) == {"201", "401", "403"}
    assert operation["description"].startswith("Make a thing.")


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
