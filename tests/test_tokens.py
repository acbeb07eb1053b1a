"""`verihook tokens create|list|revoke`: shown once, stored as a hash only, revocable."""

from __future__ import annotations

import hashlib
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlmodel import Session, SQLModel

from app import create_app
from receiver.store.token_models import ApiToken
from reconciler import jobs
from reconciler.api.events import bp as events_bp
from reconciler.cli.tokens import tokens
from tests.support.flow import API_TOKENS, OPERATOR
from tests.support.processes import settings_env


@pytest.fixture
def api(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    app = create_app(services=services)
    if "events_api" not in app.blueprints:
        app.register_blueprint(events_bp)
    return services, app.test_client(), settings_env(services.settings)


def every_stored_value(engine) -> str:  # type: ignore[no-untyped-def]
    """Every column of every row of every table, as one string."""
    parts = []
    with Session(engine) as db:
        for table in SQLModel.metadata.sorted_tables:
            for row in db.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value).decode("latin-1"))
                    else:
                        parts.append(str(value))
    return "\n".join(parts)


def test_a_token_is_shown_once_stored_hashed_listed_and_revoked(api, engine):  # type: ignore[no-untyped-def]
    _, client, env = api
    runner = CliRunner()
    made = runner.invoke(tokens, ["create", "--role", "operator", "--name", "alice"], env=env)
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("vh_") and len(token) > 40
    assert made.output.count(token) == 1  # printed once, alone on stdout
    assert "shown only this once" in made.stderr
    with Session(engine) as db:
        row = db.execute(select(ApiToken)).scalar_one()
    assert (row.name, row.role, row.revoked_at) == ("alice", "operator", None)
    assert row.token_digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in every_stored_value(engine)
    assert token[3:] not in every_stored_value(engine)

    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/events", headers=auth).status_code == 200
    assert client.post("/api/v1/sessions", json={}, headers=auth).status_code == 403  # operator

    listed = runner.invoke(tokens, ["list"], env=env)
    assert listed.exit_code == 0, listed.output
    header, line = listed.output.splitlines()
    assert header.split() == ["name", "role", "created", "revoked", "created_by"]
    assert line.split()[:2] == ["alice", "operator"]
    assert row.created_at.strftime("%Y-%m-%d %H:%M:%S") in line
    assert line.split()[4] == "-"  # not revoked
    assert token not in listed.output and row.token_digest not in listed.output

    revoked = runner.invoke(tokens, ["revoke", "alice"], env=env)
    assert revoked.exit_code == 0 and "'alice' (operator) is revoked" in revoked.output
    answer = client.get("/api/v1/events", headers=auth)
    assert answer.status_code == 401
    line = runner.invoke(tokens, ["list"], env=env).output.splitlines()[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", line.split()[4])  # when it was revoked
    assert client.get("/api/v1/events", headers=OPERATOR).status_code == 200  # bootstrap still


def test_token_names_roles_and_errors(api, engine):  # type: ignore[no-untyped-def]
    _, client, env = api
    runner = CliRunner()
    unnamed = runner.invoke(tokens, ["create", "--role", "auditor"], env=env)
    assert unnamed.exit_code == 0, unnamed.output
    with Session(engine) as db:
        assert db.execute(select(ApiToken.name)).scalar_one().startswith("auditor-")
    auth = {"Authorization": f"Bearer {unnamed.stdout.strip()}"}
    assert client.get("/api/v1/events", headers=auth).status_code == 200
    assert client.post("/api/v1/events/1/replay", headers=auth).status_code == 403

    cases = [
        (["create", "--role", "root"], 2, "Invalid value for '--role'"),
        (["create", "--role", "backend", "--name", "bad name!"], 1, "a token name is"),
        (["create", "--role", "backend", "--name", "env-backend-0"], 1, "reserved"),
        (["revoke", "nobody"], 1, "no stored token is named 'nobody'"),
    ]
    runner.invoke(tokens, ["create", "--role", "backend", "--name", "twice"], env=env)
    cases.append((["create", "--role", "operator", "--name", "twice"], 1, "exists already"))
    for args, code, message in cases:
        result = runner.invoke(tokens, args, env=env)
        assert (result.exit_code, message in result.output) == (code, True), (args, result.output)
    with Session(engine) as db:
        assert len(db.execute(select(ApiToken)).all()) == 2
