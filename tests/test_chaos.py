"""Chaos: hundreds of sessions over the five simulators while webhooks and redirects are dropped
(30 %), duplicated (20 %), shuffled and delayed. verihook must end equal to every simulator's
truth, heal what was lost with about one status call each, flag idvapi sessions that lost their
only webhook, and never poll iDenfy for a session whose final webhook arrived.

In process for speed (simulators, a live receiver, and a background worker + scheduler tick), on
SQLite and PostgreSQL; plus a smoke run of `verihook demo`'s real processes.
"""

from __future__ import annotations

import glob
import os
import time

import pytest

from receiver.embedded_redis import EmbeddedRedis
from reconciler.demo.report import build_report, format_report
from reconciler.demo.run import run_demo
from reconciler.demo.verdict import (
    DEMO_CHAOS,
    DEMO_OUTCOMES,
    PlannedSession,
    SessionResult,
    evaluate,
    plan_sessions,
)
from reconciler.session_queries import find_session
from tests.support.leaks import plaintext_leaks
from tests.support.world import World, start_world, stop_world

POLICY = {
    "poll_interval_seconds": 2.0,  # poll-only: the first poll comes after the scripted end
    "webhook_deadline_seconds": 3.0,  # webhook providers: the silence before a fallback poll
    "max_poll_interval_seconds": 8.0,
    "rate_limit_per_second": 100.0,
}
SESSIONS = 250
SETTLE_TIMEOUT_SECONDS = 45.0
QUIET_SECONDS = POLICY["webhook_deadline_seconds"] + 1.0
"""After settling, one more deadline passes: nothing settled may be polled during it."""

WITH_REVIEW = DEMO_OUTCOMES
"""Every outcome the demo scripts, final `review` answers included."""


@pytest.fixture
def chaos_world(make_services):  # type: ignore[no-untyped-def]
    world = start_world(
        make_services, policy=POLICY, chaos={**DEMO_CHAOS, "seed": 11}, log_level="WARNING"
    )
    yield world
    stop_world(world)


def create_and_script(world: World, item: PlannedSession) -> None:
    item.session_id = world.create(item.provider, item.user_ref)["session_id"]
    world.sims[item.provider].script(
        item.session_id,
        item.outcome,
        manual=item.manual,
        after=item.after,
        provider_status=item.provider_status,
    )


def wait_for_truth(world: World, planned: list[PlannedSession]) -> list[SessionResult]:
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while True:
        results = evaluate(world.services.engine, world.sims, planned)
        if all(result.matches for result in results) or time.monotonic() > deadline:
            return results
        time.sleep(0.2)


def let_a_quiet_period_pass(world: World, seconds: float) -> None:
    """Inside `pump`: once the simulators have nothing left to send (late and duplicated
    deliveries included), move the scheduler's clock `seconds` ahead and let it tick: whatever
    would be polled during that time is polled now (instead of waiting it out)."""
    for sim in world.sims.values():
        assert sim.wait_idle(timeout=30), "a simulator still has deliveries pending"
    world.advance(seconds)
    world.wait_ticks(5)


def test_every_session_ends_at_the_simulators_truth_under_chaos(chaos_world):  # type: ignore[no-untyped-def]
    planned = plan_sessions(SESSIONS, seed=11, outcomes=WITH_REVIEW)
    started = time.monotonic()
    with chaos_world.pump():
        for item in planned:
            create_and_script(chaos_world, item)
        wait_for_truth(chaos_world, planned)
        let_a_quiet_period_pass(chaos_world, QUIET_SECONDS)
    report = build_report(
        evaluate(chaos_world.services.engine, chaos_world.sims, planned),
        chaos_world.sims,
        elapsed_seconds=time.monotonic() - started,
    )
    table = format_report(report)
    print(table)

    assert len(report.results) == SESSIONS
    assert not report.mismatches, table  # status and decided_by, idvapi overdue included
    idvapi = [result for result in report.results if result.provider == "idvapi"]
    lost = [result for result in idvapi if not result.final_delivered]
    assert lost and len(lost) < len(idvapi), table
    assert all(result.actual == "overdue" for result in lost), table
    assert not any(result.overdue for result in idvapi if result.final_delivered), table
    assert report.healed > 0 and report.calls_per_healed is not None
    assert report.calls_per_healed <= 1.2, table
    assert report.idenfy_calls_after_final_webhook == 0, table
    for name, sim in chaos_world.sims.items():
        stats = sim.stats()
        assert stats["webhooks_dropped"] > 0 and stats["webhooks_duplicated"] > 0, name


