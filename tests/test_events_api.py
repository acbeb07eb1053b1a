"""`GET /api/v1/events[/<id>]` and `verihook events list|show`: filters, cursor pages, redaction."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from app import create_app
from receiver.store.db import transaction
from receiver.store.models import InboundEvent
from reconciler import jobs
from reconciler.api.events import bp as events_bp
from reconciler.cli.events import events
from reconciler.drain import drain_ready_events
from tests.support import signing
from tests.support.flow import (
    API_TOKENS,
    AUDITOR,
    OPERATOR,
    audit_rows,
    send_contiguity,
    send_idenfy,
)
from tests.support.processes import settings_env

OLD = 30
"""The first OLD events are moved three days into the past."""


@pytest.fixture
def api(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    app = create_app(services=services)
    if "events_api" not in app.blueprints:
        app.register_blueprint(events_bp)
    return services, app.test_client()


def store_events(services, client, n: int = 120) -> None:  # type: ignore[no-untyped-def]
    """Of every 6 events: 3 applied Contiguity, 2 applied iDenfy, 1 quarantined Contiguity; the
    first OLD are moved three days into the past."""
    for index in range(n):
        if index % 6 in (0, 2, 4):
            body = signing.contiguity_event(
                "verified", f"vs_{index:04d}", user_ref=f"u{index % 10}"
            )
            assert send_contiguity(client, body).status_code == 200
        elif index % 6 in (1, 5):
            body = signing.idenfy_result("APPROVED", f"scan-{index:04d}", client_id=f"i{index}")
            assert send_idenfy(client, body).status_code == 200
        else:
            body = signing.contiguity_event("redacted", f"vs_{index:04d}")
            assert send_contiguity(client, body).status_code == 202
    drain_ready_events(services)
    with transaction(services.engine) as db:
        db.execute(
            update(InboundEvent)
            .where(InboundEvent.id <= OLD)
            .values(received_at=datetime.now(UTC) - timedelta(days=3))
        )


def page(client, query: str, headers=AUDITOR) -> dict:  # type: ignore[no-untyped-def, type-arg]
    answer = client.get(f"/api/v1/events?{query}", headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def all_pages(client, query: str) -> list[list[dict]]:  # type: ignore[no-untyped-def, type-arg]
    pages, cursor = [], None
    while True:
        body = page(client, query + (f"&cursor={cursor}" if cursor else ""))
        pages.append(body["events"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


FILTERS = [
    ("provider=idenfy", 40),
    ("provider=contiguity", 80),
    ("state=quarantined", 20),
    ("state=applied", 100),
    ("state=applied,quarantined", 120),
    ("state=applied&state=quarantined", 120),
    ("provider=contiguity&state=applied", 60),
    ("user_ref=u4", 12),
    ("session_id=vs_0012", 1),
    ("since=1d", 120 - OLD),
    ("until=1d", OLD),
    ("since=4d&until=2d&provider=idenfy", 10),
]


def test_listing_filters_and_cursor_pages_over_120_events(api):  # type: ignore[no-untyped-def]
    services, client = api
    store_events(services, client)
    pages = all_pages(client, "limit=50")
    assert [len(p) for p in pages] == [50, 50, 20]
    assert [e["id"] for p in pages for e in p] == list(range(120, 0, -1))  # each once, newest first
    assert len(page(client, "")["events"]) == 50  # the default limit
    assert len(page(client, "limit=500")["events"]) == 120
    first = page(client, "limit=1")
    assert base64.urlsafe_b64decode(first["next_cursor"] + "==") == b"120"

    for query, expected in FILTERS:
        pages = all_pages(client, query + "&limit=40")
        found = [e for p in pages for e in p]
        assert len(found) == expected, query
        assert all(len(p) == 40 for p in pages[:-1]), query
        assert [e["id"] for e in found] == sorted((e["id"] for e in found), reverse=True)
        params = dict(part.split("=") for part in query.split("&"))
        for event in found:
            assert "provider" not in params or event["provider"] == params["provider"]
            assert "state" not in params or event["state"] in query
            assert params.get("since") != "1d" or event["id"] > OLD
            assert params.get("until") != "1d" or event["id"] <= OLD
            assert "user_ref" not in params or event["user_ref"] == params["user_ref"]

    cut = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    body = page(client, "since=" + cut.replace("+", "%2B") + "&state=quarantined&limit=500")
    assert len(body["events"]) == 15 and body["next_cursor"] is None
    naive = (datetime.now(UTC) - timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert len(page(client, f"until={naive}&limit=500")["events"]) == OLD

    runner, env = CliRunner(), settings_env(services.settings)
    args = ["list", "--provider", "idenfy", "--limit", "30", "--json"]
    first = runner.invoke(events, args, env=env)
    assert first.exit_code == 0, first.output
    first_page = json.loads(first.output)
    assert len(first_page["events"]) == 30 and first_page["next_cursor"]
    second = json.loads(
        runner.invoke(events, [*args, "--cursor", first_page["next_cursor"]], env=env).output
    )
    assert len(second["events"]) == 10 and second["next_cursor"] is None
    assert first_page["events"] == page(client, "provider=idenfy&limit=30")["events"]
    table = runner.invoke(events, ["list", "--state", "quarantined", "--limit", "5"], env=env)
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["id", "provider", "kind", "state"] and len(lines) == 7
    assert all("quarantined" in line for line in lines[1:6])
    assert lines[-1].startswith("next cursor: ")
    bad = runner.invoke(events, ["list", "--since", "soon"], env=env)
    assert bad.exit_code == 2 and "since must be an ISO 8601 time" in bad.output


BAD_PARAMETERS = [
    ("limit=0", "limit must be an integer from 1 to 500"),
    ("limit=501", "limit must be an integer from 1 to 500"),
    ("limit=ten", "limit must be an integer from 1 to 500"),
    ("state=lost", "state must be one of applied, failed, quarantined, received"),
    ("provider=acme", "provider must be one of contiguity, docverify"),
    ("since=yesterday", "since must be an ISO 8601 time"),
    ("until=2024-13-45", "until must be an ISO 8601 time"),
    ("since=1d&until=2d", "since must be before until"),
    ("cursor=!!!", "cursor is not valid"),
    ("cursor=" + base64.urlsafe_b64encode(b"-5").decode(), "cursor is not valid"),
    ("colour=red", "unknown parameter colour"),
    (f"user_ref={'x' * 129}", "user_ref must be 1 to 128 characters"),
    ("user_ref=a%C2%85b", "user_ref must be 1 to 128 characters"),  # a C1 control
    ("session_id=%20%20", "session_id must be 1 to 128 characters, not only white space"),
]


def test_bad_parameters_are_refused_with_a_reason(api):  # type: ignore[no-untyped-def]
    _, client = api
    for query, message in BAD_PARAMETERS:
        answer = client.get(f"/api/v1/events?{query}", headers=OPERATOR)
        assert answer.status_code == 400, query
        assert message in answer.get_json()["error"], (query, answer.get_json())


def test_operators_see_the_delivery_auditors_only_metadata(api):  # type: ignore[no-untyped-def]
    services, client = api
    store_events(services, client, 6)
    idenfy_id = 2  # index 1: an iDenfy result with fake PII
    entries_before = len(audit_rows(services.engine))
    shown = client.get(f"/api/v1/events/{idenfy_id}", headers=OPERATOR).get_json()
    assert (shown["provider"], shown["state"], shown["user_ref"]) == ("idenfy", "applied", "i1")
    delivery = shown["delivery"]
    assert delivery["redacted"] is False and delivery["source"] == "webhook"
    assert json.loads(delivery["body"])["data"]["docFirstName"] == "ZELDA"
    signature = dict((k.lower(), v) for k, v in delivery["headers"])["idenfy-signature"]
    assert len(signature) == 64
    assert [o["status"] for o in shown["observations"]] == ["verified"]

    answer = client.get(f"/api/v1/events/{idenfy_id}", headers=AUDITOR)
    redacted = answer.get_json()
    assert redacted["delivery"]["redacted"] is True
    assert "body" not in redacted["delivery"] and "headers" not in redacted["delivery"]
    assert "idenfy-signature" in [h.lower() for h in redacted["delivery"]["header_names"]]
    for secret in ("ZELDA", "QUIXOTEPII", "docFirstName", signature):
        assert secret not in answer.get_data(as_text=True)
    assert {k: v for k, v in redacted.items() if k != "delivery"} == {
        k: v for k, v in shown.items() if k != "delivery"
    }

    quarantined = client.get("/api/v1/events/4", headers=AUDITOR).get_json()
    assert quarantined["state"] == "quarantined" and quarantined["parse_error"]
    assert client.get("/api/v1/events/7", headers=OPERATOR).status_code == 404

    runner, env = CliRunner(), settings_env(services.settings)
    full = runner.invoke(events, ["show", str(idenfy_id)], env=env)
    assert full.exit_code == 0 and "ZELDA" in full.output and signature in full.output
    short = runner.invoke(events, ["show", str(idenfy_id), "--redacted"], env=env)
    assert short.exit_code == 0 and "ZELDA" not in short.output and signature not in short.output
    assert "Idenfy-Signature" in short.output or "idenfy-signature" in short.output
    missing = runner.invoke(events, ["show", "999"], env=env)
    assert missing.exit_code == 1 and "no event 999" in missing.output

    views = audit_rows(services.engine)[entries_before:]
    assert [(e.source, e.subject, e.event_id) for e in views] == [("operator", "event", 2)] * 2
    assert views[0].actor == "operator:env-operator-1"
    assert views[1].actor.startswith("operator:cli-")
    assert views[0].reason == "viewed the raw delivery of event 2"
