"""Multi-process chaos: verihook's real processes on a private PostgreSQL and Redis while
processes are killed and the stores restarted under a bounded load of deliveries.

Two receivers (each its own gunicorn), three workers, two schedulers and the five simulators
(tests/support/chaos_stack.py). The load: sessions created through the API across all five
providers, their outcomes scripted at the simulators with the demo's chaos (30 % of webhooks and
redirects dropped, 20 % duplicated, shuffled), plus the driver's own signed deliveries
(Contiguity, iDenfy, idvapi) until the size is reached. Every delivery is retried like a provider
retries (5xx and connection errors, on the other receiver). During the load, in sequence:
kill -9 a worker (a replacement starts), kill -9 a receiver's gunicorn master and workers (it
restarts), kill -9 the leader scheduler (a replacement starts), restart Redis empty (the outbox
sweeper must re-wake the workers for everything queued there) and crash-restart PostgreSQL.

Afterwards: every delivery that got a 2xx is stored exactly once and applied exactly once, every
session matches the simulator's (or the driver's) truth, the audit chain verifies. The figures
are printed at the end (`pytest -s`). A verihook process that exits on its own is restarted by
the stack's watchdog, as a supervisor would, and listed in the figures;
`test_a_worker_outlives_a_redis_restart` pins down the one such exit seen (workers quit when Redis
goes away while they finish a job).

Size: VERIHOOK_CHAOS_DELIVERIES (default 600, the CI run; `make chaos` runs 3000).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq import Worker
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from app import create_app
from receiver.store.audit_models import AuditEntry
from receiver.store.models import (
    InboundEvent,
    ObservationRecord,
    OutboxEntry,
    VerificationSession,
)
from reconciler.audit.chain import verify_chain
from reconciler.demo.report import build_report
from reconciler.demo.verdict import (
    DEMO_CHAOS,
    DEMO_OUTCOMES,
    PlannedSession,
    evaluate,
    plan_sessions,
)
from tests.support import signing
from tests.support.chaos_stack import (
    STACK_SETTINGS,
    ChaosStack,
    DirectLoad,
    DirectSession,
    Schedule,
    Sent,
)
from tests.support.flow import count, send_contiguity
from tests.support.pg_cluster import PgCluster
from tests.support.processes import settings_env, verihook
from tests.support.redis_server import RedisServer

SIZE = int(os.environ.get("VERIHOOK_CHAOS_DELIVERIES", "600"))
SEED = int(os.environ.get("VERIHOOK_CHAOS_SEED", "5"))
SIM_DELIVERIES_PER_SESSION = 1.4
"""What a scripted session costs in simulator deliveries under the demo's chaos (measured)."""
SESSION_SHARE = 0.4
"""Share of the size delivered by the simulators for API-created sessions; the rest is direct."""
WINDOW_SECONDS = max(20.0, SIZE / 40)
"""The load is spread over this long; the kills and restarts happen inside it."""
LEASE_SECONDS = float(STACK_SETTINGS["POLL_LEASE_SECONDS"])
"""The stack's VERIHOOK_POLL_LEASE_SECONDS (10 s; the default is 60 s)."""
SETTLE_TIMEOUT_SECONDS = LEASE_SECONDS + 30.0 + WINDOW_SECONDS / 2
"""A scheduler tick that fails after claiming due sessions (PostgreSQL going down under it, or
the leader killed mid-tick) leaves them leased for LEASE_SECONDS before they are due again:
settling may take that long."""
LOAD_THREADS = 12
QUEUE = "verihook-outlive"

pytestmark = pytest.mark.timeout(int(240 + 3 * WINDOW_SECONDS))


def chaos_plan(stack: ChaosStack) -> list[tuple[float, Callable[[], None]]]:
    """(seconds into the load, action), one after the other with at least 1 s between."""
    steps = [
        (0.12, stack.kill_worker),
        (0.27, lambda: stack.kill_receiver(0)),
        (0.42, stack.kill_leader),
        (0.57, stack.restart_redis),
        (0.75, stack.restart_postgres),
    ]
    return [(fraction * WINDOW_SECONDS, action) for fraction, action in steps]


