"""The receiver under gunicorn (`verihook web`, which `verihook up` runs): gunicorn's own log lines
are verihook's JSON like every other line (issue 20 item 7), and a worker that stops writes the
refusals it counted and had not written yet (issue 20 item 6)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlmodel import Session

from receiver.store.db import make_engine
from receiver.store.migrate import upgrade
from receiver.store.refusals import RefusalCount
from tests.conftest import TEST_KEYS
from tests.support import signing
from tests.support.processes import ROOT, verihook
from tests.support.redis_server import RedisServer, free_port


def test_gunicorn_lines_are_json_and_a_stopping_worker_writes_its_refusals(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'verihook.db'}")
    upgrade(engine)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIHOOK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "PYTHONPATH": str(ROOT),
        "VERIHOOK_VAR_DIR": str(tmp_path),
        "VERIHOOK_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "VERIHOOK_ENCRYPTION_KEYS": TEST_KEYS,
        "VERIHOOK_REDIS_URL": redis_server.url,
        "VERIHOOK_WEB_WORKERS": "1",
        "VERIHOOK_LOG_LEVEL": "INFO",
        "VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET": signing.CONTIGUITY_SECRET,
    }
    url = f"http://127.0.0.1:{free_port()}"
    process = verihook("web", "--bind", url.removeprefix("http://"), env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "web did not start"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = signing.contiguity_event("verified", "vs_gunicorn")
        header = signing.contiguity_header(body, secret="whsec_not_the_one")
        refused = httpx.post(
            f"{url}/webhooks/contiguity",
            content=body,
            headers={"Content-Type": "application/json", "Contiguity-Signature": header},
        )
        assert refused.status_code == 401
        process.send_signal(signal.SIGTERM)  # before the worker's once-a-second write
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [line for line in err.decode().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line, gunicorn's included
    said = [r["msg"] for r in records if r["logger"] == "gunicorn.error"]
    for start in ("Starting gunicorn", "Listening at", "Booting worker", "Worker exiting"):
        assert any(m.startswith(start) for m in said), (start, said)
    routine = [r for r in records if r["logger"].startswith("alembic") and r["level"] == "INFO"]
    assert routine == []
    with Session(engine) as db:
        rows = [(r.provider, r.reason, r.count) for r in db.execute(select(RefusalCount)).scalars()]
    assert rows == [("contiguity", "signature_mismatch", 1)]
    engine.dispose()
