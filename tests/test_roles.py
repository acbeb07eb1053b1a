"""Every API endpoint × every kind of caller → the status the contract says (DESIGN §3).

Callers: no token, a wrong token, the bootstrap tokens of each role (VERIHOOK_API_TOKENS), stored
tokens of each role (`verihook tokens create`), a revoked stored token, and a stored token's
digest used as if it were the token (a copy of the database must not open the API).

To cover a new endpoint, append `(method, path, allowed_roles)` to ENDPOINTS, optionally with a
JSON body and the statuses an allowed role may get (default: any of 200, 201, 202, 400, 404).
Its blueprint must be served by `create_app` (or added in `with_events_api` until it is). The
seeded world: event 1 (Contiguity, applied) for user-1 / vs_test1, and replay 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from app import create_app
from reconciler import jobs
from reconciler.api.events import bp as events_bp
from reconciler.api.tokens import create_token, revoke_token
from reconciler.drain import drain_ready_events
from reconciler.event_queries import EventFilter
from reconciler.replay.runs import create_replay
from tests.support import signing
from tests.support.flow import API_TOKENS, AUDITOR, BACKEND, OPERATOR, send_contiguity

ROLES = ("backend", "operator", "auditor")
READERS = ("backend", "operator", "auditor")
OVERSEERS = ("operator", "auditor")
ALLOWED_ANSWERS = (200, 201, 202, 400, 404)


class Endpoint(NamedTuple):
    """One endpoint and who may call it."""

    method: str
    path: str
    allowed: tuple[str, ...]
    body: Any = None
    ok: tuple[int, ...] = ALLOWED_ANSWERS


ENDPOINTS: list[tuple[Any, ...]] = [
    ("GET", "/api/v1/users/user-1", READERS, None, (200,)),
    ("GET", "/api/v1/users/never-seen", READERS, None, (404,)),
    ("GET", "/api/v1/sessions/contiguity/vs_test1", READERS, None, (200,)),
    ("GET", "/api/v1/sessions/contiguity/vs_unknown", READERS, None, (404,)),
    (
        "POST",
        "/api/v1/sessions",
        ("backend",),
        {"provider": "contiguity", "session_id": "vs_roles", "user_ref": "u-roles"},
        (200, 201),
    ),
    ("POST", "/api/v1/sessions", ("backend",), {"provider": "acme"}, (400,)),
    ("GET", "/api/v1/events", OVERSEERS, None, (200,)),
    ("GET", "/api/v1/events?state=applied&limit=5", OVERSEERS, None, (200,)),
    ("GET", "/api/v1/events?limit=0", OVERSEERS, None, (400,)),
    ("GET", "/api/v1/events/1", OVERSEERS, None, (200,)),
    ("GET", "/api/v1/events/999", OVERSEERS, None, (404,)),
    ("POST", "/api/v1/events/1/replay", ("operator",), {"dry_run": True}, (200,)),
    ("POST", "/api/v1/events/1/replay", ("operator",), None, (200,)),
    ("POST", "/api/v1/replays", ("operator",), {"filter": {"state": "applied"}}, (200,)),
    ("POST", "/api/v1/replays", ("operator",), {"filter": {}}, (400,)),
    ("GET", "/api/v1/replays", OVERSEERS, None, (200,)),
    ("GET", "/api/v1/replays/1", OVERSEERS, None, (200,)),
    ("GET", "/api/v1/replays/999", OVERSEERS, None, (404,)),
    ("POST", "/api/v1/users/someone-else/forget", ("operator",), {"confirm": True}, (200,)),
    ("POST", "/api/v1/users/someone-else/forget", ("operator",), {}, (400,)),
]
"""(method, path, allowed roles[, JSON body[, statuses for an allowed role]])."""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def with_events_api(services):  # type: ignore[no-untyped-def]
    """A test client whose app serves the events/replays blueprint (until app.py does)."""
    app = create_app(services=services)
    if events_bp.name not in app.blueprints:
        app.register_blueprint(events_bp)
    return app.test_client()


@pytest.fixture
def callers(make_services, redis_server, engine):  # type: ignore[no-untyped-def]
    """A client with one applied event (user-1, vs_test1), a replay, and every kind of caller."""
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    client = with_events_api(services)
    send_contiguity(client, signing.contiguity_event("verified"))
    drain_ready_events(services)
    create_replay(services, EventFilter(states=("applied",)), actor_name="seed")
    headers: dict[str, dict[str, str]] = {
        "none": {},
        "bad token": bearer("not-a-token-0123456789"),
        "wrong scheme": {"Authorization": OPERATOR["Authorization"].replace("Bearer", "Basic")},
        "backend": BACKEND,
        "operator": OPERATOR,
        "auditor": AUDITOR,
    }
    for role in ROLES:
        _, token = create_token(engine, role, f"stored-{role}")
        headers[f"stored {role}"] = bearer(token)
    row, token = create_token(engine, "operator", "gone")
    revoke_token(engine, "gone")
    headers["revoked"] = bearer(token)
    headers["digest as token"] = bearer(row.token_digest)
    return client, headers


def expected(endpoint: Endpoint, caller: str) -> tuple[int, ...]:
    role = caller.removeprefix("stored ")
    if role not in ROLES:
        return (401,)
    return endpoint.ok if role in endpoint.allowed else (403,)


def test_every_caller_gets_the_status_the_contract_says(callers):  # type: ignore[no-untyped-def]
    """One pass over the whole table per backend (each pass needs the same seeded world)."""
    client, headers = callers
    wrong = []
    for entry in ENDPOINTS:
        endpoint = Endpoint(*entry)
        for caller, auth in headers.items():
            answer = client.open(
                endpoint.path, method=endpoint.method, json=endpoint.body, headers=auth
            )
            want = expected(endpoint, caller)
            if answer.status_code not in want:
                wrong.append(
                    f"{endpoint.method} {endpoint.path} as {caller}: "
                    f"{answer.status_code}, expected {want}"
                )
            if answer.status_code == 401:
                assert answer.headers["WWW-Authenticate"] == "Bearer"
                assert answer.get_json() == {"error": "authentication required"}
            if answer.status_code == 403:
                assert answer.get_json() == {"error": "forbidden for this role"}
    assert not wrong, "\n".join(wrong)
