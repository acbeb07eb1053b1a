"""Bearer tokens with roles: `backend`, `operator`, `auditor` (DESIGN §3).

Bootstrap tokens come from `VERIHOOK_API_TOKENS` (`role:token,…`), stored ones from the
`api_tokens` table (created and revoked by `receiver.api.tokens`). Tokens are compared by their
sha256 in constant time against every known token; a token never reaches a log.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import g, jsonify, request
from sqlalchemy import Engine, select
from sqlmodel import col

from receiver.services import get_services
from receiver.settings import Settings, split_csv
from receiver.store.db import transaction
from receiver.store.token_models import ApiToken

ROLES = frozenset({"backend", "operator", "auditor"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and a display name (never the token)."""

    role: str
    name: str


def token_digest(token: str) -> str:
    """How a token is compared and stored: its sha256."""
    return hashlib.sha256(token.encode()).hexdigest()


def bootstrap_tokens(settings: Settings) -> dict[str, Principal]:
    """Digest → principal for the tokens in VERIHOOK_API_TOKENS."""
    tokens = {}
    for index, entry in enumerate(split_csv(settings.api_tokens)):
        role, _, token = entry.partition(":")
        if role in ROLES and token:
            tokens[token_digest(token)] = Principal(role=role, name=f"env-{role}-{index}")
    return tokens


def stored_principals(engine: Engine) -> dict[str, Principal]:
    """Digest → principal for every stored token that is not revoked."""
    query = select(col(ApiToken.token_digest), col(ApiToken.role), col(ApiToken.name)).where(
        col(ApiToken.revoked_at).is_(None)
    )
    with transaction(engine) as db:
        return {
            digest: Principal(role=role, name=name)
            for digest, role, name in db.execute(query)
            if role in ROLES
        }


def authenticate_token(token: str, known: dict[str, Principal]) -> Principal | None:
    """The principal whose token digest matches, compared in constant time against all."""
    digest = token_digest(token).encode()
    found = None
    for candidate, principal in known.items():
        if hmac.compare_digest(digest, candidate.encode()):
            found = principal
    return found


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_role(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: 401 without a valid token, 403 for a role not in `roles`."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _bearer()
            principal = authenticate_token(token, known_tokens()) if token else None
            if principal is None:
                response = jsonify({"error": "authentication required"})
                response.headers["WWW-Authenticate"] = "Bearer"
                return response, 401
            if principal.role not in roles:
                return jsonify({"error": "forbidden for this role"}), 403
            g.principal = principal
            return view(*args, **kwargs)

        return wrapper

    return decorate


def known_tokens() -> dict[str, Principal]:
    """Every token this process accepts: the bootstrap tokens and the stored, unrevoked ones."""
    services = get_services()
    return {**stored_principals(services.engine), **bootstrap_tokens(services.settings)}
