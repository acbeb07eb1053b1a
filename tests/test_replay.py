"""Replays: failed events after a key fix, quarantined events after a parser fix, resumability.

Failing events are produced for real (a keyring without the key the events were sealed with, as
after a broken deploy), the dry run's effect is compared with what the real replay then does to
the database, and interrupted replays (a budget, and kill -9 of the foreground CLI) resume from
their cursor without applying anything twice.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner
from rq import Queue
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from app import create_app
from receiver.canonical import DecidedBy, Status
from receiver.providers import contiguity
from receiver.store.crypto import Keyring, new_key_spec
from receiver.store.models import EventState, InboundEvent, UserRecord, VerificationSession
from receiver.store.replay_models import Replay
from reconciler import jobs
from reconciler.api.events import bp as events_bp
from reconciler.api.tokens import create_token
from reconciler.audit.chain import verify_chain
from reconciler.cli.events import events
from reconciler.cli.replay import replay
from reconciler.drain import drain_ready_events
from reconciler.event_queries import EventFilter
from reconciler.replay.execution import run_replay
from reconciler.replay.queueing import JOB, resume_stale_replays
from reconciler.replay.runs import create_replay
from reconciler.worker_loop import PromptWorker
from tests.support import signing
from tests.support.flow import (
    API_TOKENS,
    AUDITOR,
    OPERATOR,
    audit_rows,
    count,
    send_contiguity,
    send_idenfy,
)
from tests.support.processes import ROOT, settings_env


def with_events_api(services):  # type: ignore[no-untyped-def]
    """A test client whose app serves the events/replays blueprint."""
    app = create_app(services=services)
    if "events_api" not in app.blueprints:
        app.register_blueprint(events_bp)
    return app.test_client()


@pytest.fixture
def api(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    return services, with_events_api(services)


def broken_deploy(make_services):  # type: ignore[no-untyped-def]
    """Services whose keyring lacks the key the events were sealed with; no retries left."""
    broken = make_services(apply_max_attempts=1)
    broken.keyring = Keyring.parse(new_key_spec("other"))
    return broken


def statuses(engine) -> dict[tuple[str, ...], dict[str, str]]:  # type: ignore[no-untyped-def]
    """Every session's and user's (status, decided_by)."""
    with Session(engine) as db:
        found: dict[tuple[str, ...], dict[str, str]] = {}
        for row in db.execute(select(VerificationSession)).scalars():
            found[("session", row.provider, row.session_id)] = {
                "status": row.status,
                "decided_by": row.decided_by,
            }
        for user in db.execute(select(UserRecord)).scalars():
            found[("user", user.user_ref)] = {"status": user.status, "decided_by": user.decided_by}
    return found


def changes_between(before: dict, after: dict) -> dict:  # type: ignore[type-arg]
    """key → (from, to) for every session/user whose status differs."""
    return {
        key: (before.get(key), after.get(key))
        for key in set(before) | set(after)
        if before.get(key) != after.get(key)
    }


def as_changes(effect: dict[str, Any]) -> dict:  # type: ignore[type-arg]
    """An API effect/summary in the shape of changes_between."""
    found = {
        ("session", s["provider"], s["session_id"]): (s["from"], s["to"])
        for s in effect["sessions"]
    }
    found.update({("user", u["user_ref"]): (u["from"], u["to"]) for u in effect["users"]})
    return found


def pair(status: str, decided_by: str = "auto") -> dict[str, str]:
    return {"status": status, "decided_by": decided_by}


def event_states(engine) -> dict[int, str]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return dict(db.execute(select(InboundEvent.id, InboundEvent.state)).all())


def test_bulk_replay_after_a_key_fix_does_exactly_what_its_dry_run_showed(
    api, make_services, engine
):  # type: ignore[no-untyped-def]
    services, client = api
    _, token = create_token(engine, "operator", "alice")
    alice = {"Authorization": f"Bearer {token}"}
    ce = signing.contiguity_event
    send_contiguity(client, ce("processing", "vs_a", user_ref="ua", timestamp=100))
    send_contiguity(client, ce("verified", "vs_b", user_ref="ub", timestamp=400))
    assert drain_ready_events(services).applied == 2
    # a broken deploy: every event that arrives now fails, out of retries
    for body in (
        ce("verified", "vs_a", user_ref="ua", timestamp=200),
        ce("processing", "vs_b", user_ref="ub", timestamp=300),  # older than verified: no change
        ce("failed", "vs_c", user_ref="uc", timestamp=100),
        ce("started", "vs_e", user_ref="ue", timestamp=100),
        ce("manually_approved", "vs_e", user_ref="ue", timestamp=200),
    ):
        assert send_contiguity(client, body).status_code == 200
    send_idenfy(client, signing.idenfy_result("APPROVED", "scan-d", client_id="ud"))  # not matched
    sealed_elsewhere = make_services()
    sealed_elsewhere.keyring = Keyring.parse(new_key_spec("gone"))  # a key nobody has any more
    send_contiguity(
        with_events_api(sealed_elsewhere), ce("verified", "vs_g", user_ref="ug", timestamp=100)
    )
    assert drain_ready_events(broken_deploy(make_services)).failed == 7
    assert count(engine, InboundEvent, InboundEvent.state == EventState.FAILED) == 7

    # the fix: `services` has the right keyring again. Dry run first (the default).
    before, audit_before, states_before = statuses(engine), audit_rows(engine), event_states(engine)
    flt = {"state": "failed", "provider": "contiguity"}
    answer = client.post("/api/v1/replays", json={"filter": flt}, headers=alice)
    assert answer.status_code == 200, answer.get_json()
    dry = answer.get_json()
    assert dry["dry_run"] is True and dry["total"] == 6
    counts = {k: dry[k] for k in ("applied", "superseded", "quarantined", "failed", "deferred")}
    assert counts == {"applied": 3, "superseded": 2, "quarantined": 0, "failed": 1, "deferred": 0}
    expected = {
        ("session", "contiguity", "vs_a"): (pair("processing"), pair("verified")),
        ("session", "contiguity", "vs_c"): (None, pair("rejected")),
        ("session", "contiguity", "vs_e"): (None, pair("verified", "manual")),
        ("user", "ua"): (pair("processing"), pair("verified")),
        ("user", "uc"): (None, pair("rejected")),
        ("user", "ue"): (None, pair("verified", "manual")),
    }
    assert as_changes(dry) == expected
    assert (dry["sessions_changed"], dry["users_changed"]) == (3, 3)
    assert [f["error"].split(":")[0] for f in dry["failures"]] == ["DecryptionError"]
    # … and it changed nothing
    assert statuses(engine) == before and event_states(engine) == states_before
    assert len(audit_rows(engine)) == len(audit_before)

    answer = client.post("/api/v1/replays", json={"filter": flt, "dry_run": False}, headers=alice)
    assert answer.status_code == 202, answer.get_json()
    url = answer.headers["Location"]
    queued = client.get(url, headers=alice).get_json()
    assert (queued["state"], queued["total"], queued["done"], queued["progress"]) == (
        "pending",
        6,
        0,
        0.0,
    )
    PromptWorker([services.settings.queue_name], connection=services.redis).work(burst=True)
    final = client.get(url, headers=AUDITOR).get_json()
    assert (final["state"], final["done"], final["progress"]) == ("done", 6, 1.0)
    summary = final["summary"]
    assert {k: summary[k] for k in counts} == counts
    assert as_changes(summary) == expected
    assert changes_between(before, statuses(engine)) == expected  # the dry run told the truth
    states = event_states(engine)
    assert sorted(states.values()).count("failed") == 2  # iDenfy (not matched) and vs_g (no key)

    new_entries = audit_rows(engine)[len(audit_before) :]
    operator = [e for e in new_entries if e.source == "operator"]
    assert [(e.actor, e.subject) for e in operator] == [("operator:alice", "replay")] * 2
    assert operator[1].reason == (
        f"bulk replay {final['id']} finished after 6 of 6 event(s) (applied 3, superseded 2, "
        "quarantined 0, failed 1, deferred 0)"
    )
    replayed = {
        (e.subject, e.session_id if e.subject == "session" else e.user_ref)
        for e in new_entries
        if e.source == "replay"
    }
    assert replayed == {
        ("session", "vs_a"),
        ("session", "vs_c"),
        ("session", "vs_e"),
        ("user", "ua"),
        ("user", "uc"),
        ("user", "ue"),
    }
    with Session(engine) as db:
        assert verify_chain(db).ok


def test_quarantined_event_is_applied_after_a_parser_fix(api, engine, monkeypatch):  # type: ignore[no-untyped-def]
    services, client = api
    body = signing.contiguity_event("redacted", "vs_q", user_ref="uq", timestamp=500)
    answer = send_contiguity(client, body)
    assert answer.status_code == 202 and answer.get_json()["status"] == "quarantined"
    event_id = answer.get_json()["event_id"]
    url = f"/api/v1/events/{event_id}/replay"

    still = client.post(url, headers=OPERATOR).get_json()  # today's code still does not know it
    assert (still["state_before"], still["event"]["state"], still["quarantined"]) == (
        "quarantined",
        "quarantined",
        1,
    )
    assert "undocumented contiguity event type" in still["event"]["parse_error"]

    # the fix (simulated: the mapping a new release would add)
    monkeypatch.setitem(contiguity.STATUS_MAP, "redacted", (Status.CANCELED, DecidedBy.AUTO))
    preview = client.post(url, json={"dry_run": True}, headers=OPERATOR).get_json()
    assert preview["dry_run"] is True and preview["event"]["state"] == "applied"
    assert count(engine, InboundEvent, InboundEvent.state == EventState.QUARANTINED) == 1
    done = client.post(url, headers=OPERATOR).get_json()
    assert (done["event"]["state"], done["applied"]) == ("applied", 1)
    assert (
        as_changes(done)
        == as_changes(preview)
        == {
            ("session", "contiguity", "vs_q"): (None, pair("canceled")),
            ("user", "uq"): (None, pair("canceled")),
        }
    )
    with Session(engine) as db:
        event = db.get(InboundEvent, event_id)
        assert (event.session_id, event.user_ref) == ("vs_q", "uq")
    entries = audit_rows(engine)
    assert [(e.subject, e.source) for e in entries if e.source != "operator"] == [
        ("session", "replay"),
        ("user", "replay"),
    ]
    ops = [e for e in entries if e.source == "operator"]
    assert [(e.actor, e.subject, e.event_id) for e in ops] == [
        ("operator:env-operator-1", "event", event_id)
    ] * 2
    assert (ops[-1].previous_status, ops[-1].new_status) == ("quarantined", "applied")
    again = client.post(url, headers=OPERATOR).get_json()  # idempotent: nothing changes
    assert (again["event"]["state"], again["sessions"], again["users"]) == ("applied", [], [])


def failed_events(client, make_services, n: int) -> None:  # type: ignore[no-untyped-def]
    for index in range(n):
        send_contiguity(
            client,
            signing.contiguity_event(
                "verified", f"vs_r{index:03d}", user_ref=f"ur{index:03d}", timestamp=100
            ),
        )
    assert drain_ready_events(broken_deploy(make_services)).failed == n


def cli_env(services) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return settings_env(services.settings)


def replay_row(engine, replay_id: int) -> Replay:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        return db.get(Replay, replay_id)


def assert_exactly_once(engine, replay_id: int, expected_done: int) -> None:  # type: ignore[no-untyped-def]
    """Applied events are exactly those up to the cursor, each with one replay entry."""
    row = replay_row(engine, replay_id)
    states = event_states(engine)
    applied = {i for i, s in states.items() if s == "applied"}
    assert applied == {i for i in states if i <= (row.last_event_id or 0)}
    assert row.done == len(applied) == expected_done
    per_session: dict[str, int] = {}
    for entry in audit_rows(engine):
        if entry.source == "replay" and entry.subject == "session":
            per_session[entry.session_id] = per_session.get(entry.session_id, 0) + 1
    assert len(per_session) == expected_done and set(per_session.values()) <= {1}


def test_replay_with_a_budget_resumes_from_its_cursor(api, make_services, engine):  # type: ignore[no-untyped-def]
    services, client = api
    failed_events(client, make_services, 30)
    runner = CliRunner()
    env = cli_env(services)
    first = runner.invoke(
        replay,
        ["--state", "failed", "--yes", "--max-events", "10", "--batch-size", "4"],
        env=env,
    )
    assert first.exit_code == 0, first.output
    assert "dry run: 30 event(s) match state=failed" in first.output
    assert "sessions changed: 30" in first.output
    assert "paused after 10 of 30" in first.output
    replay_id = int(first.output.split("verihook replay --resume ")[1].split()[0])
    assert_exactly_once(engine, replay_id, 10)
    assert replay_row(engine, replay_id).state == "running"
    paused = [e.reason for e in audit_rows(engine) if e.source == "operator"]
    assert len(paused) == 1 and paused[0].startswith("started")  # a pause is not an end

    rest = runner.invoke(replay, ["--resume", str(replay_id), "--batch-size", "7"], env=env)
    assert rest.exit_code == 0, rest.output
    assert f"replay {replay_id} done: 30 event(s)" in rest.output
    assert "sessions changed: 30" in rest.output and "users changed: 30" in rest.output
    assert_exactly_once(engine, replay_id, 30)
    entries = len(audit_rows(engine))
    again = runner.invoke(replay, ["--resume", str(replay_id)], env=env)
    assert "done already" in again.output and len(audit_rows(engine)) == entries
    operator = [e for e in audit_rows(engine) if e.source == "operator"]
    assert len(operator) == 2 and operator[0].actor.startswith("operator:cli-")
    assert operator[0].reason.startswith(f"started bulk replay {replay_id} of 30 event(s)")
    assert operator[1].reason.startswith(f"bulk replay {replay_id} finished after 30 of 30")


def test_replay_job_hands_over_to_a_fresh_job_until_done(api, make_services, engine):  # type: ignore[no-untyped-def]
    services, client = api
    failed_events(client, make_services, 12)
    row = create_replay(services, EventFilter(states=("failed",)), actor_name="bob")
    services.redis.flushdb()
    queue = Queue(services.settings.queue_name, connection=services.redis)
    queue.enqueue_call(JOB, args=(row.id, 0.0))  # a budget of one batch per job
    services.settings.apply_batch_size = 5
    PromptWorker([queue.name], connection=services.redis).work(burst=True)
    assert replay_row(engine, row.id).state == "done"
    assert_exactly_once(engine, row.id, 12)


def test_a_job_queued_under_the_old_module_path_is_resumed_by_the_sweep(api, make_services, engine):  # type: ignore[no-untyped-def]
    """An upgrade: a job queued as `reconciler.replay.run_replay_job` (before replay became a
    package) fails to import and leaves its replay pending; the sweep queues it again."""
    services, client = api
    failed_events(client, make_services, 3)
    row = create_replay(services, EventFilter(states=("failed",)), actor_name="dave")
    services.redis.flushdb()
    queue = Queue(services.settings.queue_name, connection=services.redis)
    old = queue.enqueue_call("reconciler.replay.run_replay_job", args=(row.id,))
    PromptWorker([queue.name], connection=services.redis).work(burst=True)
    assert old.get_status(refresh=True) == "failed"
    assert replay_row(engine, row.id).state == "pending"
    assert resume_stale_replays(services, stale_after_seconds=0) == [row.id]
    PromptWorker([queue.name], connection=services.redis).work(burst=True)
    assert replay_row(engine, row.id).state == "done"
    assert_exactly_once(engine, row.id, 3)


def test_kill_9_of_a_foreground_replay_loses_nothing_and_repeats_nothing(
    api, make_services, engine
):  # type: ignore[no-untyped-def]
    services, client = api
    failed_events(client, make_services, 60)
    row = create_replay(services, EventFilter(states=("failed",)), actor_name="carol")
    code = "from reconciler.cli.replay import replay; replay(prog_name='verihook replay')"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--resume", str(row.id), "--batch-size", "1"],
        env=cli_env(services),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # A plain engine reads without taking SQLite's write lock (verihook's engines begin every
    # transaction IMMEDIATE), so watching never slows the child down or waits behind it.
    watcher = create_engine(engine.url, poolclass=NullPool)
    deadline = time.monotonic() + 30
    with watcher.connect() as conn:
        while time.monotonic() < deadline:
            done = conn.execute(text(f"SELECT done FROM replays WHERE id = {row.id}")).scalar()
            conn.rollback()
            if done >= 5:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            time.sleep(0.005)
    watcher.dispose()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stderr.close()  # type: ignore[union-attr]
    stopped = replay_row(engine, row.id)
    assert 5 <= stopped.done < 60, "the replay was not interrupted mid-way"
    assert_exactly_once(engine, row.id, stopped.done)
    run_replay(services, row.id)
    assert replay_row(engine, row.id).state == "done"
    assert_exactly_once(engine, row.id, 60)


def test_cli_single_event_replay_and_show(api, make_services, engine):  # type: ignore[no-untyped-def]
    services, client = api
    failed_events(client, make_services, 1)
    runner, env = CliRunner(), cli_env(services)
    dry = runner.invoke(events, ["replay", "1", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "event 1 was failed, would become applied" in dry.output
    assert "contiguity/vs_r000 (ur000): (none) -> verified (auto)" in dry.output
    assert event_states(engine) == {1: "failed"}
    real = runner.invoke(events, ["replay", "1"], env=env)
    assert "event 1 was failed, is now applied" in real.output
    assert event_states(engine) == {1: "applied"}
    missing = runner.invoke(events, ["replay", "999"], env=env)
    assert missing.exit_code == 1 and "no event 999" in missing.output


def test_bulk_replay_requests_are_validated(api):  # type: ignore[no-untyped-def]
    _, client = api
    cases = [
        ({"filter": {}}, "at least one filter"),
        ({"filter": {"state": "broken"}}, "state must be one of"),
        ({"filter": {"provider": "acme"}}, "provider must be one of"),
        ({"filter": {"since": "last tuesday"}}, "since must be an ISO 8601 time"),
        ({"filter": {"colour": "red"}}, "unknown filter colour"),
        ({"filter": "state=failed"}, "filter must be a JSON object"),
        ({"filter": {"state": "failed"}, "dry_run": "no"}, "dry_run must be true or false"),
        ({"filter": {"state": "failed"}, "go": True}, "unknown field go"),
        (["state"], "expected a JSON object"),
    ]
    for body, message in cases:
        answer = client.post("/api/v1/replays", json=body, headers=OPERATOR)
        assert answer.status_code == 400, body
        assert message in answer.get_json()["error"], (body, answer.get_json())
    assert client.get("/api/v1/replays/999", headers=OPERATOR).status_code == 404
    assert client.post("/api/v1/events/999/replay", headers=OPERATOR).status_code == 404
    nothing = client.post("/api/v1/replays", json={"filter": {"state": "failed"}}, headers=OPERATOR)
    assert nothing.status_code == 200 and nothing.get_json()["total"] == 0
    listing = client.get("/api/v1/replays", headers=OPERATOR).get_json()
    assert listing == {"replays": []}
