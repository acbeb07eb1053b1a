"""verihook's real processes under chaos, for tests/test_process_chaos.py.

The stack: a private PostgreSQL cluster (tests/support/pg_cluster.py) and a private Redis
(tests/support/redis_server.py), two receivers (`verihook web`, each its own gunicorn with
VERIHOOK_WEB_WORKERS=2 on its own port), three `verihook worker`s, two `verihook scheduler`s and the
five provider simulators, configured like `verihook demo` (reconciler/demo/run.py
`demo_env`) but with PostgreSQL and shorter intervals.

Provider traffic reaches the receivers the way it would in production, through a balancer: the
simulators deliver to `Front`, an in-process HTTP relay that hands each request to the two
receivers in turn. What the relay does on the provider's behalf is what a provider does: a
delivery that finds its receiver dead (connection error) or the store down (503, or any 5xx) is
retried with backoff on the other receiver, for up to RETRY_WINDOW_SECONDS; only the final
answer goes back to the simulator (which itself retries a failed delivery, `retry_on_failure`).
The load driver's own signed deliveries (`DirectLoad`) go through the same `Deliverer`, so every
delivery, its attempts and its final answer are recorded in one `DeliveryLog`.

Everything started here is stopped by PID in `ChaosStack.stop()`.
"""

from __future__ import annotations

import heapq
import http.server
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import Engine, create_engine, func, select

from receiver.providers.base import content_digest
from receiver.store.models import InboundEvent, OutboxEntry, utcnow
from reconciler import simulators
from reconciler.demo.run import demo_env, free_port, simulator_credentials
from reconciler.leader import LEADER_KEY
from tests.support import signing
from tests.support.pg_cluster import PgCluster
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "verihook-chaos"
RECEIVERS = 2
WEB_WORKERS = 2
WORKERS = 3
SCHEDULERS = 2
STACK_SETTINGS = {
    "QUEUE_NAME": QUEUE,
    "SCHEDULER_TICK_SECONDS": "0.3",
    "SCHEDULER_SWEEP_SECONDS": "1",
    "LEADER_LOCK_SECONDS": "3",
    "OUTBOX_GRACE_SECONDS": "1",
    "APPLY_BATCH_SIZE": "100",
    "POLL_LEASE_SECONDS": "10",
    "LOG_LEVEL": "WARNING",
}
"""Short intervals: tick 0.3 s, outbox sweep every 1 s (1 s grace), leader lock 3 s, poll lease
10 s (a status call to a local simulator takes milliseconds). The per-provider poll settings are
the demo's (first poll 2.5 s, webhook deadline 4 s)."""

RETRY_WINDOW_SECONDS = 30.0
"""How long a delivery is retried (5xx, connection errors) before the relay gives up."""
ATTEMPT_TIMEOUT_SECONDS = 10.0
"""One attempt's timeout (the receiver itself never takes longer than 8 s, gunicorn's timeout)."""
RETRY_STATUSES = frozenset({500, 502, 503, 504})
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0


# ----- what was delivered ------------------------------------------------------------------


@dataclass
class Attempt:
    """One HTTP attempt of a delivery: which receiver, and its status or error."""

    receiver: int
    status: int | None
    error: str | None


@dataclass
class Sent:
    """One delivery as its sender saw it, with the receivers' final answer.

    `identity` is the provider's dedupe identity as the README documents it (Contiguity: the
    envelope id; iDenfy and idvapi: the content, idvapi prefixed with its check_id; docverify:
    session + state; nevis: session), written the way verihook stores it as `dedupe_key`.
    """

    origin: str  # "simulator" | "driver" | "api"
    provider: str
    kind: str  # "webhook" | "callback" | "api"
    identity: str
    session_id: str | None
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None
    event_id: int | None = None
    answer: str | None = None  # accepted | duplicate | quarantined (webhooks)

    @property
    def ok(self) -> bool:
        """The provider's notion of success: 2xx (a redirect callback: below 400)."""
        if self.status is None:
            return False
        return self.status < 400 if self.kind == "callback" else 200 <= self.status < 300


