"""The ingest fast path under real gunicorn processes: group commit keeps every promise.

- Every delivery answered 2xx is in the store, even when a worker is killed with SIGKILL while
  batches are in flight (store before ack).
- Concurrent copies of one delivery, spread over several processes and batches, make one row,
  and every copy is answered with that row's id.
- gunicorn's sync workers (`gunicorn -w 2 app:app`, one request at a time per process) and the
  shipped gthread config both work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from receiver.store.models import InboundEvent, OutboxEntry
from tests.support import signing
from tests.support.processes import ROOT, settings_env
from tests.support.redis_server import free_port

SERVERS = {
    "shipped": ["-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
    "sync": ["-w", "2", "-k", "sync", "app:app"],
}


def worker_pids(master: int) -> list[int]:
    try:
        found = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except FileNotFoundError:
        return []
    return [int(pid) for pid in found]


@contextmanager
def gunicorn(services, tmp_path: Path, server: str, workers: int = 2) -> Iterator[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """A real gunicorn serving verihook with `services`' settings; yields (URL, master pid)."""
    port = free_port()
    env = settings_env(services.settings) | {
        "VERIHOOK_WEB_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *SERVERS[server], "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200 and (
                    len(worker_pids(process.pid)) >= workers
                ):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


def signed(index: int, tag: str) -> tuple[bytes, dict[str, str]]:
    body = signing.contiguity_event(
        "processing", f"vs_{tag}{index}", user_ref=f"{tag}{index}", event_id=f"evt_{tag}_{index}"
    )
    headers = {
        "Content-Type": "application/json",
        "Contiguity-Signature": signing.contiguity_header(body),
    }
    return body, headers


def stored_ids(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        rows = db.execute(select(InboundEvent.dedupe_key, InboundEvent.id)).all()
    return {key: event_id for key, event_id in rows}


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_copies_of_one_delivery_across_processes_make_one_row_with_one_id(  # type: ignore[no-untyped-def]
    services, engine, tmp_path, server
):
    body, headers = signed(1, f"dup{server}")
    copies = 40
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(copies)
    with gunicorn(services, tmp_path, server) as (url, _):
        limits = httpx.Limits(max_connections=copies)
        with httpx.Client(base_url=url, timeout=30, limits=limits) as client:

            def send() -> None:
                barrier.wait(timeout=30)
                answers.append(client.post("/webhooks/contiguity", content=body, headers=headers))

            threads = [threading.Thread(target=send) for _ in range(copies)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
    assert len(answers) == copies
    assert {a.status_code for a in answers} == {200}, {a.text for a in answers}
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["accepted"] + ["duplicate"] * (copies - 1)
    assert len({a.json()["event_id"] for a in answers}) == 1
    assert list(stored_ids(engine).values()) == [answers[0].json()["event_id"]]


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_every_delivery_answered_2xx_survives_a_killed_worker(  # type: ignore[no-untyped-def]
    services, engine, tmp_path, server
):
    """SIGKILL a worker while 16 clients keep sending: whatever was answered 2xx is stored, with
    its outbox row; what was not answered may be sent again and is then stored once."""
    answered: dict[str, int] = {}
    failed: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    tag = f"kill{server}"

    with gunicorn(services, tmp_path, server, workers=2) as (url, master):

        def sender(first: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                index = first
                while not stop.is_set() and index < first + 400:
                    body, headers = signed(index, tag)
                    try:
                        answer = client.post("/webhooks/contiguity", content=body, headers=headers)
                    except httpx.HTTPError:
                        with lock:
                            failed.append(index)
                    else:
                        if answer.status_code == 200:
                            with lock:
                                answered[f"evt:evt_{tag}_{index}"] = answer.json()["event_id"]
                    index += 1

        threads = [threading.Thread(target=sender, args=(n * 1000,)) for n in range(16)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(answered) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        victim = worker_pids(master)[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = len(answered)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert killed_at >= 150 and len(answered) > killed_at, (killed_at, len(answered))
    stored = stored_ids(engine)
    lost = {key: event_id for key, event_id in answered.items() if stored.get(key) != event_id}
    assert not lost, f"{len(lost)} answered 2xx are not stored as answered: {list(lost)[:5]}"
    with Session(engine) as db:
        outbox = set(db.execute(select(OutboxEntry.event_id)).scalars())
        applied = db.execute(
            select(func.count()).select_from(InboundEvent).where(InboundEvent.state != "received")
        ).scalar_one()
    # every stored event waits for a worker (none ran here): each has its outbox row
    assert applied == 0 and set(answered.values()) <= outbox
