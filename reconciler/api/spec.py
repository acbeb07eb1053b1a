"""The one `SpecTree` (spectree) that validates the API's requests and writes its OpenAPI document.

Views are described next to themselves with `@spec.validate(...)`: pydantic models for the query
string and the JSON body (validated before the view runs; the view receives them as its `query`
and `json` arguments), `answers(...)` for the responses, a tag and, for the bearer-token API,
`security=bearer(*roles)`. The summary and description are the view's docstring.

Put `@spec.validate` under `@require_role`, so that a request without a valid token is refused
(401/403) before its input is looked at.

Where spectree's Flask plugin does not fit the contract, `AppPlugin` below adjusts it:
- the document covers every URL rule of the app (spectree leaves out its own `/apidoc` and
  `openapi*` rules, and we serve the document from the `openapi` blueprint);
- path parameters keep the URL converters' real bounds (ids are 64-bit, not int32);
- a JSON body that is present but not a JSON object is refused (spectree treats it as `{}`, which
  would run a replay the caller did not ask for); a body is read as strict JSON nested at most 32
  levels (receiver/inputs.py, the webhooks' bound): deeper, `NaN`, an infinite number or a lone
  surrogate is a 400 naming the problem, never a RecursionError or an encoding error later;
- path parameters `<ref:…>` (user refs, session ids) are documented with the ref rule;
- answers pass through untouched (spectree rebuilds them, which would buffer the streamed audit
  exports); they are checked against their models only when the app's config sets
  `VALIDATE_RESPONSES` (the tests do), so a documentation slip cannot turn an answer into a 500
  in production.

Views in receiver/ that must not import this package (webhooks, health) are described by
stand-ins (`reconciler/api/inbound_openapi.py`), registered with `@stands_in_for(endpoint)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Response as FlaskResponse
from flask import current_app, jsonify, make_response, request
from pydantic import ValidationError
from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType
from spectree.plugins.base import Context
from spectree.plugins.flask_plugin import FlaskPlugin
from spectree.utils import get_model_key, get_multidict_items
from werkzeug.routing import Rule

from receiver.inputs import MAX_REF_LENGTH, REF_PATTERN, JsonRefused, NotJson, load_strict_json
from reconciler.api.schemas.common import CUSTOM_ERROR, Error, refused

VALIDATE_RESPONSES = "VERIHOOK_VALIDATE_RESPONSES"
"""App config key: check JSON answers against their response models (500 when one does not fit)."""
BEARER_SCHEME = "bearerAuth"
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {  # `<int:…>` ids are 64-bit (BIG_ID) columns
    "int": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
    "path": {"type": "string", "minLength": 1},
    "default": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "string": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
    "ref": {"type": "string", "minLength": 1, "maxLength": MAX_REF_LENGTH, "pattern": REF_PATTERN},
}
STAND_INS: dict[str, Callable[..., Any]] = {}
"""Endpoint → a described stand-in, for views whose module must not import this package."""


PLAIN_WORDS = {
    "bool_type": "{field} must be true or false",
    "bool_parsing": "{field} must be true or false",
    "extra_forbidden": "unknown field {field}",
    "model_type": "{field} must be a JSON object",
    "dict_type": "{field} must be a JSON object",
    "missing": "{field} is required",
}
"""pydantic error types worded as the CLI and the rest of the API word them (pydantic's own
text names classes: "a valid dictionary or instance of ReplayFilter")."""


def error_message(error: ValidationError) -> str:
    """The first problem, naming the field: `user_ref: String should have at most 128 …`."""
    first = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == CUSTOM_ERROR:  # a domain parser's message; it names the field itself
        return str(first["msg"])
    if not field:
        return "expected a JSON object"
    if first["type"] in PLAIN_WORDS:
        return PLAIN_WORDS[first["type"]].format(field=field)
    return f"{field}: {first['msg']}"


def answer_bad_input(
    req: Any, resp: Any, error: Exception | None, instance: Any, adapter: Any
) -> None:
    """spectree's `before` hook: a refused request answers 400 `{"error": "<field>: <why>"}`."""
    if isinstance(error, ValidationError):
        resp.set_data(jsonify({"error": error_message(error)}).get_data())


def _json_body() -> Any:
    """The JSON body; {} when there is none; None when it is not JSON (refused by the model);
    a ValidationError naming the problem when it is JSON beyond our bounds (load_strict_json)."""
    data = request.get_data(cache=True)
    if not data:
        return {}
    try:
        return load_strict_json(data)
    except NotJson:
        return None
    except JsonRefused as exc:
        raise ValidationError.from_exception_data(
            "body", [{"type": refused(str(exc)), "loc": (), "input": None}]
        ) from exc


