"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL, with a real Redis.

- PostgreSQL: `VERIHOOK_TEST_POSTGRES_URL` (default: the machine's 127.0.0.1:5432/test) is used to
  create a private database per test session, dropped at the end. When it is unreachable the
  PostgreSQL variants are skipped, unless VERIHOOK_REQUIRE_POSTGRES=1 (CI).
- Redis: a private redis-server started for the test session (tests/support/redis_server.py).
- pytest-xdist (`make test` runs `pytest -n auto --dist loadgroup`): each worker is a session of
  its own, so it has its own database, redis-server and temporary root; how tests are shared
  out is `pytest_xdist_make_scheduler` below.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

import receiver.store.all_tables  # noqa: F401
from app import create_app
from receiver.providers import build_providers
from receiver.services import Services
from receiver.settings import Settings
from receiver.store.crypto import Keyring, new_key_spec
from receiver.store.db import make_engine, make_ingest_engine
from receiver.store.migrate import upgrade
from reconciler import jobs
from tests.support import signing
from tests.support.redis_server import RedisServer

POSTGRES_URL = os.environ.get(
    "VERIHOOK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEST_KEYS = new_key_spec("test2") + "," + new_key_spec("test1")


def pytest_configure(config: pytest.Config) -> None:
    """Give this run a private temporary root.

    pytest's default root (/tmp/pytest-of-<user>) is shared by every pytest on the machine and each
    run prunes all but the newest three numbered directories in it, so a concurrent run (a second
    checkout, an editor's test runner) could delete our SQLite database mid-run ("disk I/O error").
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="verihook-tests-")


PROCESS_MODULES = frozenset(
    {
        "test_chaos.py",
        "test_console_a11y.py",
        "test_console_browser.py",
        "test_health_server.py",
        "test_leader.py",
        "test_observability.py",
        "test_process_chaos.py",
        "test_readiness_by_role.py",
        "test_slow_clients.py",
        "test_time_budget.py",
        "test_up.py",
        "test_worker_processes.py",
    }
)
"""Modules whose tests run real process stacks (gunicorn, `verihook worker`/`scheduler`/`up`, a
private PostgreSQL, chromium) against wall-clock windows and deadlines. Their tests are marked
`processes`; under pytest-xdist they run on one worker, one after the other. (Process tests that
only count rows, like test_ingest_processes and test_audit_watch, stay out: the group is the
longest unit of work, and the other worker must have as much to do.)"""
PROCESS_GROUP = "processes"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of PROCESS_MODULES `processes` (`-m processes` selects them). Under
    pytest-xdist, put them first: they are the longest unit of work (see the scheduler below)."""
    for item in items:
        if item.path.name in PROCESS_MODULES:
            item.add_marker(pytest.mark.processes)
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.path.name not in PROCESS_MODULES)  # a stable sort


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`pytest -n N --dist loadgroup` (`make test`): each test module is one unit of work (as
    with `--dist loadfile`: its module-scoped fixtures are made once), except that the modules
    of PROCESS_MODULES form one unit together. So those run on one worker, one at a time, never
    two process stacks at once on a 2-CPU machine, while the other workers take the rest.

    (pytest-xdist's own loadgroup reads `xdist_group` marks by renaming node ids, which pytest 9
    no longer allows; this scheduler needs no mark.) Any other `--dist` is pytest-xdist's."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesWithOneProcessGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return PROCESS_GROUP if module.rsplit("/", 1)[-1] in PROCESS_MODULES else module

    config.option.loadscopereorder = False  # the collection's order: the process group first
    return ModulesWithOneProcessGroup(config, log)  # type: ignore[arg-type]


def provider_settings() -> dict[str, dict[str, str]]:
    """Every provider enabled with test credentials."""
    return {
        "contiguity": {
            "webhook_secret": signing.CONTIGUITY_SECRET,
            "api_token": "ctg-token",
            "base_url": "http://127.0.0.1:1",
        },
        "docverify": {
            "client_id": "dv-client",
            "client_secret": "dv-secret",
            "base_url": "http://127.0.0.1:1/verify",
            "return_url": "https://app.example.invalid/done",
        },
        "idvapi": {"webhook_token": signing.IDVAPI_TOKEN, "api_key": "idv-key"},
        "idenfy": {"webhook_secret": signing.IDENFY_SECRET, "api_key": "k", "api_secret": "s"},
        "nevis": {
            "access_key": "nevis-key",
            "base_url": "http://127.0.0.1:1/api/v1",
            "return_url": "https://app.example.invalid/nevis-done",
        },
    }


def _reset_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        SQLModel.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(engine)


def truncate_all(engine: Engine) -> None:
    """Empty every table (fast reset between tests)."""
    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in reversed(tables):
                conn.execute(text(f"DELETE FROM {name}"))
            conn.execute(text("DELETE FROM sqlite_sequence")) if _has_sequence(conn) else None


def _has_sequence(conn) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        conn.execute(text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")).first()
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the whole test session."""
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine | None]]:
    """A migrated engine per backend (None for an unreachable PostgreSQL)."""
    sqlite = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'verihook.db'}")
    _reset_schema(sqlite)
    try:
        database = create_private_database()
    except OperationalError:
        if os.environ.get("VERIHOOK_REQUIRE_POSTGRES") == "1":
            raise
        database = None
    postgres = make_engine(database) if database else None
    if postgres is not None:
        _reset_schema(postgres)
    yield {"sqlite": sqlite, "postgresql": postgres}
    for engine in (sqlite, postgres):
        if engine is not None:
            engine.dispose()
    if database:
        drop_private_database(database)


def _admin_engine() -> Engine:
    return create_engine(
        POSTGRES_URL,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 3},
    )


def create_private_database() -> str:
    """Create a throwaway PostgreSQL database for this test session; return its URL."""
    name = f"verihook_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _admin_engine().connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def drop_private_database(url: str) -> None:
    """Drop a database made by create_private_database."""
    name = make_url(url).database
    with _admin_engine().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend under test."""
    return request.param


@pytest.fixture(scope="session")
def ingest_engines(engines: dict[str, Engine | None]) -> Iterator[dict[str, Engine | None]]:
    """The ingest hot path's engine per backend (no pre-ping; autocommit on PostgreSQL)."""
    made = {
        name: make_ingest_engine(found.url.render_as_string(hide_password=False))
        if found is not None
        else None
        for name, found in engines.items()
    }
    yield made
    for engine in made.values():
        if engine is not None:
            engine.dispose()


@pytest.fixture
def engine(backend: str, engines: dict[str, Engine | None]) -> Engine:
    """A clean, migrated database on the backend under test."""
    found = engines[backend]
    if found is None:
        pytest.skip("PostgreSQL is not reachable (set VERIHOOK_REQUIRE_POSTGRES=1 to fail)")
    truncate_all(found)
    return found


def make_settings(engine: Engine, redis_url: str, var_dir: Path, **overrides: object) -> Settings:
    """Settings for a test: this engine's URL, the given Redis, every provider enabled."""
    values: dict[str, object] = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "redis_url": redis_url,
        "encryption_keys": TEST_KEYS,
        "var_dir": var_dir,
        "providers": provider_settings(),
        "queue_name": "verihook-test",
        "log_level": "DEBUG",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def make_services(  # type: ignore[no-untyped-def]
    engine: Engine,
    backend: str,
    ingest_engines: dict[str, Engine | None],
    redis_server: RedisServer,
    tmp_path: Path,
):
    """Build Services on the shared engines with optional setting overrides."""
    built: list[Services] = []

    def factory(redis_url: str | None = None, **overrides: object) -> Services:
        settings = make_settings(engine, redis_url or redis_server.url, tmp_path, **overrides)
        services = Services(
            settings=settings,
            engine=engine,
            keyring=Keyring.parse(TEST_KEYS),
            providers=build_providers(settings),
            _ingest_engine=ingest_engines[backend],
        )
        built.append(services)
        return services

    yield factory
    for services in built:
        services.flush_refusals()  # now, not into the next test's tables a second later
        if services._ingest is not None:
            services._ingest[0].close()  # the ingest writer and its committer thread
        if services._redis is not None:
            services._redis.close()
    jobs.use_services(None)


@pytest.fixture
def services(make_services, redis_server: RedisServer) -> Services:  # type: ignore[no-untyped-def]
    """Services with every provider enabled, on a flushed Redis."""
    built = make_services()
    built.redis.flushdb()
    jobs.use_services(built)
    return built


@pytest.fixture
def client(services: Services):  # type: ignore[no-untyped-def]
    """A Flask test client for the receiver."""
    return create_app(services=services).test_client()