def test_a_final_review_answer_is_not_polled_again(make_services):  # type: ignore[no-untyped-def]
    world = start_world(make_services, policy=POLICY)
    try:
        with world.pump():
            docverify = world.create("docverify", "u-review-doc")["session_id"]
            idenfy = world.create("idenfy", "u-review-idf")["session_id"]
            world.sims["docverify"].script(docverify, "review")
            world.sims["idenfy"].script(idenfy, "review")
            for name, session_id in (("docverify", docverify), ("idenfy", idenfy)):
                assert world.sims[name].wait_idle(timeout=30)
                deadline = time.monotonic() + 30
                while find_session(world.services, name, session_id).status != "review":
                    assert time.monotonic() < deadline, f"{name} never reached review"
                    time.sleep(0.05)
            let_a_quiet_period_pass(world, 2 * POLICY["poll_interval_seconds"] + 1.5)
        assert world.status_calls("docverify") == 1  # the poll its redirect asked for
        assert world.status_calls("idenfy") == 0  # its final webhook arrived
    finally:
        stop_world(world)


def child_pids() -> set[str]:
    """This process's children (Linux), to check that the demo leaves none behind."""
    found: set[str] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with open(path) as handle:
            found |= set(handle.read().split())
    return found


def test_demo_with_real_processes_matches_the_truth(tmp_path):  # type: ignore[no-untyped-def]
    before = child_pids()
    seen: list[tuple[str, int, int]] = []
    report = run_demo(
        30, seed=3, var_dir=tmp_path, progress=lambda *line: seen.append(line), timeout=40
    )
    assert report.ok, format_report(report)
    assert len(report.results) == 30
    assert sum(figures.sessions for figures in report.providers.values()) == 30
    assert report.healed > 0 and report.status_calls > 0
    assert seen[-1] == ("settling", 30, 30)
    assert "matches the simulators' truth: 30/30" in format_report(report)
    assert child_pids() <= before  # web, workers, scheduler and Redis are all gone
    assert not EmbeddedRedis(tmp_path)._answers()  # the private Redis is stopped too
    # The full-run leak test: every personal value the simulators generated (names, birth dates,
    # document numbers, file URLs, client IPs) is absent from the SQLite database, its WAL and
    # every process's log, all kept under tmp_path.
    assert len(report.pii) > 30, "the simulators generated no personal data to look for"
    assert list(tmp_path.glob("*.db")) and list(tmp_path.glob("logs/*"))
    assert plaintext_leaks(tmp_path, report.pii) == {}


def test_the_leak_scan_sees_a_plaintext_value(tmp_path):  # type: ignore[no-untyped-def]
    (tmp_path / "logs").mkdir()
    log_line = '{"msg": "name \\"Zorvanek\\"", "url": "https:\\/\\/f.example\\/a.png"}'
    (tmp_path / "logs" / "web.log").write_text(log_line)
    (tmp_path / "verihook.db").write_bytes(b"\x00\x01Qelitra\x00")
    values = ["Zorvanek", "Qelitra", "https://f.example/a.png", "Absent"]
    assert plaintext_leaks(tmp_path, values) == {
        "logs/web.log": ["Zorvanek", "https://f.example/a.png"],
        "verihook.db": ["Qelitra"],
    }
