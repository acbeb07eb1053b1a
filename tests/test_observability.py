"""Health, readiness, metrics (also aggregated across gunicorn workers), request ids, redaction."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import text

from app import create_app
from receiver.store.db import make_engine
from tests.support import signing
from tests.support.flow import apply_all, send_contiguity, send_idvapi
from tests.support.processes import ROOT, settings_env
from tests.support.redis_server import RedisServer, free_port


def metric(body: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text body (0 when absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "")
    total = 0.0
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if re.fullmatch(pattern, _normalized(sample)):
            total += float(value)
    return total


def _normalized(sample: str) -> str:
    if "{" not in sample:
        return sample
    name, _, rest = sample.partition("{")
    pairs = sorted(p for p in rest.rstrip("}").split(",") if p and not p.startswith("pid="))
    return name + "{" + ",".join(pairs) + "}"


def test_healthz_and_readyz(client):  # type: ignore[no-untyped-def]
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": True, "migrations": True, "redis": True}
    assert ready.get_json()["role"] == "web"


def test_readyz_without_redis_is_degraded_and_without_schema_503(make_services, tmp_path):  # type: ignore[no-untyped-def]
    dead = RedisServer().start()
    dead.kill()
    client = create_app(services=make_services(redis_url=dead.url)).test_client()
    answer = client.get("/readyz")
    assert answer.status_code == 200 and answer.get_json()["checks"]["redis"] == "degraded"
    services = make_services()
    services.engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    answer = create_app(services=services).test_client().get("/readyz")
    assert answer.status_code == 503 and answer.get_json()["checks"]["migrations"] is False
    services.engine.dispose()


def test_metrics_count_deliveries_failures_queue_and_latency(client, services):  # type: ignore[no-untyped-def]
    before = client.get("/metrics").get_data(as_text=True)
    send_contiguity(client, signing.contiguity_event("verified"))
    body = signing.contiguity_event("processing")
    client.post(
        "/webhooks/contiguity",
        data=body,
        headers={"Content-Type": "application/json", "Contiguity-Signature": "t=1,v1=" + "0" * 64},
    )
    middle = client.get("/metrics").get_data(as_text=True)
    accepted = {"provider": "contiguity", "answer": "accepted"}
    assert (
        metric(middle, "verihook_deliveries_total", **accepted)
        == metric(before, "verihook_deliveries_total", **accepted) + 1
    )
    assert (
        metric(
            middle,
            "verihook_auth_failures_total",
            provider="contiguity",
            reason="signature_mismatch",
        )
        >= 1
    )
    assert metric(middle, "verihook_queue_depth") == 1
    assert metric(middle, "verihook_oldest_ready_event_age_seconds") >= 0
    applied_before = metric(middle, "verihook_receipt_to_applied_seconds_count")
    apply_all(services)
    after = client.get("/metrics").get_data(as_text=True)
    assert metric(after, "verihook_queue_depth") == 0
    assert metric(after, "verihook_receipt_to_applied_seconds_count") == applied_before + 1
    assert metric(after, "verihook_events", state="applied") == 1


def test_request_id_is_echoed_and_logged_and_secret_paths_redacted(client, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    answer = send_idvapi(client, signing.idvapi_result("verified"))
    generated = answer.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    bad = client.get("/healthz", headers={"X-Request-ID": "x" * 100})
    assert bad.headers["X-Request-ID"] != "x" * 100
    text_logs = caplog.text
    assert signing.IDVAPI_TOKEN not in text_logs
    assert "POST /webhooks/<name>/<segment> 200" in text_logs  # the route, never the path
    assert any(getattr(r, "request_id", None) == generated for r in caplog.records)


def test_metrics_aggregate_across_gunicorn_workers(services, tmp_path):  # type: ignore[no-untyped-def]
    with services.engine.begin() as conn:
        conn.execute(text("SELECT 1"))
    env = settings_env(services.settings)
    port = free_port()
    env.update(
        {
            "VERIHOOK_WEB_WORKERS": "3",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
            "VERIHOOK_BIND": f"127.0.0.1:{port}",
        }
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as http:
            for _ in range(30):  # fresh connections spread over the workers
                body = signing.contiguity_event("processing")
                http.post(
                    "/webhooks/contiguity",
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "Connection": "close",
                        "Contiguity-Signature": signing.contiguity_header(body),
                    },
                )
            scraped = http.get("/metrics").text
        writers = {f.stem.rsplit("_", 1)[-1] for f in (tmp_path / "prom").glob("counter_*.db")}
        assert (
            metric(scraped, "verihook_deliveries_total", provider="contiguity", answer="accepted")
            == 30
        )
        assert metric(scraped, "verihook_ingest_seconds_count", provider="contiguity") == 30
        assert len(writers) >= 2, writers  # several worker processes, one aggregated answer
    finally:
        server.terminate()
        server.wait(timeout=15)


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_worker_and_scheduler_log_json_lines(services, command):  # type: ignore[no-untyped-def]
    """The long-running processes log like the receiver: one JSON object per stderr line."""
    import json
    import signal
    import threading

    from rq import Worker

    from reconciler.leader import LEADER_KEY
    from tests.support.processes import verihook

    env = settings_env(services.settings) | {"VERIHOOK_LOG_LEVEL": "INFO"}
    queue = services.settings.queue_name
    proc = verihook(command, env=env)
    output: list[str] = []
    heard = [time.monotonic()]  # when the last stderr line came

    def read_stderr() -> None:
        for raw in proc.stderr:  # type: ignore[union-attr]
            output.append(raw.decode())
            heard.append(time.monotonic())

    readers = [
        threading.Thread(target=read_stderr, daemon=True),
        threading.Thread(target=proc.stdout.read, daemon=True),  # type: ignore[union-attr]
    ]
    for reader in readers:
        reader.start()

    def running() -> bool:
        if command == "worker":  # registered with RQ: it has started its work loop
            return any(queue in w.queue_names() for w in Worker.all(connection=services.redis))
        return services.redis.get(LEADER_KEY.format(queue=queue)) is not None  # leading

    try:
        deadline = time.monotonic() + 30
        while not running():
            assert proc.poll() is None, "".join(output)[-3000:]
            assert time.monotonic() < deadline, f"the {command} never started"
            time.sleep(0.05)
        # then whatever it logs on its way in: until it has been quiet for 1 s (at most 4 s)
        heard.append(time.monotonic())
        settled = time.monotonic() + 4
        while time.monotonic() - heard[-1] < 1.0 and time.monotonic() < settled:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == 0, "".join(output)[-3000:]  # SIGTERM: a clean stop
    lines = [line for line in "".join(output).splitlines() if line.strip()]
    assert lines, "the process logged nothing at INFO"
    records = [json.loads(line) for line in lines]  # a plain-text line fails here
    assert all({"ts", "level", "logger", "msg"} <= record.keys() for record in records)
