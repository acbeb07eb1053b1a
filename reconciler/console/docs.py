"""How the console's routes appear in the OpenAPI document (reconciler/api/openapi.py lists every
route the app serves). They are HTML pages and forms authenticated by the console's session
cookie, not by a bearer token: without a session a page redirects to the sign-in form."""

from __future__ import annotations

from typing import Any

from reconciler.api.openapi import query_param

HTML = {"text/html": {"schema": {"type": "string"}}}
PAGE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The page (HTML)", "content": HTML},
    302: {"description": "Not signed in: to the sign-in form"},
    403: {"description": "The signed-in token's role may not see this", "content": HTML},
}
REDIRECT: dict[int | str, dict[str, Any]] = {
    302: {"description": "Done: to the next page (or to the sign-in form when not signed in)"},
}
FORM_POST: dict[int | str, dict[str, Any]] = {
    400: {"description": "The form's CSRF token is missing or wrong", "content": HTML},
}
MAX_TEXT = 200


def text_param(name: str, description: str, max_length: int = MAX_TEXT) -> dict[str, Any]:
    """An optional text query parameter."""
    return query_param(name, description, {"type": "string", "maxLength": max_length})


def form_body(fields: dict[str, str]) -> dict[str, Any]:
    """A urlencoded form with the CSRF token and `fields` (name → description)."""
    properties: dict[str, Any] = {
        "csrf_token": {"type": "string", "description": "the session's CSRF token"}
    }
    properties.update({k: {"type": "string", "description": v} for k, v in fields.items()})
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "required": ["csrf_token"], "properties": properties}
            }
        },
    }