def creator(stack: ChaosStack, item: PlannedSession) -> Callable[[], None]:
    """Create one session through the API (retried like any client would), then script it."""

    def create() -> None:
        body = json.dumps({"provider": item.provider, "user_ref": item.user_ref}).encode()
        headers = {
            "Authorization": f"Bearer {stack.api_token}",
            "Content-Type": "application/json",
        }
        _, answer = stack.deliverer.send("POST", "/api/v1/sessions", headers, body, origin="api")
        if answer is None or answer.status_code != 201:
            detail = answer.text if answer is not None else "no answer"
            raise AssertionError(f"creating a {item.provider} session: {detail}")
        item.session_id = answer.json()["session_id"]
        stack.sims[item.provider].script(
            item.session_id,
            item.outcome,
            manual=item.manual,
            after=item.after,
            provider_status=item.provider_status,
        )

    return create


# ----- reading the outcome -----------------------------------------------------------------


def event_states(engine: Engine) -> Counter[str]:
    """Stored events by state."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(InboundEvent.state, func.count()).group_by(InboundEvent.state)
        ).all()
    return Counter({state: count for state, count in rows})


def outbox_rows(engine: Engine) -> int:
    """Events still waiting for a worker."""
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(OutboxEntry)).scalar_one())


def direct_mismatches(engine: Engine, sessions: list[DirectSession]) -> list[str]:
    """Driver sessions whose verihook status is not the one their deliveries must yield."""
    with engine.connect() as connection:
        rows = {
            (row.provider, row.session_id): (row.status, row.decided_by)
            for row in connection.execute(
                select(
                    VerificationSession.provider,
                    VerificationSession.session_id,
                    VerificationSession.status,
                    VerificationSession.decided_by,
                )
            )
        }
    return [
        f"{s.provider}/{s.session_id}: expected {s.expected}, verihook has "
        f"{rows.get((s.provider, s.session_id), 'nothing')}"
        for s in sessions
        if rows.get((s.provider, s.session_id)) != s.expected
    ]


def settled(
    stack: ChaosStack, planned: list[PlannedSession], direct: list[DirectSession]
) -> tuple[bool, str]:
    """Is everything applied and does every session match its truth? (and why not)"""
    states = event_states(stack.engine)
    waiting = outbox_rows(stack.engine)
    if waiting or states["received"] or states["failed"]:
        return False, f"outbox {waiting}, events {dict(states)}"
    wrong = [r for r in evaluate(stack.engine, stack.sims, planned) if not r.matches]
    if wrong:
        return False, f"{len(wrong)} session(s) differ from the simulators, e.g. {wrong[0]}"
    off = direct_mismatches(stack.engine, direct)
    if off:
        return False, f"{len(off)} driver session(s) differ, e.g. {off[0]}"
    return True, "settled"


def stored_exactly_once(engine: Engine, sent: list[Sent]) -> list[str]:
    """Every 2xx delivery's event exists once, under the dedupe key its identity names."""
    problems: list[str] = []
    with engine.connect() as connection:
        events = {
            row.id: row
            for row in connection.execute(
                select(
                    InboundEvent.id,
                    InboundEvent.provider,
                    InboundEvent.dedupe_key,
                    InboundEvent.kind,
                    InboundEvent.session_id,
                )
            )
        }
        doubled = connection.execute(
            select(InboundEvent.provider, InboundEvent.dedupe_key, func.count())
            .group_by(InboundEvent.provider, InboundEvent.dedupe_key)
            .having(func.count() > 1)
        ).all()
    problems += [f"stored twice: {row}" for row in doubled]
    by_key = {(row.provider, row.dedupe_key): row for row in events.values()}
    ids_by_identity: dict[tuple[str, str], set[int]] = defaultdict(set)
    for record in sent:
        if not record.ok or record.kind == "api":
            continue
        key = (record.provider, record.identity)
        if record.kind == "webhook":
            if record.event_id is None:
                problems.append(f"a 2xx {record.provider} webhook answered no event id")
                continue
            ids_by_identity[key].add(record.event_id)
            row = events.get(record.event_id)
            if row is None:
                problems.append(f"event {record.event_id} answered 2xx but is not stored")
            elif (row.provider, row.dedupe_key) != key:
                problems.append(f"event {record.event_id} is {row.provider}/{row.dedupe_key}")
        elif key not in by_key:  # a redirect callback answers 302 without an event id
            problems.append(f"{record.provider} callback {record.identity} is not stored")
    problems += [
        f"one delivery, several events: {key} -> {sorted(ids)}"
        for key, ids in ids_by_identity.items()
        if len(ids) > 1
    ]
    owners = Counter(next(iter(ids)) for ids in ids_by_identity.values())
    problems += [
        f"event {event_id} answers {n} different deliveries"
        for event_id, n in owners.items()
        if n > 1
    ]
    return problems


