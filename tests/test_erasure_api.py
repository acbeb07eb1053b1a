"""Erasure through the operator API, and deletion at the provider on request (issue 6 items 2-3).

Against the live receiver and the provider simulators (docverify implements its documented
`DELETE /api/v1/verification/{sid}`; the others document no deletion endpoint).
"""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlmodel import Session

from app import cli
from receiver.providers.http import ProviderRejected, shared_client
from receiver.store.audit_models import AuditEntry
from reconciler.audit.chain import verify_chain
from reconciler.cli.tokens import create_token
from reconciler.privacy.lifecycle import pseudonym
from reconciler.session_queries import find_session
from tests.support.processes import settings_env
from tests.support.world import World, start_world, stop_world


@pytest.fixture
def world(make_services):  # type: ignore[no-untyped-def]
    world = start_world(make_services, policy={"poll_interval_seconds": 0.2})
    yield world
    stop_world(world)


def operator(world: World) -> dict[str, str]:
    if "operator" not in world.calls:  # one stored token per world (names are unique)
        _, token = create_token(world.services.engine, "operator", "oncall-ann")
        world.calls["operator"] = token  # type: ignore[assignment]
    return {"Authorization": f"Bearer {world.calls['operator']}"}


def forget(world: World, user_ref: str, body: object) -> httpx.Response:
    return httpx.post(
        f"{world.server.url}/api/v1/users/{user_ref}/forget",
        json=body,
        headers=operator(world),
        timeout=10,
    )


def provider_still_has(world: World, session_id: str) -> bool:
    client = world.services.providers["docverify"].client(shared_client())
    try:
        client.fetch_status(session_id)
    except ProviderRejected as exc:
        assert exc.status_code == 404
        return False
    return True


def test_operator_api_forgets_a_person_and_deletes_their_docverify_session(world):  # type: ignore[no-untyped-def]
    doc = world.create("docverify", "u-erase")["session_id"]
    nevis = world.create("nevis", "u-erase")["session_id"]
    world.sims["docverify"].script(doc, "verified")
    world.settle(rounds=10)
    assert find_session(world.services, "docverify", doc).status == "verified"
    assert provider_still_has(world, doc)

    answer = forget(world, "u-erase", {"confirm": True, "at_provider": True})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user_ref"] == pseudonym("u-erase") and body["sessions"] == 2
    outcomes = {(o["provider"], o["outcome"]) for o in body["at_provider"]}
    assert outcomes == {("docverify", "deleted"), ("nevis", "unsupported")}
    assert not provider_still_has(world, doc)
    assert find_session(world.services, "docverify", doc).user_ref == pseudonym("u-erase")
    assert find_session(world.services, "nevis", nevis).status is not None
    with Session(world.services.engine) as db:
        assert verify_chain(db).ok
        actors = db.execute(select(AuditEntry.actor)).scalars().all()
    assert "oncall-ann" in actors  # the erasure is audited under the token's name
    # A second request finds the sessions under the pseudonym: the provider says it is gone.
    again = forget(world, "u-erase", {"confirm": True, "at_provider": True}).json()["at_provider"]
    assert ("docverify", "not_found") in {(o["provider"], o["outcome"]) for o in again}


def test_forget_without_confirmation_or_with_a_bad_flag_changes_nothing(world):  # type: ignore[no-untyped-def]
    doc = world.create("docverify", "u-keep")["session_id"]
    assert forget(world, "u-keep", {}).status_code == 400
    assert forget(world, "u-keep", {"confirm": True, "at_provider": "yes"}).status_code == 400
    assert find_session(world.services, "docverify", doc).user_ref == "u-keep"
    assert provider_still_has(world, doc)


def test_cli_forget_at_provider_reports_each_session(world, monkeypatch):  # type: ignore[no-untyped-def]
    doc = world.create("docverify", "u-cli")["session_id"]
    for name, value in settings_env(world.services.settings).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["users", "forget", "u-cli", "--yes", "--at-provider"])
    assert result.exit_code == 0, result.output
    assert f"at docverify: session {doc} deleted" in result.output
    assert not provider_still_has(world, doc)
