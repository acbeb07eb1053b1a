"""`verihook doctor` against the five provider simulators and a live receiver (issue 20 item 6).

- Right credentials: every API that can be asked accepts them, nothing is created at any
  provider, the URLs to give each one are shown (idvapi's token masked), exit 0.
- A provider that changed a credential on its side (an API key, docverify's client secret):
  that provider is named as failing, exit 1, the others still ok.
- Deliveries refused over HTTP (a simulator signing with another secret, one posting to a URL
  with another token) show up by reason with their likely cause, exit 1; a provider that
  delivered shows when.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from receiver.providers.idenfy import NOTIFICATIONS
from reconciler.cli.doctor import doctor
from reconciler.provider_checks import IDENFY_NOTIFICATIONS
from tests.support.processes import settings_env
from tests.support.world import SIM_CREDENTIALS, World, start_world, stop_world


@pytest.fixture
def world(make_services) -> Iterator[World]:  # type: ignore[no-untyped-def]
    started = start_world(make_services)
    yield started
    stop_world(started)


def run_doctor(world: World, *args: str) -> Result:
    return CliRunner().invoke(doctor, list(args), env=settings_env(world.services.settings))


def as_json(world: World) -> tuple[int, dict[str, Any]]:
    result = run_doctor(world, "--format", "json")
    return result.exit_code, json.loads(result.output)


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """provider → {check name: level}."""
    return {
        p["provider"]: {c["name"]: c["level"] for c in p["checks"]} for p in report["providers"]
    }


def test_right_credentials_are_ok_and_nothing_is_created(world: World) -> None:
    result = run_doctor(world)
    assert result.exit_code == 0, result.output
    url = world.server.url
    for line in (
        f"POST {url}/webhooks/contiguity",
        f"GET  {url}/callbacks/docverify",
        f"GET  {url}/callbacks/nevis",
        *(f"POST {url}/webhooks/idenfy/{name}" for name in IDENFY_NOTIFICATIONS),
        f"POST {url}/webhooks/idvapi/idv-…",
        "ok: nothing wrong found",
    ):
        assert line in result.output, result.output
    assert SIM_CREDENTIALS["idvapi"]["webhook_token"] not in result.output
    assert set(IDENFY_NOTIFICATIONS) == NOTIFICATIONS

    code, report = as_json(world)
    assert (code, report["ok"], report["problems"]) == (0, True, [])
    assert checks_of(report) == {
        "contiguity": {"credentials": "ok"},
        "docverify": {"credentials": "ok"},
        "idvapi": {"credentials": "skipped"},
        "idenfy": {"credentials": "ok"},
        "nevis": {"credentials": "ok"},
    }
    for name, sim in world.sims.items():
        assert sim.stats()["create_calls"] == 0, name
        assert sim.engine.sessions == {}, name


def test_a_credential_changed_at_the_provider_names_it_and_exits_1(world: World) -> None:
    world.sims["idenfy"].configure(api_key="rotated-in-the-idenfy-dashboard")
    world.sims["docverify"].configure(client_secret="rotated-in-the-transmit-portal")
    result = run_doctor(world)
    assert result.exit_code == 1, result.output
    assert (
        "idenfy credentials: refused: a status call was answered HTTP 401 (check "
        "VERIHOOK_PROVIDERS__IDENFY__API_KEY and VERIHOOK_PROVIDERS__IDENFY__API_SECRET)"
    ) in result.output
    assert "docverify credentials: refused: the OAuth token endpoint answered HTTP 401" in (
        result.output
    )
    code, report = as_json(world)
    assert code == 1 and not report["ok"]
    levels = {name: checks["credentials"] for name, checks in checks_of(report).items()}
    assert levels == {
        "contiguity": "ok",
        "docverify": "fail",
        "idvapi": "skipped",
        "idenfy": "fail",
        "nevis": "ok",
    }


def test_refusals_over_http_show_with_their_reason_and_cause(world: World) -> None:
    contiguity, idvapi, idenfy = (world.sims[n] for n in ("contiguity", "idvapi", "idenfy"))
    contiguity.configure(webhook_secret="whsec_a_new_secret_nobody_told_verihook")
    idvapi.configure(webhook_url=f"{world.server.url}/webhooks/idvapi/an-old-token-0123456789")
    contiguity.script(world.create("contiguity", "u-doc-1")["session_id"], "verified")
    idvapi.script(world.create("idvapi", "u-doc-2")["session_id"], "verified")
    idenfy.script(world.create("idenfy", "u-doc-3")["session_id"], "verified")
    for sim in world.sims.values():
        assert sim.wait_idle(10)
    world.services.refusals.flush()  # the receiver runs in this process: write its counts now

    result = run_doctor(world)
    assert result.exit_code == 1, result.output
    output = result.output
    assert "× signature_mismatch since" in output, output
    assert (
        "is the signing secret (VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET) the one in the "
        "provider's dashboard?"
    ) in output
    assert "× token_mismatch since" in output
    assert "the URL's token differs from VERIHOOK_PROVIDERS__IDVAPI__WEBHOOK_TOKEN" in output

    code, report = as_json(world)
    by_provider = {p["provider"]: p for p in report["providers"]}
    assert [r["reason"] for r in by_provider["contiguity"]["refusals"]] == ["signature_mismatch"]
    assert [r["reason"] for r in by_provider["idvapi"]["refusals"]] == ["token_mismatch"]
    assert by_provider["idenfy"]["refusals"] == []
    assert by_provider["idenfy"]["last_delivery_at"] is not None
    assert by_provider["contiguity"]["last_delivery_at"] is None
    assert len(report["problems"]) == 2 and code == 1


def test_an_unreachable_database_is_reported_not_raised(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {
        "VERIHOOK_DATABASE_URL": "postgresql+psycopg://verihook@127.0.0.1:1/none",
        "VERIHOOK_VAR_DIR": str(tmp_path),
        "VERIHOOK_PUBLIC_URL": "https://verihook.example.com",
    }
    result = CliRunner().invoke(doctor, [], env=env)
    assert result.exit_code == 1, result.output
    assert "database         FAIL    unreachable (OperationalError)" in result.output
    assert "1 problem(s):" in result.output