class AppPlugin(FlaskPlugin):
    """spectree's Flask plugin, fitted to verihook's contract (see the module docstring)."""

    def find_routes(self) -> Iterator[Rule]:
        """Every URL rule the app serves."""
        yield from current_app.url_map.iter_rules()

    def bypass(self, func: Callable[..., Any], method: str) -> bool:
        """HEAD and OPTIONS are Flask's, not ours."""
        return method in IGNORED_METHODS

    def parse_func(self, route: Any) -> Iterator[tuple[str, Callable[..., Any]]]:
        """The view of each method (a stand-in's description where one is registered)."""
        view = STAND_INS.get(route.endpoint) or current_app.view_functions[route.endpoint]
        for method in sorted(route.methods or ()):
            yield method, view

    def parse_path(
        self, route: Any, path_parameter_descriptions: Mapping[str, str] | None
    ) -> tuple[str, list[Any]]:
        """The OpenAPI path and its parameters, with our converters' schemas."""
        path, parameters = super().parse_path(route, path_parameter_descriptions)
        converters = dict(rule_arguments(route))
        for parameter in parameters:
            parameter["schema"] = dict(CONVERTER_SCHEMAS[converters[parameter["name"]]])
            if not parameter["description"]:
                del parameter["description"]
        return path, parameters

    def request_validation(
        self, request: Any, query: Any, json: Any, form: Any, headers: Any, cookies: Any
    ) -> None:
        """Validate each declared part; a JSON model sees the body as sent (see _json_body)."""
        adapter = self.model_adapter
        request.context = Context(
            adapter.validate_obj(query, get_multidict_items(request.args, query))
            if query
            else None,
            adapter.validate_obj(json, _json_body()) if json else None,
            adapter.validate_obj(form, self.fill_form(request)) if form else None,
            adapter.validate_obj(headers, dict(request.headers)) if headers else None,
            adapter.validate_obj(cookies, request.cookies.to_dict()) if cookies else None,
        )

    def validate_response(
        self, resp: Any, resp_model: Response | None, skip_validation: bool, force: bool
    ) -> tuple[FlaskResponse, ValidationError | None]:
        """The view's answer as it is; checked against its model when VALIDATE_RESPONSES."""
        response = current_app.make_response(resp)
        model = resp_model.find_model(response.status_code) if resp_model else None
        if (
            skip_validation
            or model is None
            or not current_app.config.get(VALIDATE_RESPONSES)
            or response.is_streamed
            or response.mimetype != "application/json"
        ):
            return response, None
        try:
            self.model_adapter.validate_json(model, response.get_data())
        except ValidationError as exc:
            return make_response(jsonify({"error": "response validation error"}), 500), exc
        return response, None


def rule_arguments(rule: Rule) -> list[tuple[str, str]]:
    """(argument, converter name) for each argument of a URL rule."""
    from spectree.plugins.werkzeug_utils import werkzeug_parse_rule

    return [
        (variable, converter)
        for converter, _, variable in werkzeug_parse_rule(str(rule))
        if converter is not None
    ]


_COMPONENTS: dict[str, Any] = {}


def _component_name(model: Any) -> str:
    """Components are named after their models (`Session`, `AuditEntry`); two models of one
    name would share a component, so that is refused."""
    name = getattr(model, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier():
        return get_model_key(model)
    if _COMPONENTS.setdefault(name, model) is not model:
        raise ValueError(f"two API models are named {name!r}: rename one")
    return name


def _version() -> str:
    try:
        return version("verihook")
    except PackageNotFoundError:
        return "0.0.0"


spec = SpecTree(
    backend=AppPlugin,
    title="verihook",
    description=(
        "Trusted ingest and reconciliation of identity-verification webhooks and results."
        " Inbound endpoints are authenticated by each provider's scheme; the API by"
        " `Authorization: Bearer <token>`; each operation's security requirement lists the"
        " token roles (backend, operator, auditor) it accepts."
    ),
    version=_version(),
    mode="normal",
    annotations=True,
    before=answer_bad_input,
    validation_error_status=400,
    validation_error_model=Error,
    naming_strategy=_component_name,
    nested_naming_strategy=lambda _parent, child: child,
    security_schemes=[
        SecurityScheme(
            name=BEARER_SCHEME,
            data=SecuritySchemeData(
                type=SecureType.HTTP,
                scheme="bearer",
                description="A token from VERIHOOK_API_TOKENS or `verihook tokens create`",
            ),
        )
    ],
)


def bearer(*roles: str) -> dict[str, list[str]]:
    """The security requirement of a bearer-token operation: the roles it accepts (OAS 3.1)."""
    return {BEARER_SCHEME: list(roles)}


class Answers(Response):
    """spectree's `Response`, plus bodies that are not JSON: `media={"HTTP_200": ["text/csv"]}`
    adds those media types (as strings) to the code's answer."""

    def __init__(self, media: Mapping[str, Sequence[str]], **code_models: Any) -> None:
        super().__init__(**code_models)
        self.media = dict(media)

    def generate_spec(self, naming_strategy: Any = get_model_key) -> dict[str, Any]:
        """spectree's answers, with the extra media types."""
        generated = super().generate_spec(naming_strategy)
        for code, media_types in self.media.items():
            answer = generated.setdefault(code.removeprefix("HTTP_"), {"description": code})
            for media_type in media_types:
                answer.setdefault("content", {})[media_type] = {"schema": {"type": "string"}}
        return generated


def answers(
    *, guarded: bool = False, media: Mapping[str, Sequence[str]] | None = None, **codes: Any
) -> Answers:
    """Response models by code (`HTTP_200=Model` or `(Model, "description")`); `media` adds
    non-JSON bodies; `guarded` adds the 401 and 403 of `require_role`."""
    if guarded:
        codes.setdefault("HTTP_401", (Error, "No valid bearer token"))
        codes.setdefault("HTTP_403", (Error, "The token's role may not call this"))
    return Answers(media or {}, **codes)


def stands_in_for(*endpoints: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: this described function documents `endpoints` (served elsewhere)."""

    def register(stand_in: Callable[..., Any]) -> Callable[..., Any]:
        for endpoint in endpoints:
            STAND_INS[endpoint] = stand_in
        return stand_in

    return register


def is_described(view: Callable[..., Any]) -> bool:
    """Was this view (or a view it wraps) described with `@spec.validate`?"""
    return spec.get_function_metadata(view) is not None
