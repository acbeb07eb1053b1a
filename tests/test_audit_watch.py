"""The scheduler's periodic audit-chain verification (reconciler/audit_watch.py) and its gauges.

Incremental verifications cover the entries appended since the last one that passed, anchored on
that entry's hash; a full one (daily, and after any failure) walks the whole chain. A real
`verihook scheduler` runs it as the leader and exports the outcome on its `/metrics`.
"""

from __future__ import annotations

import signal
import time

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import text

from reconciler.audit_watch import AuditWatch
from tests.support.processes import settings_env, verihook
from tests.support.redis_server import free_port
from tests.test_audit import insert_entries

SUCCESS = "verihook_audit_verify_last_success_timestamp_seconds"
FAILURE = "verihook_audit_verify_last_failure_timestamp_seconds"
ENTRIES = "verihook_audit_verified_entries"


def tamper(engine, seq: int) -> None:  # type: ignore[no-untyped-def]
    """Edit one stored entry behind verihook's back."""
    with engine.begin() as conn:
        changed = conn.execute(
            text("UPDATE audit_entries SET new_status = 'rejected' WHERE seq = :seq"), {"seq": seq}
        )
        assert changed.rowcount == 1


def gauge(name: str) -> float:
    """A gauge's value in this process."""
    return REGISTRY.get_sample_value(name) or 0.0


def test_incremental_runs_cover_new_entries_and_the_full_run_finds_old_edits(engine):  # type: ignore[no-untyped-def]
    watch = AuditWatch(engine, full_every_seconds=3600)
    insert_entries(engine, 5)
    before = time.time()
    first = watch.run()  # nothing verified yet: in full
    assert (first.ok, first.entries) == (True, 5) and watch.last_full is not None
    assert before <= gauge(SUCCESS) <= time.time() and gauge(ENTRIES) == 5

    insert_entries(engine, 3)
    second = watch.run()
    assert (second.ok, second.entries) == (True, 8) and watch.verified == (8, second.head)

    tamper(engine, 2)  # an old entry: incremental runs do not walk it again
    insert_entries(engine, 1)
    assert watch.run().ok and gauge(ENTRIES) == 9

    watch.last_full = time.monotonic() - 3601  # the daily full verification is due
    failures_before = gauge(FAILURE)
    full = watch.run()
    assert (full.ok, full.first_bad) == (False, 2)
    assert gauge(FAILURE) > failures_before and gauge(FAILURE) >= gauge(SUCCESS)
    assert watch.verified is None and watch.is_full_due(time.monotonic())
    again = watch.run()  # stays broken, walked in full again
    assert (again.ok, again.first_bad) == (False, 2)


def test_an_incremental_run_catches_a_changed_anchor_and_a_bad_new_entry(engine):  # type: ignore[no-untyped-def]
    watch = AuditWatch(engine, full_every_seconds=3600)
    insert_entries(engine, 4)
    assert watch.run().ok
    tamper(engine, 4)  # the entry the next run is anchored on
    anchored = watch.run()
    assert (anchored.ok, anchored.first_bad) == (False, 4)
    assert anchored.problem == "content does not match its hash"

    fresh = AuditWatch(engine, full_every_seconds=3600, verified=(3, anchored_hash(engine, 3)))
    fresh.last_full = time.monotonic()
    insert_entries(engine, 2)
    report = fresh.run()  # incremental from seq 3: walks 4 (edited), 5, 6
    assert (report.ok, report.first_bad) == (False, 4)


def anchored_hash(engine, seq: int) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT entry_hash FROM audit_entries WHERE seq = :seq"), {"seq": seq}
        ).scalar_one()


def test_the_scheduler_leader_verifies_and_exports_it(services):  # type: ignore[no-untyped-def]
    insert_entries(services.engine, 3)
    port = free_port()
    env = settings_env(services.settings) | {
        "VERIHOOK_HEALTH_BIND": f"127.0.0.1:{port}",
        "VERIHOOK_AUDIT_VERIFY_SECONDS": "1",
        "VERIHOOK_LEADER_LOCK_SECONDS": "1",
    }
    proc = verihook("scheduler", env=env)
    try:
        deadline, values = time.monotonic() + 30, {}
        while time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                body = ""
            values = {
                line.split(" ")[0]: float(line.split(" ")[1])
                for line in body.splitlines()
                if line.startswith("verihook_audit_")
            }
            if values.get(SUCCESS, 0) > 0:
                break
            time.sleep(0.3)
        assert values.get(SUCCESS, 0) > time.time() - 60, values
        assert values[ENTRIES] == 3 and values[FAILURE] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
