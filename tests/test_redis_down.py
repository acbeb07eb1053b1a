"""Redis dies: deliveries are still stored and answered; after a restart the outbox sweeper
(`flush_outbox`, and `verihook outbox flush`) wakes an RQ worker that applies every event once.

Uses a PRIVATE redis-server (not the session one), killed and restarted on the same port.
"""

from __future__ import annotations

import gc
import uuid
import warnings
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from rq import Queue
from sqlalchemy import func, select
from sqlmodel import Session

from app import cli, create_app
from receiver.outbox import flush_outbox
from receiver.store.models import InboundEvent, ObservationRecord, OutboxEntry, VerificationSession
from reconciler import jobs
from reconciler.worker_loop import PromptWorker
from tests.conftest import TEST_KEYS, provider_settings
from tests.support.redis_server import RedisServer
from tests.support.signing import (
    IDVAPI_TOKEN,
    contiguity_event,
    contiguity_header,
    idenfy_result,
    idenfy_signature,
    idvapi_result,
)

N = 20
QUEUE = "verihook-redis-down"


class Private:
    """The private Redis servers started by one test (all killed at the end)."""

    def __init__(self) -> None:
        self.started: list[RedisServer] = []

    def start(self, port: int | None = None) -> RedisServer:
        server = RedisServer(port=port)
        self.started.append(server)
        return server.start()

    def kill_all(self) -> None:
        for server in self.started:
            server.kill()


@pytest.fixture
def private() -> Iterator[Private]:
    servers = Private()
    try:
        yield servers
    finally:
        servers.kill_all()


def delivery(i: int) -> tuple[str, bytes, dict[str, str], tuple[str, str, str]]:
    """The i-th distinct delivery: (url, body, headers, (provider, session_id, final status))."""
    tag = uuid.uuid4().hex[:8]
    if i % 3 == 0:
        session = f"vs_down_{i}_{tag}"
        body = contiguity_event("verified", session, user_ref=f"user-down-{i}")
        return (
            "/webhooks/contiguity",
            body,
            {"Contiguity-Signature": contiguity_header(body)},
            ("contiguity", session, "verified"),
        )
    if i % 3 == 1:
        session = f"scan-down-{i}-{tag}"
        body = idenfy_result("DENIED", session, client_id=f"user-down-{i}")
        return (
            "/webhooks/idenfy/auto-finished",
            body,
            {"Idenfy-Signature": idenfy_signature(body)},
            ("idenfy", session, "rejected"),
        )
    session = f"user-down-{i}-{tag}"
    body = idvapi_result("verified", session)
    return (f"/webhooks/idvapi/{IDVAPI_TOKEN}", body, {}, ("idvapi", session, "verified"))


def deliver_while_redis_is_dead(make_services, private: Private):  # type: ignore[no-untyped-def]
    """Start a private Redis, build services on it, kill it, deliver N events."""
    first = private.start()
    services = make_services(redis_url=first.url, queue_name=QUEUE)
    assert services.redis.ping()
    first.kill()
    client = create_app(services=services).test_client()
    expected = []
    for i in range(N):
        url, body, headers, outcome = delivery(i)
        answer = client.post(
            url, data=body, headers={"Content-Type": "application/json", **headers}
        )
        assert answer.status_code == 200, (i, answer.get_json())
        assert answer.get_json()["status"] == "accepted"
        expected.append((answer.get_json()["event_id"], outcome))
    return services, first.port, expected