def describe(path: str, body: bytes) -> tuple[str, str, str, str | None]:
    """(provider, kind, identity, session id) of a provider request to verihook."""
    parts = urlsplit(path)
    segments = parts.path.strip("/").split("/")
    if len(segments) < 2 or segments[0] not in ("webhooks", "callbacks"):
        return "-", "api", parts.path, None
    provider = segments[1]
    if segments[0] == "callbacks":
        query = dict(parse_qsl(parts.query))
        session_id = query.get("sessionId", "")
        if provider == "docverify":
            key = "callback:" + content_digest(session_id, query.get("state", ""))
        else:
            key = "callback:" + session_id
        return provider, "callback", key, session_id
    try:
        document = json.loads(body)
    except ValueError:
        document = {}
    if provider == "contiguity":
        data = document.get("data") or {}
        return provider, "webhook", "evt:" + str(document.get("id")), data.get("id")
    if provider == "idvapi":
        key = f"check:{document.get('check_id')}:" + content_digest(body)
        return provider, "webhook", key, document.get("user_identifier")
    return provider, "webhook", "sha256:" + content_digest(body), document.get("scanRef")


class DeliveryLog:
    """Every delivery sent, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[Sent] = []

    def add(self, record: Sent) -> None:
        """Record a finished delivery."""
        with self.lock:
            self.sent.append(record)

    def snapshot(self) -> list[Sent]:
        """A copy of the list."""
        with self.lock:
            return list(self.sent)

    def figures(self) -> dict[str, int]:
        """Deliveries (webhooks and callbacks, not API calls) by outcome and attempt statuses."""
        sent = [record for record in self.snapshot() if record.kind != "api"]
        statuses = Counter(
            attempt.status if attempt.status is not None else "error"
            for record in sent
            for attempt in record.attempts
        )
        return {
            "deliveries": len(sent),
            "attempts": sum(len(record.attempts) for record in sent),
            "succeeded": sum(record.ok for record in sent),
            "gave_up": sum(not record.ok for record in sent),
            "retried": sum(len(record.attempts) > 1 for record in sent),
            "answers_503": statuses[503],
            "answers_500": statuses[500],
            "answers_502_504": statuses[502] + statuses[504],
            "connection_errors": statuses["error"],
            "duplicates_answered": sum(record.answer == "duplicate" for record in sent),
        }


class Deliverer:
    """Sends a request to the receivers in turn, retrying like a provider; records it."""

    def __init__(self, receivers: list[str], log: DeliveryLog) -> None:
        self.receivers = receivers
        self.log = log
        self.client = httpx.Client(
            follow_redirects=False,
            trust_env=False,
            timeout=ATTEMPT_TIMEOUT_SECONDS,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        self._turn = 0
        self._lock = threading.Lock()
        self.closed = False

    def _next(self) -> int:
        with self._lock:
            self._turn += 1
            return self._turn

    def send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        origin: str,
        window: float = RETRY_WINDOW_SECONDS,
    ) -> tuple[Sent, httpx.Response | None]:
        """Deliver, retrying on 5xx and connection errors on the other receiver with backoff
        (0.2 s doubling to 1 s; the receivers' `Retry-After: 5` is not waited out, to keep the
        test short)."""
        provider, kind, identity, session_id = describe(path, body or b"")
        record = Sent(origin, provider, kind, identity, session_id)
        deadline, turn, pause = time.monotonic() + window, self._next(), 0.2
        response: httpx.Response | None = None
        while True:
            index = turn % len(self.receivers)
            turn += 1
            try:
                response = self.client.request(
                    method,
                    self.receivers[index] + path,
                    headers=dict(headers),
                    content=body,
                )
                record.attempts.append(Attempt(index, response.status_code, None))
            except httpx.HTTPError as exc:
                response = None
                record.attempts.append(Attempt(index, None, type(exc).__name__))
            if (response is not None and response.status_code not in RETRY_STATUSES) or (
                self.closed or time.monotonic() + pause > deadline
            ):
                break
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        if response is not None:
            record.status = response.status_code
            if kind == "webhook" and 200 <= response.status_code < 300:
                answer = response.json()
                record.event_id, record.answer = answer.get("event_id"), answer.get("status")
        self.log.add(record)
        return record, response

    def close(self) -> None:
        """Stop retrying and close the HTTP client."""
        self.closed = True
        self.client.close()


# ----- the balancer the simulators deliver to ----------------------------------------------

HOP_HEADERS = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}
)
RELAYED_ANSWER_HEADERS = ("Content-Type", "Location", "Retry-After")


class Front:
    """An HTTP relay on 127.0.0.1: every request goes to `Deliverer.send` (origin simulator)."""

    def __init__(self, deliverer: Deliverer) -> None:
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                front.relay(self)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                front.relay(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """No access log."""

        self.deliverer = deliverer
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.in_flight = 0
        self._lock = threading.Lock()
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def relay(self, request: http.server.BaseHTTPRequestHandler) -> None:
        """Forward one simulator request and answer it with the receivers' final answer."""
        with self._lock:
            self.in_flight += 1
        try:
            length = int(request.headers.get("Content-Length") or 0)
            body = request.rfile.read(length) if length else None
            headers = {
                key: value
                for key, value in request.headers.items()
                if key.lower() not in HOP_HEADERS
            }
            _, response = self.deliverer.send(
                request.command, request.path, headers, body, origin="simulator"
            )
            status = response.status_code if response is not None else 502
            content = response.content if response is not None else b'{"error":"bad gateway"}'
            request.send_response(status)
            for name in RELAYED_ANSWER_HEADERS:
                if response is not None and name in response.headers:
                    request.send_header(name, response.headers[name])
            request.send_header("Content-Length", str(len(content)))
            request.send_header("Connection", "close")
            request.end_headers()
            request.wfile.write(content)
        finally:
            with self._lock:
                self.in_flight -= 1

    def idle(self) -> bool:
        """True when no request is being relayed."""
        with self._lock:
            return self.in_flight == 0

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ----- verihook's processes ----------------------------------------------------------------