def applied_exactly_once(engine: Engine) -> tuple[list[str], dict[str, int]]:
    """Every event applied (or superseded) once: nothing waits or failed, no observation or
    audit entry twice, each session's audit trail chains and ends at its status."""
    problems: list[str] = []
    with Session(engine) as db:
        states = Counter(
            dict(
                db.execute(  # type: ignore[arg-type]
                    select(InboundEvent.state, func.count()).group_by(InboundEvent.state)
                ).all()
            )
        )
        for state in ("received", "failed", "quarantined"):
            if states[state]:
                problems.append(f"{states[state]} event(s) {state}")
        waiting = db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()
        if waiting:
            problems.append(f"{waiting} outbox row(s) left")
        twice = db.execute(
            select(ObservationRecord.session_pk, ObservationRecord.observation_key, func.count())
            .group_by(ObservationRecord.session_pk, ObservationRecord.observation_key)
            .having(func.count() > 1)
        ).all()
        problems += [f"observation recorded twice: {row}" for row in twice]
        orphans = db.execute(
            select(func.count())
            .select_from(ObservationRecord)
            .join(InboundEvent, InboundEvent.id == ObservationRecord.event_id, isouter=True)
            .where(InboundEvent.state.not_in(["applied", "superseded"]))
        ).scalar_one()
        if orphans:
            problems.append(f"{orphans} observation(s) of events not marked applied/superseded")
        retried = db.execute(
            select(func.count()).select_from(InboundEvent).where(InboundEvent.attempts > 0)
        ).scalar_one()
        observations = db.execute(select(func.count()).select_from(ObservationRecord)).scalar_one()
        statuses = {
            (row.provider, row.session_id): row.status
            for row in db.execute(
                select(
                    VerificationSession.provider,
                    VerificationSession.session_id,
                    VerificationSession.status,
                )
            )
        }
        trails: dict[tuple[str, str], list[AuditEntry]] = defaultdict(list)
        for entry in db.execute(
            select(AuditEntry).where(AuditEntry.subject == "session").order_by(AuditEntry.seq)
        ).scalars():
            trails[(entry.provider or "", entry.session_id or "")].append(entry)
        chain = verify_chain(db)
    for key, entries in trails.items():
        ids = [entry.event_id for entry in entries if entry.event_id is not None]
        if len(ids) != len(set(ids)):
            problems.append(f"{key}: one event changed the session twice: {sorted(ids)}")
        for before, after in zip(entries, entries[1:], strict=False):
            if after.previous_status != before.new_status:
                problems.append(f"{key}: audit trail breaks at seq {after.seq}")
        if entries and entries[-1].new_status != statuses.get(key):
            problems.append(f"{key}: audit ends at {entries[-1].new_status}, not its status")
    if not chain.ok:
        problems.append(f"audit verify failed at seq {chain.first_bad}: {chain.problem}")
    figures = {
        "events": sum(states.values()),
        **{f"events_{state}": count for state, count in sorted(states.items())},
        "events_retried_after_a_failure": retried,
        "observations": observations,
        "audit_entries": chain.entries,
        "audit_ok": int(chain.ok),
    }
    return problems, figures


