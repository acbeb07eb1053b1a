"""What real providers send that a mirror of our own reading never did, through HTTP → worker →
API on SQLite and PostgreSQL (issue 17), and the remerge of sessions stored under the old rule."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from receiver.store.db import transaction
from receiver.store.models import ObservationRecord, UserRecord, VerificationSession
from tests.support import signing
from tests.support.flow import (
    AUDITOR,
    BACKEND,
    apply_all,
    audit_rows,
    send_contiguity,
    send_idenfy,
)
from tests.support.processes import settings_env


@pytest.fixture
def api(make_services, redis_server):  # type: ignore[no-untyped-def]
    from app import create_app
    from reconciler import jobs
    from tests.support.flow import API_TOKENS

    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    return services, create_app(services=services).test_client()


def user(client, ref: str = "user-1") -> tuple[str, str]:  # type: ignore[no-untyped-def]
    body = client.get(f"/api/v1/users/{ref}", headers=BACKEND).get_json()
    return body["status"], body["decided_by"]


@pytest.mark.parametrize("late", ["expired", "cancelled"])
@pytest.mark.parametrize("late_overall", ["APPROVED", "EXPIRED", "ACTIVE"])
def test_idenfy_late_expiry_after_approval_keeps_the_user_verified(api, late, late_overall):  # type: ignore[no-untyped-def]
    """Reproduced before the fix: auto-finished APPROVED, then the expiry webhook (sent after
    the token's lifetime) → the user read `expired`."""
    services, client = api
    approved = signing.idenfy_result("APPROVED", finish_time=1000)
    assert send_idenfy(client, approved, "auto-finished").status_code == 200
    apply_all(services)
    expiry = signing.idenfy_result(late_overall, finish_time=1000 + 3600)
    assert send_idenfy(client, expiry, late).status_code == 200
    apply_all(services)
    assert user(client) == ("verified", "auto")


def test_idenfy_late_expiry_arriving_first_still_ends_verified(api):  # type: ignore[no-untyped-def]
    services, client = api
    send_idenfy(client, signing.idenfy_result("EXPIRED", finish_time=5000), "expired")
    apply_all(services)
    assert user(client) == ("expired", "auto")
    send_idenfy(client, signing.idenfy_result("DENIED", finish_time=1000), "auto-finished")
    apply_all(services)
    assert user(client) == ("rejected", "auto")


def test_idenfy_preliminary_approval_with_manual_fields_is_review_until_the_final(api):  # type: ignore[no-untyped-def]
    services, client = api
    preliminary = signing.idenfy_result("APPROVED", final=False, manual=True, finish_time=1000)
    send_idenfy(client, preliminary, "auto-finished")
    apply_all(services)
    assert user(client) == ("review", "auto")
    final = signing.idenfy_result("APPROVED", manual=True, finish_time=2000)
    send_idenfy(client, final, "manual-finished")
    apply_all(services)
    assert user(client) == ("verified", "manual")


def test_contiguity_report_event_is_attached_to_its_session_with_no_status(api):  # type: ignore[no-untyped-def]
    services, client = api
    send_contiguity(client, signing.contiguity_event("verified", "vs_77", timestamp=400))
    report = json.dumps(
        {
            "id": "evt_report_1",
            "type": "identity.verification_report.generated",
            "timestamp": 500,
            "data": {"id": "vr_1", "verification_session": "vs_77"},
        }
    ).encode()
    assert send_contiguity(client, report).status_code == 200
    orphan = json.dumps(
        {
            "id": "evt_report_2",
            "type": "identity.verification_report.generated",
            "timestamp": 500,
            "data": {"id": "vr_2"},
        }
    ).encode()
    answer = send_contiguity(client, orphan)
    assert (answer.status_code, answer.get_json()["status"]) == (202, "quarantined")
    apply_all(services)
    with transaction(services.engine) as db:
        ids = set(db.execute(select(VerificationSession.session_id)).scalars())
    assert ids == {"vs_77"}  # never the report id
    session = client.get("/api/v1/sessions/contiguity/vs_77", headers=AUDITOR).get_json()
    assert session["status"] == "verified"


# ----------------------------------------------------------------------------- the remerge


def old_rule_session(services) -> None:  # type: ignore[no-untyped-def]
    """What the old rule left: APPROVED, then a late expiry that took the session's place."""
    with transaction(services.engine) as db:
        row = db.execute(select(VerificationSession)).scalar_one()
        records = list(
            db.execute(
                select(ObservationRecord).where(ObservationRecord.session_pk == row.id)
            ).scalars()
        )
        verified = next(r for r in records if r.status == "verified")
        expired = next(r for r in records if r.status == "expired")
        db.execute(
            update(ObservationRecord)
            .where(ObservationRecord.id == verified.id)
            .values(disposition="superseded")
        )
        db.execute(
            update(ObservationRecord)
            .where(ObservationRecord.id == expired.id)
            .values(disposition="applied")
        )
        row.status, row.current_observation_key = "expired", expired.observation_key
        row.status_observed_at = expired.occurred_at
        db.add(row)
        db.execute(update(UserRecord).values(status="expired"))


def test_sessions_stored_under_the_old_rule_are_merged_again(api):  # type: ignore[no-untyped-def]
    from app import cli
    from reconciler.remerge import remerge_ended_sessions

    services, client = api
    send_idenfy(client, signing.idenfy_result("APPROVED", finish_time=1000), "auto-finished")
    send_idenfy(client, signing.idenfy_result("EXPIRED", finish_time=4600), "expired")
    apply_all(services)
    assert user(client) == ("verified", "auto")
    old_rule_session(services)
    assert user(client)[0] == "expired"
    audit_before = len(audit_rows(services.engine))

    dry = remerge_ended_sessions(services, dry_run=True)
    assert [(c.before, c.after) for c in dry.sessions] == [("expired", "verified")]
    assert user(client)[0] == "expired"  # a dry run changes nothing

    env = settings_env(services.settings)
    result = CliRunner().invoke(cli, ["sessions", "remerge"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "expired -> verified" in result.output
    assert user(client) == ("verified", "auto")
    session = client.get("/api/v1/sessions/idenfy/scan-0001", headers=AUDITOR).get_json()
    assert session["status"] == "verified"
    by_status = {h["status"]: h["disposition"] for h in session["history"]}
    assert by_status == {"verified": "applied", "expired": "superseded"}
    entries = audit_rows(services.engine)[audit_before:]
    assert [(e.subject, e.previous_status, e.new_status, e.source) for e in entries] == [
        ("session", "expired", "verified", "remerge"),
        ("user", "expired", "verified", "remerge"),
    ]
    assert client.get("/api/v1/audit/verify", headers=AUDITOR).get_json()["ok"] is True

    again = remerge_ended_sessions(services)
    assert (again.sessions, again.users_changed) == ([], 0)
    assert len(audit_rows(services.engine)) == audit_before + 2


def test_a_user_shown_ended_while_another_session_decided_is_refreshed(api):  # type: ignore[no-untyped-def]
    """The user rule changed too: a later expired session no longer hides a verified one."""
    from reconciler.remerge import remerge_ended_sessions

    services, client = api
    send_idenfy(client, signing.idenfy_result("APPROVED", "scan-a", finish_time=1000), None)
    send_idenfy(client, signing.idenfy_result("EXPIRED", "scan-b", finish_time=9000), "expired")
    apply_all(services)
    assert user(client) == ("verified", "auto")
    with transaction(services.engine) as db:
        db.execute(
            update(UserRecord).values(status="expired", session_id="scan-b")
        )  # as the old user rule left it
    report = remerge_ended_sessions(services)
    assert (report.sessions, report.users_changed) == ([], 1)
    assert user(client) == ("verified", "auto")


def test_db_upgrade_runs_the_remerge(api):  # type: ignore[no-untyped-def]
    from app import cli

    services, client = api
    send_idenfy(client, signing.idenfy_result("APPROVED", finish_time=1000), "auto-finished")
    send_idenfy(client, signing.idenfy_result("EXPIRED", finish_time=4600), "expired")
    apply_all(services)
    old_rule_session(services)
    env = settings_env(services.settings)
    result = CliRunner().invoke(cli, ["db", "upgrade"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 changed" in result.output
    assert user(client) == ("verified", "auto")