@dataclass
class Child:
    """One verihook process this stack started."""

    name: str
    role: str  # web | worker | scheduler | tool
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path
    args: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    killed: bool = False  # by us (kill -9, or the final stop)
    reaped: bool = False  # it exited on its own and the watchdog saw it

    @property
    def pid(self) -> int:
        """Its PID (for `web`, gunicorn's master: `verihook web` execs gunicorn)."""
        return self.process.pid


def descendants(pid: int) -> list[int]:
    """Every live descendant of a process (Linux /proc), deepest last."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for path in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(value) for value in path.read_text().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


class Supervisor:
    """Starts `verihook …` processes, kills them with SIGKILL on demand, stops them all."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.counts: Counter[str] = Counter()
        self.lock = threading.RLock()
        self.closed = False
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, role: str, *args: str, **extra_env: str) -> Child:
        """Start `verihook ARGS…` (its output in `<log_dir>/<name>.log`)."""
        with self.lock:
            if self.closed:
                raise RuntimeError("the supervisor is stopping: nothing new starts")
            self.counts[role] += 1
            name = f"{role}-{self.counts[role]}"
            log_path = self.log_dir / f"{name}.log"
            log = log_path.open("wb")
            process = subprocess.Popen(
                [sys.executable, "-c", "from app import main; main()", *args],
                env={**self.env, **extra_env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            child = Child(name, role, process, log, log_path, tuple(args), dict(extra_env))
            self.children.append(child)
            return child

    def run(self, role: str, *args: str) -> None:
        """Run `verihook ARGS…` to completion (RuntimeError when it fails)."""
        child = self.start(role, *args)
        if child.process.wait(timeout=120) != 0:
            raise RuntimeError(f"`verihook {' '.join(args)}` failed:\n{self.tail(child)}")

    def running(self, role: str) -> list[Child]:
        """The live, not killed children of a role."""
        return [
            child
            for child in self.children
            if child.role == role and not child.killed and child.process.poll() is None
        ]

    def kill9(self, child: Child) -> list[int]:
        """SIGKILL a child and all its descendants (gunicorn's workers); return their PIDs."""
        pids = [child.pid, *descendants(child.pid)]
        child.killed = True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        return pids

    def reap(self) -> list[Child]:
        """Long-running children that exited on their own since the last call."""
        with self.lock:
            found = [
                child
                for child in self.children
                if child.role != "tool"
                and not (child.killed or child.reaped)
                and child.process.poll() is not None
            ]
            for child in found:
                child.reaped = True
            return found

    def why(self, child: Child) -> str:
        """A one-line account of why a child exited, from the end of its log."""
        lines = [line.strip() for line in self.tail(child, 20_000).splitlines() if line.strip()]
        said = [line for line in lines if "quitting" in line or "Error" in line[:80]]
        unique = list(dict.fromkeys(said))
        return " | ".join(unique[:1] + unique[-1:]) if unique else (lines[-1] if lines else "")

    def check_alive(self) -> None:
        """RuntimeError naming a long-running child that died without being killed."""
        for child in self.children:
            if child.role != "tool" and not child.killed and child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited ({child.process.returncode}):\n" + self.tail(child)
                )

    def tail(self, child: Child, size: int = 3000) -> str:
        """The end of a child's log."""
        child.log.flush()
        try:
            return child.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop_all(self) -> None:
        """SIGTERM every live child (and gunicorn's workers), then SIGKILL what remains."""
        with self.lock:
            self.closed = True
        leftovers: list[int] = []
        for child in self.children:
            child.killed = True
            if child.process.poll() is None:
                leftovers += descendants(child.pid)
                child.process.terminate()
        for child in self.children:
            try:
                child.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                leftovers += descendants(child.pid)
                child.process.kill()
                child.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            child.log.close()
        for pid in leftovers:  # gunicorn workers orphaned by a master that died first
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ----- the stack ---------------------------------------------------------------------------


@dataclass
class Exit:
    """A verihook process that exited although nobody killed it (restarted by the watchdog)."""

    at: float  # seconds since the load began
    name: str
    returncode: int | None
    why: str


@dataclass
class ChaosEvent:
    """One kill or restart done during the load, for the report."""

    at: float  # seconds since the load began, when it started
    what: str
    detail: str
    seconds: float  # how long it took (down time, takeover time)
    back_after: float | None = None  # a restarted receiver: seconds until it answered again


class ChaosStack:
    """PostgreSQL, Redis, simulators, the relay and verihook's processes; stop() ends them."""

    def __init__(self, workdir: Path, *, chaos: Mapping[str, Any], seed: int) -> None:
        self.workdir = workdir
        self.chaos, self.seed = dict(chaos), seed
        self.credentials = simulator_credentials()
        self.api_token, self.path_token = secrets.token_hex(24), secrets.token_hex(24)
        self.ports = [free_port() for _ in range(RECEIVERS)]
        self.receivers = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.log = DeliveryLog()
        self.deliverer = Deliverer(self.receivers, self.log)
        self.front: Front | None = None
        self.pg = PgCluster()
        self.redis = RedisServer()
        self.sims: dict[str, simulators.Simulator] = {}
        self.supervisor: Supervisor | None = None
        self.web: list[Child | None] = [None] * RECEIVERS
        self.events: list[ChaosEvent] = []
        self.load_started = time.monotonic()
        self.redis_evidence = 0
        self._engine: Engine | None = None
        self.exits: list[Exit] = []
        self._watching = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.stopping = threading.Event()
        self.chaos_errors: list[BaseException] = []
        self._chaos: threading.Thread | None = None

    # ----- start / stop ---------------------------------------------------------------------
    def start(self) -> ChaosStack:
        """Start everything and wait until the receivers answer and the workers listen."""
        self.pg.start()
        self.redis.start()
        for name in simulators.PROVIDERS:
            self.sims[name] = simulators.start(name, **self.credentials[name])
        self.front = Front(self.deliverer)
        env = demo_env(
            self.sims,
            self.credentials,
            self.workdir / "var",
            DATABASE_URL=self.pg.url,
            REDIS_URL=self.redis.url,
            API_TOKENS=f"backend:{self.api_token}",
            PUBLIC_URL=self.front.url,
            PROVIDERS__IDVAPI__WEBHOOK_TOKEN=self.path_token,
            **STACK_SETTINGS,
        )
        self.supervisor = Supervisor(env, self.workdir / "logs")
        self.supervisor.run("tool", "db", "upgrade")
        for index in range(RECEIVERS):
            self.start_receiver(index)
        for _ in range(WORKERS):
            self.supervisor.start("worker", "worker")
        for _ in range(SCHEDULERS):
            self.supervisor.start("scheduler", "scheduler")
        self._point_simulators()
        self.wait_until_up()
        self._watchdog = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._watching.set()
        self._watchdog.start()
        return self

    def _watch(self) -> None:
        """The supervisor's loop: restart any process that exits on its own, and note it."""
        assert self.supervisor is not None
        while self._watching.is_set():
            for child in self.supervisor.reap():
                self.exits.append(
                    Exit(
                        round(time.monotonic() - self.load_started, 1),
                        child.name,
                        child.process.returncode,
                        self.supervisor.why(child),
                    )
                )
                if child.role == "web":
                    self.start_receiver(self.web.index(child))
                else:
                    self.supervisor.start(child.role, *child.args, **child.extra_env)
            time.sleep(0.5)

    def _point_simulators(self) -> None:
        assert self.front is not None
        for name, sim in self.sims.items():
            hook = f"{self.front.url}/webhooks/{name}"
            hook += f"/{self.path_token}" if name == "idvapi" else ""
            sim.configure(
                webhook_url=hook,
                callback_url=f"{self.front.url}/callbacks/{name}",
                retry_on_failure=True,
                delivery_timeout=RETRY_WINDOW_SECONDS + ATTEMPT_TIMEOUT_SECONDS + 5,
                chaos={**self.chaos, "seed": f"{self.seed}-{name}"},
            )

    def start_receiver(self, index: int) -> Child:
        """Start (or restart) receiver `index` on its own port, its own metrics directory."""
        assert self.supervisor is not None
        metrics = self.workdir / "var" / f"prometheus-web{index}"
        self.web[index] = self.supervisor.start(
            "web",
            "web",
            "--bind",
            f"127.0.0.1:{self.ports[index]}",
            VERIHOOK_WEB_WORKERS=str(WEB_WORKERS),
            PROMETHEUS_MULTIPROC_DIR=str(metrics),
        )
        return self.web[index]  # type: ignore[return-value]

    def wait_until_up(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Receivers answer /healthz, every worker registered with RQ, a scheduler leads."""
        assert self.supervisor is not None
        deadline = time.monotonic() + timeout
        while True:
            self.supervisor.check_alive()
            if (
                all(self._answers(url) for url in self.receivers)
                and self.registered_workers() >= WORKERS
                and self.leader_pid() is not None
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not come up in {timeout} s: {self.workdir}")
            time.sleep(0.2)

    def _answers(self, url: str) -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_receiver(self, index: int, timeout: float = START_TIMEOUT_SECONDS) -> float:
        """Block until receiver `index` answers /healthz; return how long that took."""
        began = time.monotonic()
        while not self._answers(self.receivers[index]):
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"receiver {index} did not come back in {timeout} s")
            time.sleep(0.1)
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop everything this stack started (by PID), then remove the private database."""
        self.stopping.set()
        if self._chaos is not None:  # let a kill or restart in progress finish first
            self._chaos.join(timeout=90)
        steps: list[Callable[[], None]] = [self._stop_watchdog]
        if self.front is not None:
            steps.append(self.front.stop)
        steps.append(self.deliverer.close)
        if self.supervisor is not None:
            steps.append(self.supervisor.stop_all)
        steps += [sim.stop for sim in self.sims.values()]
        if self._engine is not None:
            steps.append(self._engine.dispose)
        steps += [self.redis.kill, self.pg.stop]
        errors = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                errors.append(exc)
        if errors:
            raise errors[0]

    def _stop_watchdog(self) -> None:
        self._watching.clear()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)

    # ----- Redis views ----------------------------------------------------------------------
    def redis_client(self) -> Redis:
        """A short-timeout client of the private Redis (close it)."""
        return Redis.from_url(self.redis.url, socket_timeout=2, socket_connect_timeout=2)

    def leader_pid(self) -> int | None:
        """The PID in the leader key's token (`host:pid:random`), or None."""
        try:
            with self.redis_client() as redis:
                value = redis.get(LEADER_KEY.format(queue=QUEUE))
        except RedisError:
            return None
        return int(value.decode().split(":")[1]) if value else None

    def registered_workers(self) -> int:
        """RQ workers registered in Redis."""
        try:
            with self.redis_client() as redis:
                return int(Worker.count(connection=redis))
        except RedisError:
            return 0

    # ----- chaos ----------------------------------------------------------------------------
    def start_chaos(self, plan: list[tuple[float, Callable[[], None]]]) -> None:
        """Run `(seconds after now, action)` steps in order in a thread, at least 1 s apart."""

        def run() -> None:
            began = time.monotonic()
            try:
                for due, action in plan:
                    if self.stopping.wait(max(began + due - time.monotonic(), 1.0)):
                        return
                    action()
            except BaseException as exc:  # a thread boundary: see chaos_done()
                self.chaos_errors.append(exc)

        self._chaos = threading.Thread(target=run, name="chaos", daemon=True)
        self._chaos.start()

    def chaos_done(self, timeout: float) -> None:
        """Wait for the chaos plan to finish; re-raise its error."""
        assert self._chaos is not None
        self._chaos.join(timeout)
        if self._chaos.is_alive():
            raise TimeoutError(f"the chaos plan did not finish within {timeout} s")
        if self.chaos_errors:
            raise self.chaos_errors[0]

    def _note(self, began: float, what: str, detail: str, seconds: float) -> ChaosEvent:
        event = ChaosEvent(began - self.load_started, what, detail, round(seconds, 2))
        self.events.append(event)
        return event

    def busy_workers(self) -> set[int]:
        """PIDs of the RQ workers running a job right now."""
        try:
            with self.redis_client() as redis:
                return {w.pid for w in Worker.all(connection=redis) if w.get_state() == "busy"}
        except RedisError:
            return set()

    def kill_worker(self, look_for_busy: float = 3.0) -> None:
        """kill -9 a worker (one running a job, if one is seen within `look_for_busy` seconds)
        and start a replacement, as a supervisor would."""
        assert self.supervisor is not None
        began = time.monotonic()
        running = {child.pid: child for child in self.supervisor.running("worker")}
        busy: set[int] = set()
        while not busy and time.monotonic() - began < look_for_busy:
            busy = self.busy_workers() & set(running)
            time.sleep(0.02)
        victim = running[min(busy)] if busy else next(iter(running.values()))
        self.supervisor.kill9(victim)
        replacement = self.supervisor.start("worker", "worker")
        state = "running a job" if busy else "idle"
        self._note(began, "kill -9 worker", f"pid {victim.pid} ({state}) -> {replacement.pid}", 0)

    def kill_receiver(self, index: int = 0, down_seconds: float = 1.0) -> None:
        """kill -9 receiver `index`'s gunicorn master and workers; restart it after a while.

        Returns once the new gunicorn is started; a thread notes when it answers again.
        """
        assert self.supervisor is not None
        victim = self.web[index]
        assert victim is not None
        began = time.monotonic()
        pids = self.supervisor.kill9(victim)
        time.sleep(down_seconds)
        self.start_receiver(index)
        event = self._note(
            began,
            "kill -9 receiver",
            f"receiver {index}: gunicorn master + {len(pids) - 1} worker(s) {pids}",
            down_seconds,
        )

        def watch() -> None:
            try:
                self.wait_receiver(index)
            except RuntimeError:
                return
            event.back_after = round(time.monotonic() - began, 2)

        threading.Thread(target=watch, name="receiver-watch", daemon=True).start()

    def kill_leader(self, timeout: float = 30.0) -> None:
        """kill -9 the scheduler named by the leader key, start a replacement, time takeover."""
        assert self.supervisor is not None
        pid = self.leader_pid()
        victim = next(
            (child for child in self.supervisor.running("scheduler") if child.pid == pid), None
        )
        if victim is None:
            raise AssertionError(f"the leader key names pid {pid}, not one of our schedulers")
        began = time.monotonic()
        self.supervisor.kill9(victim)
        self.supervisor.start("scheduler", "scheduler")
        while (leader := self.leader_pid()) in (None, pid):
            if time.monotonic() - began > timeout:
                raise AssertionError(f"no scheduler took the lead within {timeout} s")
            time.sleep(0.05)
        self._note(
            began,
            "kill -9 leader scheduler",
            f"pid {pid} -> leader {leader}",
            time.monotonic() - began,
        )

    def restart_redis(self, down_seconds: float = 3.0) -> None:
        """kill -9 the private redis-server, keep it down a while, start an empty one on the
        same port. Every queued wake-up is lost, and the events stored meanwhile have none:
        only the outbox sweeper can get them applied. Both counts go in the event's detail."""
        began = time.monotonic()
        assert self.supervisor is not None
        ours = {child.pid for child in self.supervisor.running("worker")}
        busy: set[int] = set()
        while not busy and time.monotonic() - began < 3.0:  # kill it under a running job
            busy = self.busy_workers() & ours
            time.sleep(0.02)
        killed_at, waiting = utcnow(), self.count(OutboxEntry)
        self.redis.kill()
        time.sleep(down_seconds)
        self.redis.start()
        stored = self.count(InboundEvent, InboundEvent.received_at >= killed_at)
        self.redis_evidence = waiting + stored
        self._note(
            began,
            "restart Redis (kill -9, empty)",
            f"{len(busy)} worker(s) running a job, {waiting} event(s) in the outbox when "
            f"killed, {stored} stored while it was down",
            time.monotonic() - began,
        )

    def restart_postgres(self, down_seconds: float = 1.5) -> None:
        """Crash PostgreSQL (stop -m immediate), keep it down a while, start it again."""
        began = time.monotonic()
        seconds = self.pg.restart(crash=True, down_seconds=down_seconds)
        self._note(began, "restart PostgreSQL (immediate stop)", f"port {self.pg.port}", seconds)

    # ----- database views -------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """A read engine on the private database (disposed by stop())."""
        if self._engine is None:
            self._engine = create_engine(self.pg.url, pool_pre_ping=True)
        return self._engine

    def count(self, table: Any, *where: Any) -> int:
        """Rows of a table (matching `where`)."""
        with self.engine.connect() as connection:
            query = select(func.count()).select_from(table).where(*where)
            return int(connection.execute(query).scalar_one())


# ----- the load ----------------------------------------------------------------------------


class Schedule:
    """Runs callables at their due times (seconds after `start()`) on a few threads."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.items: list[tuple[float, int, Callable[[], None]]] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._t0 = 0.0

    def add(self, due: float, action: Callable[[], None]) -> None:
        """Run `action` `due` seconds after the start."""
        heapq.heappush(self.items, (due, len(self.items), action))

    def start(self, t0: float) -> None:
        """Start the threads; due times count from the monotonic time `t0`."""
        self._t0 = t0
        for number in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"load-{number}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self.items or self.errors:
                    return
                due, _, action = heapq.heappop(self.items)
            wait = self._t0 + due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                action()
            except BaseException as exc:  # a thread boundary: handed to join()
                with self._lock:
                    self.errors.append(exc)

    def cancel(self) -> None:
        """Drop every item not started yet (the threads end after their current one)."""
        with self._lock:
            self.items.clear()

    def join(self, timeout: float) -> None:
        """Wait for every item; re-raise the first error."""
        deadline = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.errors:
            raise self.errors[0]
        if any(thread.is_alive() for thread in self._workers):
            raise TimeoutError(f"the load did not finish within {timeout} s")


@dataclass
class DirectSession:
    """A session only the load driver knows: its deliveries and the status they must yield."""

    provider: str
    session_id: str
    user_ref: str
    expected: tuple[str, str]  # (status, decided_by)
    deliveries: list[tuple[float, str, bytes]] = field(default_factory=list)  # (due, path, body)


CONTIGUITY_FINALS = {
    "verified": ("verified", "auto"),
    "failed": ("rejected", "auto"),
    "manually_approved": ("verified", "manual"),
    "manually_denied": ("rejected", "manual"),
}
IN_FLIGHT_CONTIGUITY = ("started", "processing", "requires_input", "processing")


class DirectLoad:
    """Signed deliveries of the driver's own sessions (Contiguity, iDenfy, idvapi).

    Each session gets a few in-flight statements and one decision, with increasing provider
    times, sent shuffled within a few seconds, 20 % of them twice (identical bytes; Contiguity
    re-signed at send time as a provider's retry is). The ordering rule makes the decision win
    whatever the order, so `expected` is known in advance.
    """

    def __init__(self, stack: ChaosStack, budget: int, window: float, seed: int) -> None:
        self.stack = stack
        self.rng = random.Random(seed)
        self.sessions: list[DirectSession] = []
        count, base = 0, int(time.time()) - 3600
        while count < budget:
            provider = ("contiguity", "idenfy", "idvapi")[len(self.sessions) % 3]
            number = len(self.sessions)
            session = getattr(self, f"_{provider}")(number, base + number * 10)
            start = self.rng.uniform(0.0, max(0.0, window - 4.0))
            stories = list(session.deliveries)
            session.deliveries = []
            for _, path, body in stories:
                due = start + self.rng.uniform(0.0, 3.0)
                session.deliveries.append((due, path, body))
                if self.rng.random() < 0.2:
                    session.deliveries.append((due + self.rng.uniform(0.1, 3.0), path, body))
            count += len(session.deliveries)
            self.sessions.append(session)

    def _contiguity(self, number: int, at: int) -> DirectSession:
        final = self.rng.choice(sorted(CONTIGUITY_FINALS))
        session = DirectSession(
            "contiguity", f"vs_chaos_{number:05d}", f"chaos-c-{number}", CONTIGUITY_FINALS[final]
        )
        kinds = [*IN_FLIGHT_CONTIGUITY[: self.rng.randint(1, 4)], final]
        if self.rng.random() < 0.3:
            kinds.append("processing")  # a late in-flight statement after the decision
        for step, kind in enumerate(kinds):
            body = signing.contiguity_event(
                kind,
                session.session_id,
                user_ref=session.user_ref,
                timestamp=at + step,
                event_id=f"evt_chaos_{uuid.uuid4().hex[:16]}",
            )
            session.deliveries.append((0.0, "/webhooks/contiguity", body))
        return session

    def _idenfy(self, number: int, at: int) -> DirectSession:
        overall = self.rng.choice(["APPROVED", "DENIED"])
        manual = self.rng.random() < 0.3
        status = "verified" if overall == "APPROVED" else "rejected"
        session = DirectSession(
            "idenfy",
            f"scan-chaos-{number:05d}",
            f"chaos-f-{number}",
            (status, "manual" if manual else "auto"),
        )
        steps = [("ACTIVE", False, False), ("REVIEWING", False, False), (overall, True, manual)]
        for step, (value, final, by_hand) in enumerate(steps):
            body = signing.idenfy_result(
                value,
                session.session_id,
                client_id=session.user_ref,
                final=final,
                finish_time=at + step,
                manual=by_hand,
            )
            session.deliveries.append((0.0, "/webhooks/idenfy", body))
        return session

    def _idvapi(self, number: int, at: int) -> DirectSession:
        status = self.rng.choice(["verified", "rejected"])
        user = f"chaos-i-{number:05d}"
        session = DirectSession("idvapi", user, user, (status, "auto"))
        body = signing.idvapi_result(status, user, check_id=str(uuid.uuid4()))
        session.deliveries.append((0.0, f"/webhooks/idvapi/{self.stack.path_token}", body))
        return session

    @property
    def deliveries(self) -> int:
        """How many deliveries the driver sends (duplicates included)."""
        return sum(len(session.deliveries) for session in self.sessions)

    def headers(self, provider: str, body: bytes) -> dict[str, str]:
        """The provider's headers, signed now."""
        headers = {"Content-Type": "application/json"}
        secret = self.stack.credentials.get(provider, {}).get("webhook_secret")
        if provider == "contiguity":
            headers["Contiguity-Signature"] = signing.contiguity_header(body, secret=secret)
        elif provider == "idenfy":
            headers["Idenfy-Signature"] = signing.idenfy_signature(body, secret=secret)
        return headers

    def schedule(self, schedule: Schedule) -> None:
        """Put every delivery on the schedule."""
        for session in self.sessions:
            for due, path, body in session.deliveries:
                schedule.add(due, self._sender(session.provider, path, body))

    def _sender(self, provider: str, path: str, body: bytes) -> Callable[[], None]:
        def send() -> None:
            self.stack.deliverer.send(
                "POST", path, self.headers(provider, body), body, origin="driver"
            )

        return send