def assert_outbox(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        assert db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one() == n


def run_worker(services) -> None:  # type: ignore[no-untyped-def]
    jobs.use_services(services)
    worker = PromptWorker([QUEUE], connection=services.redis)
    assert worker.work(burst=True) is True  # it did some work


def assert_every_event_applied_once(engine, expected) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        for event_id, (provider, session_id, status) in expected:
            event = db.get(InboundEvent, event_id)
            assert event is not None and event.state == "applied", (event_id, event)
            observations = (
                db.execute(select(ObservationRecord).where(ObservationRecord.event_id == event_id))
                .scalars()
                .all()
            )
            assert len(observations) == 1, (event_id, observations)
            row = db.execute(
                select(VerificationSession).where(
                    VerificationSession.provider == provider,
                    VerificationSession.session_id == session_id,
                )
            ).scalar_one()
            assert row.status == status, (provider, session_id, row.status)
            assert observations[0].session_pk == row.id
        assert db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one() == 0
        total = db.execute(select(func.count()).select_from(ObservationRecord)).scalar_one()
        assert total == len(expected)


def test_deliveries_survive_a_dead_redis_and_flush_outbox_recovers(
    make_services,
    engine,  # type: ignore[no-untyped-def]
    private,
):
    services, port, expected = deliver_while_redis_is_dead(make_services, private)
    assert len({event_id for event_id, _ in expected}) == N
    assert_outbox(engine, N)

    private.start(port=port)  # the same URL answers again, empty
    # The receiver's background waker may be mid-retry when Redis returns: its one wake-up then
    # lands (a drain job); nothing else is queued.
    queued = len(Queue(QUEUE, connection=services.redis))
    assert queued <= 1
    result = flush_outbox(engine, services.redis, QUEUE)
    assert (result.pending, result.woken) == (N, N)
    assert result.job_id is not None
    assert len(Queue(QUEUE, connection=services.redis)) == queued + 1

    run_worker(services)
    assert_every_event_applied_once(engine, expected)

    # nothing left to wake; running the worker again changes nothing
    again = flush_outbox(engine, services.redis, QUEUE)
    assert (again.pending, again.woken, again.job_id) == (0, 0, None)
    assert_every_event_applied_once(engine, expected)


def cli_env(engine, redis_url: str, var_dir) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {
        "VERIHOOK_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "VERIHOOK_REDIS_URL": redis_url,
        "VERIHOOK_ENCRYPTION_KEYS": TEST_KEYS,
        "VERIHOOK_QUEUE_NAME": QUEUE,
        "VERIHOOK_VAR_DIR": str(var_dir),
        "VERIHOOK_ENV": "development",
        "VERIHOOK_CONFIG": "",
    }
    for name, values in provider_settings().items():
        for key, value in values.items():
            env[f"VERIHOOK_PROVIDERS__{name.upper()}__{key.upper()}"] = value
    return env


def invoke(runner: CliRunner, env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run `verihook <args>` in-process.

    The command builds its own Services and never closes them (fine for a process that exits);
    in-process, collect what it left open here so that its pooled connection is not reported as
    a ResourceWarning in some later test.
    """
    result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
    answer = (result.exit_code, result.output)
    del result  # its exception chain holds the command's frame, hence its Services
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return answer


def test_cli_outbox_flush_recovers_after_redis_restart(
    make_services,
    engine,
    private,  # type: ignore[no-untyped-def]
    tmp_path,
):
    services, port, expected = deliver_while_redis_is_dead(make_services, private)
    assert_outbox(engine, N)
    runner = CliRunner()
    env = cli_env(engine, f"redis://127.0.0.1:{port}/0", tmp_path)

    # while Redis is still down the command fails cleanly and changes nothing
    code, output = invoke(runner, env, "outbox", "flush")
    assert code != 0
    assert "Redis is unreachable" in output
    assert_outbox(engine, N)

    private.start(port=port)
    code, output = invoke(runner, env, "outbox", "flush")
    assert code == 0, output
    assert f"{N} event(s) waiting; woke workers for {N}" in output
    assert len(Queue(QUEUE, connection=services.redis)) == 1

    run_worker(services)
    assert_every_event_applied_once(engine, expected)
    code, output = invoke(runner, env, "outbox", "flush")
    assert code == 0 and "0 event(s) waiting; woke workers for 0" in output, output


def test_a_drain_job_whose_redis_dies_as_it_starts_still_applies_everything(make_services, private):  # type: ignore[no-untyped-def]
    """The job's first step (clearing the wake flag) needs Redis; the drain does not. A job that
    a worker took just before Redis died applies every stored event anyway."""
    services, _, expected = deliver_while_redis_is_dead(make_services, private)
    jobs.use_services(services)
    result = jobs.apply_ready_events()
    assert result["applied"] == N and result["failed"] == 0
    assert_outbox(services.engine, 0)
    assert_every_event_applied_once(services.engine, expected)
