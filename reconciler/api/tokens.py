"""Stored API tokens: create (the token is returned once), list and revoke them.

Only sha256(token) is stored (`reconciler.api.auth.token_digest`); the plaintext exists in the
return value of `create_token` and nowhere else. Names starting with `env-` are reserved for the
bootstrap tokens of `VERIHOOK_API_TOKENS`. The caller passes an engine; each function is one
transaction. Looking a token up on a request is `reconciler.api.auth`'s (this module imports it,
not the other way round).
"""

from __future__ import annotations

import re
import secrets

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from receiver.store.db import transaction
from receiver.store.models import utcnow
from receiver.store.token_models import ApiToken
from reconciler.api.auth import ROLES, token_digest

TOKEN_PREFIX = "vh_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,47}$")
RESERVED_PREFIX = "env-"


class TokenError(ValueError):
    """A token request that cannot be honoured (bad role or name, unknown token)."""


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    """A token name as the audit history will show it (`operator:<name>`)."""
    if not NAME_PATTERN.match(name):
        raise TokenError(
            "a token name is 1-48 characters: letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    if name.startswith(RESERVED_PREFIX):
        raise TokenError(
            f"names starting with {RESERVED_PREFIX!r} are reserved for bootstrap tokens"
        )
    return name


def create_token(
    engine: Engine, role: str, name: str | None = None, *, created_by: str | None = None
) -> tuple[ApiToken, str]:
    """Store a new token's digest; return the row and the token (shown once, never stored)."""
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(sorted(ROLES))}")
    name = check_name(name) if name else f"{role}-{secrets.token_hex(4)}"
    token = new_token()
    row = ApiToken(
        name=name,
        role=role,
        token_digest=token_digest(token),
        created_at=utcnow(),
        created_by=created_by[:64] if created_by else None,
    )
    try:
        with transaction(engine) as db:
            if db.execute(select(col(ApiToken.id)).where(col(ApiToken.name) == name)).first():
                raise TokenError(f"a token named {name!r} exists already")
            db.add(row)
    except IntegrityError as exc:  # a concurrent create with the same name
        raise TokenError(f"a token named {name!r} exists already") from exc
    return row, token


def list_tokens(engine: Engine, *, include_revoked: bool = True) -> list[ApiToken]:
    """Every stored token (digests included: callers show name, role and times only)."""
    query = select(ApiToken).order_by(col(ApiToken.id))
    if not include_revoked:
        query = query.where(col(ApiToken.revoked_at).is_(None))
    with transaction(engine) as db:
        return list(db.execute(query).scalars())


def revoke_token(engine: Engine, name: str) -> ApiToken:
    """Revoke a stored token by name (revoking twice keeps the first time); TokenError if none."""
    with transaction(engine) as db:
        row: ApiToken | None = db.execute(
            select(ApiToken).where(col(ApiToken.name) == name)
        ).scalar_one_or_none()
        if row is None:
            raise TokenError(f"no stored token is named {name!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            db.add(row)
        return row
