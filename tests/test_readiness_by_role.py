"""Readiness by role (DESIGN §3): a receiver needs only the database at the newest schema, so it
stays ready through a Redis outage (`"redis": "degraded"`); a worker or a scheduler is not ready
without Redis. And each role's heartbeat is exported for the alert rules.

The multi-process test runs real gunicorn receivers, a real `verihook worker` and
`verihook scheduler` on a PRIVATE redis-server (started here, killed by its PID, started again
on the same port, empty) while clients keep delivering: every delivery is accepted, the receivers
answer ready throughout, and every event is applied once Redis is back, with no manual step.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import STDOUT, Popen, TimeoutExpired

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from app import create_app
from receiver.health_server import Heartbeat, start_health_server
from receiver.store.models import InboundEvent, ObservationRecord, OutboxEntry, VerificationSession
from tests.support import signing
from tests.support.flow import send_contiguity
from tests.support.processes import ROOT, settings_env
from tests.support.redis_server import RedisServer, free_port
from tests.test_ingest_processes import gunicorn

QUICK = {
    "scheduler_sweep_seconds": 1.0,
    "outbox_grace_seconds": 1.0,
    "leader_lock_seconds": 3.0,
    "scheduler_tick_seconds": 0.5,
}
"""The scheduler sweeps the outbox every second (1 s grace); a new leader within 3 s."""
DELIVERIES = 40
"""Answers the clients must have had before the outage, during it and after it."""


@pytest.fixture
def dead_redis() -> str:
    """The URL of a Redis that was started and killed (nothing listens there)."""
    server = RedisServer().start()
    server.kill()
    return server.url


def heartbeat_value(body: str, role: str) -> float:
    """`verihook_heartbeat_timestamp_seconds{role=…}` in a Prometheus text body (0 if absent)."""
    for line in body.splitlines():
        if line.startswith("verihook_heartbeat_timestamp_seconds{") and f'role="{role}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_receiver_without_redis_is_ready_degraded_and_accepts(make_services, dead_redis):  # type: ignore[no-untyped-def]
    client = create_app(services=make_services(redis_url=dead_redis)).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ready",
        "role": "web",
        "checks": {"database": True, "migrations": True, "redis": "degraded"},
    }
    answer = send_contiguity(client, signing.contiguity_event("verified", f"vs_{uuid.uuid4().hex}"))
    assert answer.status_code == 200 and answer.get_json()["status"] == "accepted"


@contextmanager
def health_server(services, role: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A worker's or scheduler's health endpoints in this process; yields their base URL."""
    server = start_health_server(services, Heartbeat(role))
    assert server is not None
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("role", ["worker", "scheduler"])
def test_a_worker_or_scheduler_without_redis_is_not_ready(make_services, dead_redis, role):  # type: ignore[no-untyped-def]
    down = make_services(redis_url=dead_redis, health_bind="127.0.0.1:0")
    with health_server(down, role) as base:
        answer = httpx.get(f"{base}/readyz", timeout=10)
        assert answer.status_code == 503
        assert answer.json() == {
            "status": "not ready",
            "role": role,
            "checks": {"database": True, "migrations": True, "redis": False},
        }
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200  # alive all the same
    up = make_services(health_bind="127.0.0.1:0")
    with health_server(up, role) as base:
        answer = httpx.get(f"{base}/readyz", timeout=10)
        assert answer.status_code == 200 and answer.json()["checks"]["redis"] is True


def test_each_role_exports_its_heartbeat(make_services, client):  # type: ignore[no-untyped-def]
    before = time.time()
    with health_server(make_services(health_bind="127.0.0.1:0"), "scheduler") as base:
        scraped = httpx.get(f"{base}/metrics", timeout=10).text
    assert before <= heartbeat_value(scraped, "scheduler") <= time.time()
    web = client.get("/metrics").get_data(as_text=True)
    assert before <= heartbeat_value(web, "web") <= time.time()


# ---- the outage, with real processes ----------------------------------------------------------


