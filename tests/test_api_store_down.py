"""The API with the database unreachable: 503 with Retry-After (not 500), and creating a session
never leaves a provider session behind unnoticed.

"Down" is real: an engine on a closed PostgreSQL port (connection refused), swapped in where
the test says the database goes away.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from app import create_app
from receiver.exceptions import StoreUnavailableError
from receiver.services import Services
from receiver.store.db import make_engine
from receiver.store.models import VerificationSession
from reconciler import simulators
from reconciler.session_queries import create_session
from tests.support.redis_server import free_port
from tests.support.world import SIM_CREDENTIALS, provider_settings

TOKEN = "backend-store-down-token-0123456789"
BACKEND = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def dead_engine() -> Iterator[Engine]:
    """An engine whose database refuses connections."""
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    yield engine
    engine.dispose()


@pytest.fixture
def contiguity() -> Iterator[simulators.Simulator]:
    """The Contiguity simulator (the other providers stay disabled)."""
    sim = simulators.start("contiguity", **SIM_CREDENTIALS["contiguity"])
    yield sim
    sim.stop()


@pytest.fixture
def services(make_services, contiguity) -> Services:  # type: ignore[no-untyped-def]
    return make_services(
        providers=provider_settings({"contiguity": contiguity}), api_tokens=f"backend:{TOKEN}"
    )


def provider_sessions(sim: simulators.Simulator) -> int:
    """Sessions the simulator has created."""
    return len(sim.engine.sessions)


def recorded(engine: Engine) -> list[str]:
    """Session ids verihook recorded."""
    with engine.connect() as connection:
        return list(connection.execute(select(VerificationSession.session_id)).scalars())


def test_the_api_answers_503_with_retry_after_while_the_database_is_down(
    services: Services, dead_engine: Engine, contiguity: simulators.Simulator
) -> None:
    client = create_app(services=dataclasses.replace(services, engine=dead_engine)).test_client()
    calls = [
        ("post", "/api/v1/sessions", {"provider": "contiguity", "user_ref": "u-down"}),
        (
            "post",
            "/api/v1/sessions",
            {"provider": "contiguity", "user_ref": "u", "session_id": "s"},
        ),
        ("get", "/api/v1/users/u-down", None),
        ("get", "/api/v1/sessions/contiguity/s", None),
    ]
    for method, path, body in calls:
        answer = getattr(client, method)(path, json=body, headers=BACKEND)
        assert answer.status_code == 503, (path, answer.status_code, answer.get_data(True))
        assert answer.get_json() == {"error": "store unavailable"}
        assert answer.headers["Retry-After"] == "5"
    assert provider_sessions(contiguity) == 0
    assert recorded(services.engine) == []


def test_create_session_checks_the_database_before_calling_the_provider(
    services: Services, dead_engine: Engine, contiguity: simulators.Simulator
) -> None:
    down = dataclasses.replace(services, engine=dead_engine)
    with pytest.raises(StoreUnavailableError):
        create_session(down, "contiguity", "u-down", {})
    assert provider_sessions(contiguity) == 0  # nothing created anywhere


class LoseTheDatabase:
    """Wraps a provider client: once the provider has created the session, the database goes
    away (and comes back after `back_after` seconds, when given)."""

    def __init__(
        self, client: Any, services: Services, dead: Engine, back_after: float | None
    ) -> None:
        self.client, self.services, self.dead = client, services, dead
        self.back_after = back_after
        self.live = services.engine

    def create_session(self, *args: Any, **kwargs: Any) -> Any:
        created = self.client.create_session(*args, **kwargs)
        self.services.engine = self.dead
        if self.back_after is not None:
            threading.Timer(self.back_after, self.restore).start()
        return created

    def restore(self) -> None:
        self.services.engine = self.live


def lose_database_after_creation(
    monkeypatch: pytest.MonkeyPatch,
    services: Services,
    dead: Engine,
    back_after: float | None,
    name: str = "contiguity",
) -> None:
    provider = services.providers[name]
    real = provider.client
    monkeypatch.setattr(
        provider, "client", lambda http: LoseTheDatabase(real(http), services, dead, back_after)
    )


def test_a_database_lost_after_the_provider_call_answers_503_and_logs_the_abandoned_session(
    services: Services,
    dead_engine: Engine,
    contiguity: simulators.Simulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = services.engine
    lose_database_after_creation(monkeypatch, services, dead_engine, back_after=None)
    with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailableError):
        create_session(services, "contiguity", "u-lost", {}, pauses=(0.05, 0.05))
    assert provider_sessions(contiguity) == 1
    (session_id,) = contiguity.engine.sessions
    assert recorded(live) == []
    assert any(
        f"abandoned contiguity session {session_id}" in r.getMessage() for r in caplog.records
    )


def test_the_abandoned_session_line_never_names_a_user_ref(
    make_services, dead_engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    """idvapi's session id is the user's ref: the warning must not carry it (issue 18)."""
    idvapi = {"api_key": "idv-key", "base_url": "https://idv.example.invalid"}
    services = make_services(providers={"idvapi": idvapi})
    lose_database_after_creation(monkeypatch, services, dead_engine, None, name="idvapi")
    with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailableError):
        create_session(services, "idvapi", "user-REF-4711", {}, pauses=(0.05,))
    assert any("abandoned idvapi session" in r.getMessage() for r in caplog.records)
    assert "user-REF-4711" not in caplog.text


def test_a_database_back_within_the_retries_records_the_session(
    services: Services,
    dead_engine: Engine,
    contiguity: simulators.Simulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = services.engine
    lose_database_after_creation(monkeypatch, services, dead_engine, back_after=0.3)
    row, start_url = create_session(services, "contiguity", "u-back", {}, pauses=(0.2, 0.2, 0.2))
    assert start_url and provider_sessions(contiguity) == 1
    assert recorded(live) == [row.session_id] == list(contiguity.engine.sessions)
    assert row.user_ref == "u-back" and row.next_check_at is not None