# ----- the test ----------------------------------------------------------------------------


@pytest.mark.slow
def test_real_processes_survive_kills_and_store_restarts(tmp_path: Any) -> None:
    reason = PgCluster.available()
    if reason is not None and os.environ.get("VERIHOOK_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"no private PostgreSQL cluster: {reason}")
    if reason is not None:
        pytest.skip(f"no private PostgreSQL cluster: {reason}")
    began = time.monotonic()
    sessions = max(25, round(SIZE * SESSION_SHARE / SIM_DELIVERIES_PER_SESSION))
    planned = plan_sessions(sessions, SEED, DEMO_OUTCOMES)
    stack = ChaosStack(tmp_path, chaos=DEMO_CHAOS, seed=SEED)
    schedule = Schedule(LOAD_THREADS)
    try:
        stack.start()
        started = time.monotonic() - began
        budget = max(0, SIZE - round(sessions * SIM_DELIVERIES_PER_SESSION))
        direct = DirectLoad(stack, budget, WINDOW_SECONDS, SEED)
        for index, item in enumerate(planned):
            schedule.add(index * 0.85 * WINDOW_SECONDS / len(planned), creator(stack, item))
        direct.schedule(schedule)

        stack.load_started = t0 = time.monotonic()
        schedule.start(t0)
        stack.start_chaos(chaos_plan(stack))
        schedule.join(timeout=WINDOW_SECONDS + 120)
        stack.chaos_done(timeout=120)
        load_seconds = time.monotonic() - t0

        settle_began = time.monotonic()
        why, waits = "not checked", []  # what settling waited for, and from when
        while time.monotonic() - settle_began < SETTLE_TIMEOUT_SECONDS:
            quiet = all(sim.wait_idle(0.01) for sim in stack.sims.values())
            if quiet and stack.front is not None and stack.front.idle():
                done, why = settled(stack, planned, direct.sessions)
                if done:
                    break
            else:
                why = "simulators still delivering"
            if not waits or waits[-1][1].split(",")[0] != why.split(",")[0]:
                waits.append((time.monotonic() - settle_began, why))
            time.sleep(0.25)
        settle_seconds = time.monotonic() - settle_began

        engine = stack.engine
        sent = stack.log.snapshot()
        results = evaluate(engine, stack.sims, planned)
        report = build_report(results, stack.sims)
        stored = stored_exactly_once(engine, sent)
        applied, event_figures = applied_exactly_once(engine)
        direct_wrong = direct_mismatches(engine, direct.sessions)
        figures = stack.log.figures()
        gave_up = [r for r in sent if r.kind != "api" and not r.ok]
        api_calls = [r for r in sent if r.kind == "api"]
        lines = [
            f"process chaos: size {SIZE}, seed {SEED}, load window {WINDOW_SECONDS:.0f} s",
            f"stack up in {started:.1f} s; load ran {load_seconds:.1f} s; "
            f"settled in {settle_seconds:.1f} s ({why}); total {time.monotonic() - began:.1f} s",
            "deliveries: "
            + ", ".join(f"{key} {value}" for key, value in figures.items())
            + f" (by simulators {sum(r.origin == 'simulator' for r in sent)}, "
            f"by the driver {sum(r.origin == 'driver' for r in sent)})",
            "simulator chaos: "
            + ", ".join(
                f"{name} dropped {stats['webhooks_dropped']} duplicated "
                f"{stats['webhooks_duplicated']}"
                for name, stats in ((n, sim.stats()) for n, sim in stack.sims.items())
            ),
            "deliveries by provider: "
            + ", ".join(
                f"{name} {count}"
                for name, count in sorted(
                    Counter(r.provider for r in sent if r.kind != "api").items()
                )
            ),
            f"API session creations: {len(api_calls)} "
            f"({sum(len(r.attempts) > 1 for r in api_calls)} retried; attempts answered "
            + ", ".join(
                f"{status} x{count}"
                for status, count in sorted(
                    Counter(str(a.status or a.error) for r in api_calls for a in r.attempts).items()
                )
            )
            + ")",
            "events: " + ", ".join(f"{key} {value}" for key, value in event_figures.items()),
            f"sessions matching the simulators: {sum(r.matches for r in results)}/{len(results)} "
            f"(webhook {sum(f.by_webhook for f in report.providers.values())}, healed by poll "
            f"{report.healed}, overdue {sum(f.overdue for f in report.providers.values())}); "
            f"driver sessions matching: {len(direct.sessions) - len(direct_wrong)}"
            f"/{len(direct.sessions)}",
            "settling waited for: "
            + ("nothing" if not waits else "; ".join(f"{t:.0f} s: {w}" for t, w in waits[-6:])),
            "kills and restarts:",
            *(
                f"  at {event.at:5.1f} s  {event.what}: {event.detail}; took {event.seconds} s"
                + (f", answering again after {event.back_after} s" if event.back_after else "")
                for event in stack.events
            ),
            "processes that exited on their own (restarted by the watchdog, as a supervisor "
            f"would; see test_a_worker_outlives_a_redis_restart): {len(stack.exits)}",
            *(
                f"  seen at {e.at:5.1f} s  {e.name} (exit {e.returncode}): {e.why}"
                for e in stack.exits
            ),
        ]
        print("\n" + "\n".join(lines))

        assert len(stack.events) == len(chaos_plan(stack)), stack.events
        assert not gave_up, f"{len(gave_up)} deliveries never got a 2xx, e.g. {gave_up[:3]}"
        assert not stored, stored[:10]
        assert not applied, applied[:10]
        assert all(r.matches for r in results), [r for r in results if not r.matches][:5]
        assert not direct_wrong, direct_wrong[:5]
        assert stack.redis_evidence > 0, "nothing was waiting on Redis when it was restarted"
        assert figures["answers_503"] > 0, "PostgreSQL's restart was never seen as a 503"
        assert figures["answers_500"] == 0, "a receiver answered 500 (expected 503 when down)"
        api_500 = sum(a.status == 500 for r in api_calls for a in r.attempts)
        assert api_500 == 0, f"POST /api/v1/sessions answered 500 {api_500} time(s), not 503"
        assert len(results) == len(planned) and direct.sessions
    finally:
        schedule.cancel()
        stack.stop()


# ----- a focused repro of what the chaos run shows ------------------------------------------


def test_a_worker_outlives_a_redis_restart(make_services: Any) -> None:
    """`verihook worker` must keep running when Redis goes away while it applies a batch.

    RQ's `Worker.work()` retries connection errors only while it waits for a job; an error while
    it finishes one (job heartbeat, result, its own heartbeat) makes it log "found an unhandled
    exception, quitting" and return. `verihook worker` used to exit then: after a Redis restart
    nothing applied events any more unless something restarted the worker (and `verihook up`
    stops everything when one of its children exits). reconciler/worker_loop.py starts a new
    run instead; afterwards the worker must apply new deliveries and still stop on SIGTERM.
    """
    redis = RedisServer().start()
    worker = None
    try:
        services = make_services(redis_url=redis.url, apply_batch_size=5, queue_name=QUEUE)
        client = create_app(services=services).test_client()
        for index in range(300):
            body = signing.contiguity_event("verified", f"vs_outlive_{index}", user_ref=f"o{index}")
            assert send_contiguity(client, body).status_code == 200
        worker = verihook("worker", env=settings_env(services.settings))
        began = time.monotonic()
        with Redis.from_url(redis.url) as connection:
            while not any(w.get_state() == "busy" for w in Worker.all(connection=connection)):
                assert time.monotonic() - began < 60, "the worker never started the drain job"
                assert worker.poll() is None, worker.communicate()[1].decode()[-3000:]
                time.sleep(0.02)
        redis.kill()  # while the worker applies the 300 events, 5 per transaction
        while count(services.engine, OutboxEntry):  # it finishes the job with Redis gone
            assert time.monotonic() - began < 120, "the drain job did not finish"
            time.sleep(0.1)
        time.sleep(2.0)
        redis.start()  # Redis is back, empty, on the same port
        time.sleep(3.0)
        code = worker.poll()
        log = worker.communicate(timeout=10)[1].decode() if code is not None else ""
        quit_line = next((line for line in log.splitlines() if "quitting" in line), log[-500:])
        assert code is None, f"verihook worker exited ({code}) after a Redis restart: {quit_line}"
        for index in range(20):  # and it works again: new deliveries wake it on the new Redis
            body = signing.contiguity_event("verified", f"vs_after_{index}", user_ref=f"a{index}")
            assert send_contiguity(client, body).status_code == 200
        while count(services.engine, OutboxEntry):
            assert time.monotonic() - began < 180, "the worker did not work after Redis came back"
            assert worker.poll() is None, worker.communicate()[1].decode()[-3000:]
            time.sleep(0.1)
        stopping = time.monotonic()
        worker.terminate()  # SIGTERM still stops it, promptly and cleanly
        log = worker.communicate(timeout=10)[1].decode()
        assert worker.returncode == 0, log[-3000:]
        assert time.monotonic() - stopping < 5
        assert "worker lost Redis" in log, log[-3000:]  # the run ended, a new one started
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.communicate(timeout=15)
        redis.kill()


@pytest.mark.parametrize("backend", ["sqlite"])  # the database plays no part here
@pytest.mark.parametrize("phase", ["idle", "between_runs"])
def test_sigterm_stops_a_worker_while_redis_is_down(make_services: Any, phase: str) -> None:
    """SIGTERM stops `verihook worker` promptly with Redis away: idle (RQ retries the connection
    while it waits for a job) or between runs (Redis away from the start: each run fails)."""
    redis = RedisServer()
    worker = None
    try:
        services = make_services(redis_url=redis.url, queue_name=QUEUE)
        if phase == "idle":
            redis.start()
        worker = verihook("worker", env=settings_env(services.settings))
        began = time.monotonic()
        if phase == "idle":
            with Redis.from_url(redis.url) as connection:
                while not Worker.count(connection=connection):
                    assert time.monotonic() - began < 60, "the worker never registered"
                    assert worker.poll() is None, worker.communicate()[1].decode()[-3000:]
                    time.sleep(0.02)
            redis.kill()
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(line.decode() for line in worker.stderr), daemon=True
        )
        reader.start()
        if phase == "between_runs":  # a run failed and the next is scheduled: it is running
            while not any("starting again" in line for line in lines):
                assert time.monotonic() - began < 60, "".join(lines)[-3000:]
                assert worker.poll() is None, "".join(lines)[-3000:]
                time.sleep(0.05)
        else:
            time.sleep(1.0)
        assert worker.poll() is None, "".join(lines)[-3000:]
        stopping = time.monotonic()
        worker.terminate()
        worker.wait(timeout=15)
        reader.join(timeout=15)
        for pipe in (worker.stdout, worker.stderr):
            if pipe is not None:
                pipe.close()
        log = "".join(lines)
        assert worker.returncode == 0, log[-3000:]
        assert time.monotonic() - stopping < 5, log[-3000:]
        if phase == "between_runs":
            assert "starting again" in log, log[-3000:]
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=15)
        redis.kill()