class Load:
    """Client threads delivering distinct signed Contiguity events until stopped."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url, self.stop = url, threading.Event()
        self.answers: list[tuple[float, int | None, str, str]] = []  # (at, status, answer, session)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _send(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as http:
            number = 0
            while not self.stop.is_set():
                number += 1
                session = f"vs_out{index}_{number}_{uuid.uuid4().hex[:6]}"
                body = signing.contiguity_event("verified", session, user_ref=f"u-{session}")
                headers = {
                    "Content-Type": "application/json",
                    "Contiguity-Signature": signing.contiguity_header(body),
                }
                try:
                    answer = http.post("/webhooks/contiguity", content=body, headers=headers)
                    status, said = answer.status_code, answer.json().get("status", "")
                except (httpx.HTTPError, ValueError) as exc:
                    status, said = None, type(exc).__name__
                with self.lock:
                    self.answers.append((time.monotonic(), status, said, session))
                time.sleep(0.01)

    def since(self, moment: float) -> int:
        """Answers received after `moment` (monotonic)."""
        with self.lock:
            return sum(1 for at, *_ in self.answers if at > moment)


def ready(url: str) -> tuple[int, dict[str, object]]:
    """(status code, body) of a `/readyz`."""
    answer = httpx.get(f"{url}/readyz", timeout=10)
    return answer.status_code, answer.json()


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def settled(engine, sessions: list[str]) -> bool:  # type: ignore[no-untyped-def]
    """Every event applied, the outbox empty."""
    with Session(engine) as db:
        waiting = db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()
        applied = db.execute(
            select(func.count())
            .select_from(InboundEvent)
            .where(InboundEvent.state == "applied", InboundEvent.provider == "contiguity")
        ).scalar_one()
    return waiting == 0 and applied == len(sessions)


def start(role: str, env: dict[str, str], logs: Path) -> Popen[bytes]:
    """`verihook ROLE` as a child, its output in a file (a pipe nobody reads could fill up while
    it logs the outage)."""
    with (logs / f"{role}.log").open("wb") as log:
        return Popen(
            [sys.executable, "-c", "from app import main; main()", role],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=STDOUT,
        )


def stop(process: Popen[bytes]) -> None:
    """SIGTERM a child we started, then wait for it (kill it after 30 s)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def test_receivers_stay_ready_and_accept_through_a_redis_outage(  # type: ignore[no-untyped-def]
    make_services, engine, backend, tmp_path
):
    redis = RedisServer().start()  # private: never the machine's shared Redis
    children: list[Popen[bytes]] = []
    try:
        services = make_services(redis_url=redis.url, queue_name=f"outage-{backend}", **QUICK)
        ports = {role: free_port() for role in ("worker", "scheduler")}
        env = settings_env(services.settings)
        for role, port in ports.items():
            bind = {"VERIHOOK_HEALTH_BIND": f"127.0.0.1:{port}"}
            children.append(start(role, env | bind, tmp_path))
        health = {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
        receivers = 1 if backend == "sqlite" else 2
        with gunicorn(services, tmp_path, "shipped", workers=receivers) as (url, _):
            for base in health.values():
                wait_until(lambda b=base: _answers(b) == 200, 60, f"{base} never became ready")
            with Load(url) as load:
                began = time.monotonic()
                wait_until(lambda: load.since(began) >= DELIVERIES, 60, "no deliveries")
                redis.kill()  # kill -9 by its PID
                outage = time.monotonic()
                checks = 0  # 8 rounds of readiness checks without Redis, under load
                while checks < 8 or load.since(outage) < DELIVERIES:
                    status, body = ready(url)
                    assert status == 200, body
                    assert body["checks"] == {
                        "database": True,
                        "migrations": True,
                        "redis": "degraded",
                    }
                    for role, base in health.items():
                        status, body = ready(base)
                        assert status == 503 and body["checks"]["redis"] is False, (role, body)
                    checks += 1
                    assert time.monotonic() - outage < 60, "no deliveries during the outage"
                    time.sleep(0.2)
                during = load.since(outage)
                redis.start()  # same port, empty: the wake-ups queued before are gone
                back = time.monotonic()
                wait_until(lambda: load.since(back) >= DELIVERIES, 60, "none after the outage")
            assert during > 0, "no delivery was sent while Redis was down"
            failed = [a for a in load.answers if (a[1], a[2]) != (200, "accepted")]
            assert not failed, failed[:5]
            sessions = [a[3] for a in load.answers]
            wait_until(lambda: settled(engine, sessions), 90, "events not all applied")
            assert ready(url)[0] == 200 and ready(url)[1]["checks"]["redis"] is True
        for role, base in health.items():
            wait_until(lambda b=base: _answers(b) == 200, 30, f"{role} not ready again")
    finally:
        for child in children:
            stop(child)
        redis.kill()
    with Session(engine) as db:
        observations = db.execute(
            select(ObservationRecord.event_id, func.count()).group_by(ObservationRecord.event_id)
        ).all()
        statuses = dict(
            db.execute(select(VerificationSession.session_id, VerificationSession.status)).all()
        )
    assert len(observations) == len(sessions) and {n for _, n in observations} == {1}
    assert {statuses[s] for s in sessions} == {"verified"}


def _answers(base: str) -> int | None:
    try:
        return httpx.get(f"{base}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return None
