"""The worker's and the scheduler's `/healthz`, `/readyz` and `/metrics` (VERIHOOK_HEALTH_BIND):
real processes, real Redis and database; a stalled loop answers 503."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from receiver.exceptions import ConfigurationError
from receiver.health_server import Heartbeat, parse_bind, start_health_server
from tests.support.processes import settings_env, verihook
from tests.support.redis_server import free_port


def wait_for(url: str, status: int = 200, timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2)
            if last.status_code == status:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}; last: {last!r}")


@pytest.mark.parametrize(
    ("command", "metric"),
    [("worker", "verihook_queue_depth"), ("scheduler", "verihook_scheduler_leader")],
)
def test_worker_and_scheduler_serve_health_and_metrics(services, command, metric):  # type: ignore[no-untyped-def]
    port = free_port()
    env = settings_env(services.settings) | {"VERIHOOK_HEALTH_BIND": f"127.0.0.1:{port}"}
    proc = verihook(command, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        alive = wait_for(f"{base}/healthz").json()
        assert alive["status"] == "ok" and alive["last_beat_seconds_ago"] < 60
        ready = wait_for(f"{base}/readyz").json()
        assert ready["checks"] == {"database": True, "migrations": True, "redis": True}
        assert metric in wait_for(f"{base}/metrics").text
        if command == "scheduler":  # it takes the lead within a heartbeat
            deadline = time.monotonic() + 15
            while "verihook_scheduler_leader 1.0" not in httpx.get(f"{base}/metrics").text:
                assert time.monotonic() < deadline, "the scheduler never reported its lead"
                time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_a_stalled_loop_answers_503(make_services):  # type: ignore[no-untyped-def]
    services = make_services(health_bind="127.0.0.1:0", health_max_age_seconds=0.3)
    heartbeat = Heartbeat()
    server = start_health_server(services, heartbeat)
    assert server is not None
    try:
        url = f"http://127.0.0.1:{server.server_port}/healthz"
        assert httpx.get(url).status_code == 200
        time.sleep(0.5)
        stalled = httpx.get(url)
        assert stalled.status_code == 503 and stalled.json()["status"] == "stalled"
        heartbeat.beat()
        assert httpx.get(url).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_no_bind_no_server_and_bad_binds_are_refused(services):  # type: ignore[no-untyped-def]
    assert start_health_server(services, Heartbeat()) is None
    assert parse_bind("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_bind("[::1]:9100") == ("::1", 9100)
    for bad in ("9100", "host:", ":9100", "host:port", "host:70000"):
        with pytest.raises(ConfigurationError):
            parse_bind(bad)


def test_the_worker_exits_cleanly_when_its_health_port_is_taken(services):  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = settings_env(services.settings) | {"VERIHOOK_HEALTH_BIND": f"127.0.0.1:{port}"}
        proc = verihook("worker", env=env)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert b"in use" in stderr and b"Traceback" not in stderr
